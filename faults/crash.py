"""Worker crash (issue 6, item 1): ``kill -9`` at random points, restart on the same data dir.

A synthetic shop stream (``shop_events``, 100,000 events at ``--scale full``) is fed live,
paced faster than the worker reads, while one worker processes it; at seeded random points
of its progress (fractions of the input its group has committed, plus a random delay of up
to 1.5 s so the kill lands mid-batch or mid-transaction) the worker gets SIGKILL and a new
process starts at once on the same data dir. After the last kill, one consent per partition
past the last deadline (the sentinels) brings stream time to replay's ``--until``. Actions
read ``read_committed`` are compared by ``action_id`` with ``suppressor replay`` of the same
input: lost, duplicated, changed (same id, other content), extra. Then the same with
``at_least_once`` on a smaller stream, where duplicates are allowed but must be copies of
replay's actions.

``crash`` runs it with the tests' settings (event clock, 3 partitions), ``crash_production``
with production's (hybrid clock, 8 partitions, 1 standby replica): see ``faults.streaming``'s
``Setup``.
"""

from __future__ import annotations

import json
import random
import re
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from faults.harness import Context, Outcome
from faults.streaming import (
    HYBRID_CHECKS,
    PRODUCTION,
    TESTS,
    Comparison,
    Feeder,
    Lag,
    Restart,
    Setup,
    StallWatch,
    compare,
    late_events,
    log_excerpt,
    read_actions,
    sentinel_lines,
    summary,
    synthetic_stream,
    time_restart,
    wait_caught_up,
)
from tests.integration.worker_helpers import WorkerProcess

STALL_S = 120.0
"""No committed progress for this long while input waits: the worker is stalled."""
FEED_RATE = 2_500.0
"""Events per second fed: faster than the worker (about 1,000/s here), so a backlog builds."""


@dataclass
class CrashRun:
    guarantee: str
    events: int
    comparison: Comparison
    kills: list[str] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    first_start: Restart | None = None
    catch_up_s: float | None = None
    wiped: int = 0
    exit_code: int | None = None
    problems: list[str] = field(default_factory=list)
    stalled: bool = False
    late: int | None = None
    """suppressor_late_events_total of the last worker process (the others' died with them)."""
    longest_pause_s: float = 0.0


def stuck_partitions(worker: WorkerProcess) -> str:
    """The worker's own ``suppressor_consumer_lag`` samples that are not 0."""
    try:
        url = f"http://127.0.0.1:{worker.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError as error:
        return f"(no /metrics: {error})"
    found = re.findall(r'suppressor_consumer_lag\{partition="(\d+)",topic="([^"]+)"\} (\S+)', text)
    behind = [
        f"{topic.rsplit('.', 1)[-1]}/{p}: {float(v):.0f}" for p, topic, v in found if float(v)
    ]
    return ", ".join(behind) or "none"


def _progress_to(lag: Lag, worker: WorkerProcess, target: float, stall_s: float) -> bool:
    """Wait until the group has committed ``target`` input records; False when the committed
    offsets do not move for ``stall_s``."""
    last, moved = lag.committed(), time.monotonic()
    while last < target:
        worker.assert_alive()
        if time.monotonic() - moved > stall_s:
            return False
        time.sleep(0.2)
        now = lag.committed()
        if now != last:
            last, moved = now, time.monotonic()
    return True


def _stall_evidence(lag: Lag, worker: WorkerProcess) -> str:
    return (
        f"input lag {lag.lag():,} records; /health {json.dumps(worker.health())}; the "
        f"worker's suppressor_consumer_lag (topic/partition: records) "
        f"{stuck_partitions(worker)}"
    )


