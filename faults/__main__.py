"""``python -m faults [--only NAME ...] [--scale small|full] [--kafka-port PORT]``: see
``faults/__init__.py``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from faults import (
    broker_restart,
    burst,
    crash,
    erasure,
    headers,
    hostile,
    poison,
    rebalance_storm,
    zombie,
)
from faults.harness import BROKER_PORT, REPORT, Scenario, broker_port, run_scenarios, write_report

SCENARIOS: dict[str, Scenario] = {
    "hostile": hostile.run,
    "erasure": erasure.run,
    "headers": headers.run,
    "crash": crash.run,
    "broker_restart": broker_restart.run,
    "rebalance_storm": rebalance_storm.run,
    "burst": burst.run,
    "poison": poison.run,
    "zombie": zombie.run,
    "crash_production": crash.run_production,
    "rebalance_storm_production": rebalance_storm.run_production,
}
"""Every scenario, in run order: name -> ``run(ctx) -> Outcome``."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m faults",
        description="The fault suite: a broker of its own, real workers, figures in "
        "RELIABILITY.md; exit status 1 when a scenario failed.",
    )
    parser.add_argument(
        "--only", nargs="+", choices=sorted(SCENARIOS), metavar="NAME", help="run only these"
    )
    parser.add_argument("--scale", choices=("small", "full"), default="full")
    parser.add_argument("--no-report", action="store_true", help=f"do not rewrite {REPORT.name}")
    parser.add_argument(
        "--kafka-port",
        type=int,
        default=broker_port(),
        metavar="PORT",
        help="the suite's broker port, the controller on the next one (env FAULTS_KAFKA_PORT, "
        f"default {BROKER_PORT}); another suite running on this machine needs another",
    )
    args = parser.parse_args(argv)
    chosen = [(name, SCENARIOS[name]) for name in SCENARIOS if not args.only or name in args.only]
    outcomes = run_scenarios(chosen, args.scale, port=args.kafka_port)
    if not args.no_report:
        write_report(outcomes, list(SCENARIOS))
    for outcome in outcomes:
        status = "pass" if outcome.passed else "FAIL"
        print(f"{outcome.name}: {status} ({outcome.seconds} s) {outcome.headline}")
        if not outcome.passed:
            for note in outcome.notes:
                print(f"  - {note}")
    return 0 if all(outcome.passed for outcome in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
