"""Replay at data-engineering scale (issue 21): `suppressor replay` with --jobs 1 and 2 on
the same file in the same run, its peak RSS, and a py-spy profile of --jobs 1.

Every figure is the real command in a fresh process (``python -m
suppressor.entrypoints.cli replay``), actions, decisions and DLQ written to files; the peak
RSS is the process's own (``wait4``'s ``ru_maxrss``; with --jobs, the largest of its
processes, from ``RUSAGE_CHILDREN`` of a wrapper).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "suppressor.entrypoints.cli", "replay"]
WRAPPER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def replay_command(events: Path, catalog: Path, out_dir: Path, jobs: int) -> list[str]:
    command = [*CLI, str(events), "--catalog", str(catalog), "--quiet", "--jobs", str(jobs)]
    for kind in ("actions", "decisions", "dlq"):
        command += [f"--{kind}", str(out_dir / f"jobs{jobs}.{kind}.jsonl")]
    return command


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB of the largest process of the run)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *command], check=True, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    return seconds, int(done.stdout.split()[-1]) / 1024


def same_files(out_dir: Path, jobs: int) -> bool:
    return all(
        (out_dir / f"jobs1.{kind}.jsonl").read_bytes()
        == (out_dir / f"jobs{jobs}.{kind}.jsonl").read_bytes()
        for kind in ("actions", "decisions", "dlq")
    )


def run(name: str, events: Path, catalog: Path, out_dir: Path, json_s: float) -> dict[str, Any]:
    """--jobs 1 and --jobs 2 on the same file, one after the other."""
    n = sum(1 for _ in events.open("rb"))
    one_s, one_mb = timed(replay_command(events, catalog, out_dir, 1))
    two_s, two_mb = timed(replay_command(events, catalog, out_dir, 2))
    return {
        "input": name,
        "events": n,
        "jobs1_seconds": one_s,
        "jobs1_events_per_s": n / one_s,
        "jobs1_peak_rss_mb": one_mb,
        "jobs1_vs_json_passthrough": json_s / one_s,
        "jobs2_seconds": two_s,
        "jobs2_peak_rss_mb": two_mb,
        "jobs2_speedup": one_s / two_s,
        "jobs2_same_bytes": same_files(out_dir, 2),
    }


def peak_rss(name: str, events: Path, catalog: Path, out_dir: Path) -> dict[str, Any]:
    n = sum(1 for _ in events.open("rb"))
    seconds, mb = timed(replay_command(events, catalog, out_dir, 1))
    for kind in ("actions", "decisions", "dlq"):
        (out_dir / f"jobs1.{kind}.jsonl").unlink(missing_ok=True)
    return {"input": name, "events": n, "seconds": seconds, "peak_rss_mb": mb}


GROUPS = {
    "admission (msgspec fast path, pydantic fallback)": (
        "admit_fast (admission.py)",
        "admit (admission.py)",
    ),
    "engine and processor (Processor.on_event, flush)": (
        "Processor.on_event (processor.py)",
        "Processor.flush (processor.py)",
    ),
    "output encoding and writing (FileSink.write)": ("FileSink.write (run.py)",),
    "counting (Tally.count_output)": ("Tally.count_output (tally.py)",),
    "reading lines (numbered_lines)": ("numbered_lines (files.py)",),
}


def profile(events: Path, catalog: Path, out_dir: Path) -> dict[str, Any] | None:
    """py-spy over `replay --jobs 1`: the share of samples in each part, and the functions
    with the most samples of their own. None when py-spy is not installed."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(spy):
        return None
    raw = out_dir / "profile.txt"
    command = [spy, "record", "-r", "100", "--format", "raw", "-o", str(raw), "--"]
    subprocess.run(
        [*command, *replay_command(events, catalog, out_dir, 1)], check=True, capture_output=True
    )
    return summarise_profile(raw)


def summarise_profile(raw: Path) -> dict[str, Any]:
    """Shares of the samples of a py-spy raw profile: per part (GROUPS) and per function."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [re.sub(r" \(.*?([^/]*\.py):\d+\)", r" (\1)", f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    groups = {label: sum(inclusive[f] for f in frames) / total for label, frames in GROUPS.items()}
    top = [(frame, n / total) for frame, n in own.most_common(12)]
    return {"samples": total, "groups": groups, "top_self": top}


def kafka_run(events: Path, catalog: Path, out_dir: Path, port: int) -> dict[str, Any]:
    """`replay --from-kafka` over the records of ``events`` on a broker of its own (five
    input topics of 8 partitions, each record stamped with the largest ts so far: the
    time it arrived), against `replay FILE` of the same file, in the same run."""
    from kafka import KafkaProducer

    from bench.worker import local_broker
    from suppressor.adapters.admin import ensure_topics
    from suppressor.adapters.feed import route_by_type
    from suppressor.adapters.topology import default_topic_specs
    from suppressor.wire.timefmt import parse_to_ms

    inputs = ["events.browse", "events.cart", "events.purchase", "events.review"]
    inputs.append("events.preferences")
    n = 0
    with local_broker(out_dir / "kafka", port) as bootstrap:
        specs = default_topic_specs(inputs, "catalog", ["actions", "decisions", "events.dlq"], 8)
        ensure_topics(bootstrap, specs)
        routes = route_by_type(inputs)
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, acks=1, linger_ms=50, batch_size=512 * 1024,
            compression_type=None, max_in_flight_requests_per_connection=1,
        )  # fmt: skip
        stamp = 0
        started = time.perf_counter()
        with events.open("rb") as handle:
            for line in handle:
                value = line.rstrip(b"\n")
                record = msgspec_json_decode(value)
                stamp = max(stamp, parse_to_ms(record["ts"]))
                producer.send(
                    routes[record["type"]], key=record["user_id"].encode(), value=value,
                    timestamp_ms=stamp,
                )  # fmt: skip
                n += 1
        producer.flush()
        producer.close()
        produce_s = time.perf_counter() - started
        command = [*CLI, "--from-kafka", "--since", "1970-01-01T00:00:01Z", "--quiet"]
        command += ["--catalog", str(catalog), "--broker", bootstrap]
        command += ["--input-topics", ",".join(inputs)]
        for kind in ("actions", "decisions", "dlq"):
            command += [f"--{kind}", str(out_dir / f"kafka.{kind}.jsonl")]
        kafka_s, kafka_mb = timed(command)
    file_s, file_mb = timed(replay_command(events, catalog, out_dir, 1))
    return {
        "records": n,
        "produce_seconds": produce_s,
        "kafka_seconds": kafka_s,
        "kafka_records_per_s": n / kafka_s,
        "kafka_peak_rss_mb": kafka_mb,
        "file_seconds": file_s,
        "file_events_per_s": n / file_s,
        "file_peak_rss_mb": file_mb,
        "kafka_vs_file_rate": file_s / kafka_s,
    }


def msgspec_json_decode(value: bytes) -> dict[str, Any]:
    import msgspec

    decoded: dict[str, Any] = msgspec.json.decode(value)
    return decoded
