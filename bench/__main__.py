"""`python -m bench [--only engine|worker] [--events N] [--users U] [--worker-events N] ...`:
measure, then write BENCHMARKS.md.

Each part keeps its figures in bench/out (``results.json``, ``worker/results.json``), so a
run of one part rewrites BENCHMARKS.md with the other part's last figures kept."""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import engine, replay, worker
from bench.report import replay_section, worker_section
from suppressor.core.datasets import rees46, synthetic

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
ENGINE_RESULTS = OUT / "results.json"
WORKER_RESULTS = OUT / "worker" / "results.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", choices=("engine", "worker"), help="one part (default: both)")
    parser.add_argument("--events", type=int, default=1_000_000, help="engine: synthetic events")
    parser.add_argument("--users", type=int, default=100_000, help="engine: synthetic users")
    parser.add_argument(
        "--rss-events", type=int, default=5_000_000,
        help="engine: synthetic events of the peak-RSS replay (5,000,000; 0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--worker-events", type=int, default=50_000, help="worker: backlog events (50,000)"
    )
    parser.add_argument(
        "--worker-users", type=int, default=10_000, help="worker: backlog users (10,000)"
    )
    parser.add_argument(
        "--restart-users", type=int, default=100_000,
        help="worker: users of state before the kill -9 (100,000)",
    )  # fmt: skip
    parser.add_argument(
        "--latency-seconds", type=float, default=30.0,
        help="worker: seconds of constant-rate traffic per latency run (30)",
    )  # fmt: skip
    parser.add_argument(
        "--worker-partitions", type=int, default=8, help="worker: partitions (8, the default)"
    )
    parser.add_argument("--kafka-port", type=int, default=worker.PORT)
    parser.add_argument(
        "--kafka-replay-events", type=int, default=2_000_000,
        help="engine: records of the replay --from-kafka run, on a broker of its own on "
        "--kafka-port (2,000,000; 0: none)",
    )  # fmt: skip
    parser.add_argument("--report", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)

    if args.only in (None, "engine"):
        _engine(args)
    if args.only in (None, "worker"):
        figures = worker.run(
            OUT / "worker",
            events=args.worker_events,
            users=args.worker_users,
            restart_users=args.restart_users,
            latency_seconds=args.latency_seconds,
            partitions=args.worker_partitions,
            port=args.kafka_port,
        )
        figures["measured_at"] = _now()
        WORKER_RESULTS.write_text(json.dumps(figures, indent=2))
    Path(args.report).write_text(_report(Path(args.report)))
    print(Path(args.report).read_text())
    return 0


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def _engine(args: argparse.Namespace) -> None:
    sample_dir = OUT / "rees46"
    sample_files, _ = rees46.default_paths(rees46.default_data_dir(), cosmetics=False)
    rees46.write(rees46.convert(sample_files), sample_dir)
    synth_dir = OUT / "synthetic"
    synth_dir.mkdir(exist_ok=True)
    synthetic.generate(
        synth_dir / "events.jsonl", synth_dir / "catalog.jsonl", events=args.events,
        users=args.users,
    )  # fmt: skip

    results = [
        engine.run("REES46 multi-category sample", sample_dir / "events.jsonl",
                   sample_dir / "catalog.jsonl", sample_dir),
        engine.run(f"synthetic {args.events:,} events / {args.users:,} users",
                   synth_dir / "events.jsonl", synth_dir / "catalog.jsonl", synth_dir),
    ]  # fmt: skip
    memory = _memory_in_fresh_process(synth_dir)
    scale = [
        replay.run(r["input"], path / "events.jsonl", path / "catalog.jsonl", path,
                   r["json_passthrough_seconds"])
        for r, path in zip(results, (sample_dir, synth_dir), strict=True)
    ]  # fmt: skip
    profile = replay.profile(synth_dir / "events.jsonl", synth_dir / "catalog.jsonl", synth_dir)
    rss = None
    if args.rss_events:
        big_dir = OUT / "synthetic-rss"
        big_dir.mkdir(exist_ok=True)
        users = args.rss_events // 10
        synthetic.generate(
            big_dir / "events.jsonl", big_dir / "catalog.jsonl", events=args.rss_events,
            users=users,
        )  # fmt: skip
        name = f"synthetic {args.rss_events:,} events / {users:,} users"
        rss = replay.peak_rss(name, big_dir / "events.jsonl", big_dir / "catalog.jsonl", big_dir)
        (big_dir / "events.jsonl").unlink()
    kafka = None
    if args.kafka_replay_events:
        kafka_dir = OUT / "synthetic-kafka"
        kafka_dir.mkdir(exist_ok=True)
        users = args.kafka_replay_events // 10
        synthetic.generate(
            kafka_dir / "events.jsonl", kafka_dir / "catalog.jsonl",
            events=args.kafka_replay_events, users=users,
        )  # fmt: skip
        kafka = replay.kafka_run(
            kafka_dir / "events.jsonl", kafka_dir / "catalog.jsonl", kafka_dir, args.kafka_port
        )
        for leftover in kafka_dir.glob("*.jsonl"):
            leftover.unlink()
    ENGINE_RESULTS.write_text(
        json.dumps(
            {"runs": results, "memory": memory, "replay": scale, "profile": profile,
             "rss": rss, "kafka": kafka, "measured_at": _now()},
            indent=2,
        )
    )  # fmt: skip


