"""`python -m bench [--events N] [--users U]`: measure, then write BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import engine
from suppressor.datasets import rees46, synthetic

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--report", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)

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
    (OUT / "results.json").write_text(json.dumps({"runs": results, "memory": memory}, indent=2))
    Path(args.report).write_text(_report(results, memory))
    print(Path(args.report).read_text())
    return 0


def _memory_in_fresh_process(synth_dir: Path) -> dict[str, Any]:
    code = (
        "import json,sys; from pathlib import Path; from bench import engine; "
        "from suppressor.replay.files import load_catalog; "
        f"c,_=load_catalog({str(synth_dir / 'catalog.jsonl')!r}); "
        f"ev=engine.read_events(Path({str(synth_dir / 'events.jsonl')!r})); "
        "mb,users=engine.state_memory_mb(ev,c); print(json.dumps({'mb':mb,'users':users}))"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout))


def _report(results: list[dict[str, Any]], memory: dict[str, Any]) -> str:
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
    return f"""# Benchmarks

Written by `make bench` (`python -m bench`) on {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
Python {platform.python_version()}, {platform.machine()}, one process (one core).
The machine is shared and noisy: read the ratios against the same-run baselines
first, the absolute rates second. Nothing here is asserted by the test suite.

## Engine and replay (issue 3)

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
  `python -m suppressor.datasets.rees46`; the synthetic stream from
  `python -m suppressor.datasets.synthetic` (seed 46), drawn from the sample's
  event mix, item popularity, session gaps and conversion, with up to 30 s of
  arrival jitter so the reorder buffer works.
- Targets from issue 3 (one core): engine ≥ 100,000 events/s; replay of 1,000,000
  events < 30 s; state for 100,000 users < 200 MB.
"""


if __name__ == "__main__":
    sys.exit(main())
