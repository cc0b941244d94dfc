"""``python -m bench.profile_worker``: where a catching-up worker spends its time (py-spy).

One fresh broker, a backlog of synthetic events on the five input topics, one worker
(at-least-once by default) started on it under ``py-spy record`` until its committed
offsets reach the end of the inputs. The folded stacks are summarised: the share of samples
in which each function is on the stack (inclusive) and at its top (self), and the shares of
a few groups of the project's own interest (Faust's per-record path, parsing, the engine,
state, sends, metrics). The summary goes to ``bench/out/profile/<guarantee>.json`` and
stdout; BENCHMARKS.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.worker import Deployment, Offsets, Worker, deployment_feed, local_broker
from suppressor.core.datasets import synthetic

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "profile"

GROUPS = {
    "idle (waiting in select)": ("selectors.py:EpollSelector.select",),
    "metrics": ("suppressor/adapters/metrics.py", "prometheus_client/", "faust/sensors/"),
    "admission (parse, validate)": ("suppressor/core/admission.py", "suppressor/wire/events.py"),
    "state (codec, RocksDB)": ("suppressor/adapters/state.py", "codec.py:decode_state",
                               "codec.py:state_to_bytes", "faust_internals/store.py", "rocksdict"),
    "outputs (encode, send)": ("codec.py:output_records", "faust_internals/sender.py",
                               "aiokafka/producer/", "faust/transport/producer.py"),
    "engine and processor": ("suppressor/core/",),
    "the rest of the pipeline (clock, routing, repartition)": ("suppressor/adapters/pipeline.py",
                                                               "suppressor/adapters/partition.py"),
    "fetch (consumer thread, aiokafka)": ("aiokafka/consumer/", "aiokafka/record/",
                                          "faust/transport/drivers/aiokafka.py:ThreadDelegate"),
    "Faust's per-record path (drain, conductor, stream, acks, tasks)": ("faust/", "mode/"),
}  # fmt: skip
"""Each sample counts once, for the first group (in this order) with a frame on its stack:
the project's code runs under Faust's agent, so Faust's own path is what is left."""


def summarise(folded: Path, top: int = 25) -> dict[str, Any]:
    """Folded stacks (``frame;frame;... count``) -> inclusive/self shares per function."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
        groups[_group(frames)] += count
    share = lambda n: round(n / total, 3) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "self": [(f, share(n)) for f, n in own.most_common(top)],
        "inclusive": [(f, share(n)) for f, n in inclusive.most_common(top)],
        "groups": {g: share(n) for g, n in groups.most_common()},
    }


def _group(frames: list[str]) -> str:
    for group, needles in GROUPS.items():
        if any(needle in frame for frame in frames for needle in needles):
            return group
    return "other (event loop, sockets, ...)"


def _frame(raw: str) -> str:
    """``function (path/file.py:line)`` -> ``path/file.py:function`` (site-packages cut)."""
    name, _, where = raw.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/p20/", "/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{path}:{name}"


def run(events: int, users: int, partitions: int, guarantee: str, port: int) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    data = OUT / "synthetic"
    data.mkdir(exist_ok=True)
    synthetic.generate(data / "events.jsonl", data / "catalog.jsonl", events=events, users=users)
    with local_broker(OUT / "kafka", port) as bootstrap:
        deployment = Deployment(bootstrap, "prof.", OUT / "run", partitions, guarantee=guarantee)
        total = deployment_feed(deployment, data / "events.jsonl", data / "catalog.jsonl")
        offsets = Offsets(bootstrap)
        end = offsets.end(deployment.topology.inputs)
        folded = OUT / f"{guarantee}.folded"
        worker = Worker(deployment, "profiled").start()
        assert worker.process is not None
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
             str(worker.process.pid), "--format", "raw", "--output", str(folded), "--rate", "200",
             "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        started = time.monotonic()
        try:
            first = None
            cpu_at_first = 0.0
            while not offsets.caught_up(deployment.settings.app_id, end):
                worker.check_alive()
                if first is None and worker.metrics().get("suppressor_events_total", 0) > 0:
                    first, cpu_at_first = time.monotonic(), worker.cpu_seconds()
                time.sleep(0.25)
            done = time.monotonic()
            cpu = worker.cpu_seconds() - cpu_at_first  # the catch-up's, not the start-up's
        finally:
            spy.send_signal(2)  # SIGINT: py-spy writes what it has
            spy.wait(timeout=60)
            worker.stop()
    result = summarise(folded)
    seconds = done - (first or started)
    result.update(
        guarantee=guarantee, events=total, seconds=round(seconds, 1),
        events_per_s=round(total / seconds), worker_cpu_s=round(cpu, 1),
        cpu_us_per_event=round(cpu / total * 1e6),
    )  # fmt: skip
    (OUT / f"{guarantee}.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_worker")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--guarantee", default="at_least_once")
    parser.add_argument("--kafka-port", type=int, default=19294)
    args = parser.parse_args(argv)
    result = run(args.events, args.users, args.partitions, args.guarantee, args.kafka_port)
    print(json.dumps({k: v for k, v in result.items() if k not in ("self", "inclusive")}, indent=2))
    for kind in ("self", "inclusive"):
        print(f"\ntop {kind}:")
        for frame, share in result[kind]:
            print(f"  {share:6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