ENGINE_HEADING = "## Engine and replay"
WORKER_HEADING = "## Worker on the local broker"
PROFILE_HEADING = "## Where a catching-up worker's time goes"
"""A section written from ``python -m bench.profile_worker`` runs (before and after a
change: the old code's profile cannot be taken again), kept as it is by every report."""


def _report(previous: Path | None = None) -> str:
    """BENCHMARKS.md from the saved figures; a part with none saved here (bench/out is not
    committed) keeps its section of the ``previous`` report as it was."""
    kept = previous.read_text() if previous is not None and previous.exists() else ""
    text = f"""# Benchmarks

Written by `make bench` (`python -m bench`; `--only engine` or `--only worker` runs one
part and keeps the other's last figures) on {_now()},
Python {platform.python_version()}, {platform.machine()}, on a 2-core machine shared with others.
The machine is noisy: read the ratios against the same-run baselines
first, the absolute rates second. Nothing here is asserted by the test suite.
"""
    if ENGINE_RESULTS.exists():
        saved = json.loads(ENGINE_RESULTS.read_text())
        when = saved.get("measured_at") or time.strftime(
            "%Y-%m-%d %H:%M UTC", time.gmtime(ENGINE_RESULTS.stat().st_mtime)
        )
        text += "\n" + _engine_section(saved["runs"], saved["memory"], when)
        if saved.get("replay"):
            text += "\n" + replay_section(
                saved["replay"],
                saved.get("profile"),
                saved.get("rss"),
                saved.get("kafka"),
                saved["runs"],
            )
    elif ENGINE_HEADING in kept and WORKER_HEADING in kept:
        text += "\n" + kept[kept.index(ENGINE_HEADING) : kept.index(WORKER_HEADING)].rstrip() + "\n"
    if WORKER_RESULTS.exists():
        text += "\n" + worker_section(json.loads(WORKER_RESULTS.read_text()))
    elif WORKER_HEADING in kept:
        text += "\n" + _section(kept, WORKER_HEADING)
    if PROFILE_HEADING in kept:
        text += "\n" + _section(kept, PROFILE_HEADING)
    return text


def _section(report: str, heading: str) -> str:
    """The section of ``report`` under ``heading``, up to the next of its level."""
    start = report.index(heading)
    end = report.find("\n## ", start + len(heading))
    return report[start:] if end < 0 else report[start : end + 1]


def _memory_in_fresh_process(synth_dir: Path) -> dict[str, Any]:
    code = (
        "import json,sys; from pathlib import Path; from bench import engine; "
        "from suppressor.core.replay.files import load_catalog; "
        f"c,_=load_catalog({str(synth_dir / 'catalog.jsonl')!r}); "
        f"ev=engine.read_events(Path({str(synth_dir / 'events.jsonl')!r})); "
        "mb,users=engine.state_memory_mb(ev,c); print(json.dumps({'mb':mb,'users':users}))"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout))


def _engine_section(results: list[dict[str, Any]], memory: dict[str, Any], when: str) -> str:
    header = (
        "| input | events | users | engine events/s | engine ÷ dict-update baseline "
        "| replay s (actions) | replay events/s | replay ÷ JSON passthrough "
        "| replay s (actions + decisions) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = "\n".join(
        f"| {r['input']} | {r['events']:,} | {r['users']:,} | {r['engine_events_per_s']:,.0f} "
        f"| {r['engine_vs_dict_update']:.3f} | {r['replay_seconds']:.1f} "
        f"| {r['replay_events_per_s']:,.0f} | {r['replay_vs_json_passthrough']:.2f} "
        f"| {r['replay_with_decisions_seconds']:.1f} |"
        for r in results
    )
    return f"""## Engine and replay (issue 3)

Measured {when}, one process (one core).

{header}
{rows}

State memory after the synthetic stream (RSS growth in a fresh process while
the `DictStore` holds every user's state, pending events and basket): **{memory["mb"]:.0f} MB**
for **{memory["users"]:,}** users.

### Method

- *engine*: the input is parsed and converted to engine events first (not timed);
  then `Processor.on_event` runs over every event with stream time = the largest
  ts so far, plus the final flush — decisions and actions are built as values,
  nothing is serialised. Baseline: a loop doing one dict update per event over the
  same list, best of 3 (the ratio says how many times slower than a trivial
  Python loop the engine is).
- *replay*: the real `suppressor replay` command in a fresh process, JSON in,
  actions and DLQ JSON out to files (and a second run that also writes the
  decisions, one per trigger considered), default policy, no `--until`.
  Baseline: `json.loads` + `json.dumps` of every input line in this process; the
  ratio is baseline time ÷ replay time (1.0 would mean replay costs no more than
  re-serialising its input).
- *inputs*: the REES46 multi-category sample converted by
  `python -m suppressor.core.datasets.rees46`; the synthetic stream from
  `python -m suppressor.core.datasets.synthetic` (seed 46), drawn from the sample's
  event mix, item popularity, session gaps and conversion, with up to 30 s of
  arrival jitter so the reorder buffer works.
- Targets from issue 3 (one core): engine ≥ 100,000 events/s; replay of 1,000,000
  events < 30 s; state for 100,000 users < 200 MB.
"""


if __name__ == "__main__":
    sys.exit(main())