def crash_run(
    ctx: Context,
    guarantee: str,
    *,
    events: int,
    users: int,
    kills: int,
    seed: int,
    setup: Setup = TESTS,
) -> CrashRun:
    deployment = setup.deployment(ctx, guarantee.replace("_", "-"), processing_guarantee=guarantee)
    stream = synthetic_stream(ctx, deployment, events=events, users=users, seed=seed)
    deployment.feed_catalog(stream.catalog)
    rng = random.Random(ctx.seed * 1000 + seed)
    points = sorted(rng.uniform(0.03, 0.9) for _ in range(kills))
    delays = [rng.uniform(0.0, 1.5) for _ in range(kills)]
    total = len(stream.lines) + deployment.partitions
    feeder = Feeder(deployment)
    lag = Lag(deployment)
    worker = WorkerProcess(deployment, "crash").start()
    result = CrashRun(guarantee, events, compare(stream.expected, []))
    watch = StallWatch(deployment)
    try:
        result.first_start = time_restart(worker, processing=False)
        watch.start()
        feeder.start([*stream.lines, *sentinel_lines(deployment, stream.until)], rate=FEED_RATE)
        for number, (point, delay) in enumerate(zip(points, delays, strict=True), 1):
            if not _progress_to(lag, worker, point * total, STALL_S):
                result.problems.append(
                    f"{guarantee}: after kill {number - 1} the worker stopped making progress: "
                    f"the group's committed input offsets stayed at {lag.committed():,} of "
                    f"{total:,} for {STALL_S:.0f} s (kill point {point:.0%}); "
                    f"{_stall_evidence(lag, worker)}"
                )
                result.stalled = True
                break
            time.sleep(delay)
            health = worker.health() or {}
            committed = lag.committed()
            worker.kill()
            result.kills.append(f"{committed / total:.0%}")
            ctx.log(
                f"{guarantee}: kill {number}/{kills} at {committed:,} of {total:,} committed "
                f"({health.get('records_processed', '?')} records processed by that process)"
            )
            worker = WorkerProcess(deployment, "crash").start()
            restart = time_restart(worker)
            result.restarts.append(restart)
            ctx.log(
                f"{guarantee}: restarted: /health ok {restart.healthy_s}s, processing "
                f"{restart.processing_s}s"
            )
        feeder.join()
        timeout = ctx.pick(small=300, full=900)
        if not result.stalled:
            result.catch_up_s = wait_caught_up(lag, [worker], timeout, stall_s=STALL_S)
            if result.catch_up_s is None:
                result.stalled = True
                result.problems.append(
                    f"{guarantee}: the worker did not catch up (no progress for {STALL_S:.0f} "
                    f"s, or not within {timeout} s): {_stall_evidence(lag, worker)}"
                )
        actions = read_actions(deployment, len(stream.expected), timeout_s=120)
        result.comparison = compare(stream.expected, actions)
        result.late = late_events(worker)
    finally:
        watch.stop()
        result.longest_pause_s = watch.longest
        lag.close()
        if worker.process is not None and worker.process.poll() is None:
            result.exit_code = worker.stop()
        else:
            result.problems.append(
                f"{guarantee}: the worker had exited: {log_excerpt(worker) or worker.log_tail()}"
            )
    result.wiped = worker.log_text().count("wiped")
    if result.exit_code not in (0, None):
        result.problems.append(f"{guarantee}: graceful stop exited {result.exit_code}")
    return result


def run(ctx: Context) -> Outcome:
    return crash_scenario(ctx, TESTS)


def run_production(ctx: Context) -> Outcome:
    return crash_scenario(ctx, PRODUCTION)


def crash_scenario(ctx: Context, setup: Setup) -> Outcome:
    eos = crash_run(
        ctx,
        "exactly_once",
        events=ctx.pick(small=10_000, full=100_000),
        users=ctx.pick(small=1_000, full=10_000),
        kills=ctx.pick(small=5, full=6),
        seed=11,
        setup=setup,
    )
    alo = crash_run(
        ctx,
        "at_least_once",
        events=ctx.pick(small=4_000, full=20_000),
        users=ctx.pick(small=500, full=2_000),
        kills=3,
        seed=12,
        setup=setup,
    )
    failures = eos.problems + alo.problems
    if len(eos.kills) < ctx.pick(small=5, full=5):
        failures.append(f"exactly_once: only {len(eos.kills)} kills")
    if not eos.comparison.exact:
        failures.append(f"exactly_once differs from replay: {eos.comparison.describe()}")
    if not alo.comparison.same_ids_and_content:
        failures.append(
            f"at_least_once: the distinct actions differ from replay: {alo.comparison.describe()}"
        )
    if setup.hybrid:
        failures += [
            f"{crashed.guarantee}: the last worker counted {crashed.late} late events"
            for crashed in (eos, alo)
            if crashed.late != 0
        ]
    figures: dict[str, Any] = {}
    for label, crashed in (("exactly-once", eos), ("at-least-once", alo)):
        prefix = f"{label}: "
        figures[prefix + f"events (+ {setup.partitions} sentinels)"] = crashed.events
        figures[prefix + "kill -9 (input committed at each kill)"] = (
            f"{len(crashed.kills)} ({', '.join(crashed.kills)})"
        )
        figures.update(crashed.comparison.figures(prefix))
        figures[prefix + "distinct action_ids read"] = crashed.comparison.distinct
        figures[prefix + "first start to /health ok s (empty topics)"] = (
            f"{crashed.first_start.healthy_s:.1f}"
            if crashed.first_start and crashed.first_start.healthy_s is not None
            else "n/a"
        )
        figures[prefix + "restart to /health ok s (min / median / max)"] = summary(
            r.healthy_s for r in crashed.restarts
        )
        figures[prefix + "restart to first record processed s (min / median / max)"] = summary(
            r.processing_s for r in crashed.restarts
        )
        figures[prefix + "partitions wiped on restart (dirty state, log)"] = crashed.wiped
        figures[prefix + "stalled (committed offsets unmoved 120 s, input waiting)"] = (
            crashed.stalled
        )
        figures[prefix + "after the last kill: s until caught up"] = (
            "n/a" if crashed.catch_up_s is None else f"{crashed.catch_up_s:.1f}"
        )
        figures[prefix + "longest pause of a partition with input waiting s (committed)"] = (
            f"{crashed.longest_pause_s:.1f}"
        )
        figures[prefix + "late events counted by the last worker"] = (
            "n/a" if crashed.late is None else crashed.late
        )
    passed = not failures
    production = " with production settings (issue 17, item 6)" if setup.suffix else ""
    return Outcome(
        name="crash" + setup.suffix,
        title=f"Worker crash, kill -9 (issue 6, item 1){production}",
        passed=passed,
        figures=figures,
        notes=failures,
        method=method(setup),
        headline=(
            f"{eos.events:,} events, {len(eos.kills)} kill -9: exactly-once "
            f"{len(eos.comparison.lost)} lost / {eos.comparison.duplicated} duplicated / "
            f"{len(eos.comparison.changed)} changed; at-least-once ({len(alo.kills)} kills) "
            f"{alo.comparison.duplicated} duplicates, {len(alo.comparison.lost)} lost, "
            f"{len(alo.comparison.changed) + len(alo.comparison.extra)} differing"
        ),
    )


def method(setup: Setup) -> str:
    standby = dict(setup.settings).get("standby_replicas", "0") != "0"
    nowhere = " (a standby replica needs a second worker: with one it has nowhere to go)"
    text = METHOD.format(
        settings=setup.text + (nowhere if standby else ""), rate=f"{FEED_RATE:,.0f}"
    )
    return text + (HYBRID_CHECKS if setup.hybrid else "")


METHOD = """
- Input: `shop_events` (tests/integration/worker_helpers.py; browse, cart, purchase, review,
  consent, forget; users chosen at random; two days of event time, reordered by up to a
  minute), fed live by a producer paced at {rate} events/s (faster than the worker,
  so a backlog builds) and followed by one consent per partition two days past the last
  event (the sentinels), so stream time reaches replay's `--until`.
- One worker, with {settings}. Kill points: seeded random fractions of the input (uniform in
  3 %..90 %, sorted), each plus a random 0..1.5 s; when the group's committed input
  offsets reach a point, the worker gets SIGKILL and a new `python -m
  suppressor.entrypoints.worker` starts at once on the same data dir (the figure in
  brackets is the share of the input committed at the kill). Restart times are from
  process start until `/health` says ok and until `records_processed` > 0.
- After the last kill and the whole feed, the worker must bring the group's committed
  offsets to the input topics' end; then `actions` is read from the beginning with
  `isolation_level=read_committed` and compared by `action_id` with `suppressor replay`
  of the same file: *lost* (in replay, not read), *duplicated* (copies beyond the first),
  *changed* (an action whose content differs from replay's under the same id), *extra*.
  Exactly-once passes when all are 0; at-least-once when lost, changed and extra are 0
  (duplicates are allowed and counted). The last worker must then stop gracefully (exit 0).
- *Longest pause*: sampled every 0.5 s, the longest spell in which a partition number
  had input waiting and the group's committed offsets on it did not move (restarts
  included; committed offsets trail processing by up to a commit interval).
"""
