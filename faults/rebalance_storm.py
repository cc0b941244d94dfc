"""Rebalance storm (issue 6, item 3): workers join and leave every few seconds for a minute.

Half of a synthetic shop stream waits in the input topics; the other half is fed live
during the storm. Two or three workers run at a time: every 3-6 s (seeded) one joins, or
one leaves, by a graceful stop (SIGTERM) or by ``kill -9`` (coin toss), sometimes both at
once. A worker that joins takes one of four slots, each with its own data dir, so a slot
whose last worker was killed restarts on dirty local state. After the storm two workers
stay; once the group has caught up, the actions read ``read_committed`` must equal
``suppressor replay`` of the input: nothing lost, duplicated, changed or extra.

``rebalance_storm`` runs it with the tests' settings (event clock, 3 partitions, no standby),
``rebalance_storm_production`` with production's (hybrid clock, 8 partitions, 1 standby
replica): see ``faults.streaming``'s ``Setup``.
"""

from __future__ import annotations

import random
import signal
import time
from typing import Any

from faults.harness import Context, Outcome
from faults.streaming import (
    HYBRID_CHECKS,
    PRODUCTION,
    TESTS,
    Feeder,
    Lag,
    Setup,
    StallWatch,
    compare,
    late_events,
    log_excerpt,
    read_actions,
    sentinel_lines,
    synthetic_stream,
    write_evidence,
)
from tests.integration.worker_helpers import WorkerProcess

SLOTS = ("w0", "w1", "w2", "w3")


def first_errors(worker: WorkerProcess, limit: int = 6) -> str:
    """The first error lines its last process wrote to a slot's log (the cause; the last
    ones are its shutdown), each cut to 600 characters; the coordinator not found yet at
    start is no error here."""
    assert worker.process is not None
    mine = f':{worker.process.pid}"'  # the JSON lines' "worker": "<app>@<host>:<pid>"
    lines = [line for line in worker.log_text().splitlines() if mine in line]
    wanted = [
        line[:600]
        for line in lines
        if any(mark in line for mark in FIRST_ERROR_MARKS) and "CoordinatorNotAvailable" not in line
    ]
    return "\n".join(wanted[:limit]) or worker.log_tail(30)


FIRST_ERROR_MARKS = ('"level": "error"', '"level": "critical"')


class Storm:
    def __init__(self, ctx: Context, deployment: Any, rng: random.Random) -> None:
        self.ctx = ctx
        self.deployment = deployment
        self.rng = rng
        self.running: dict[str, WorkerProcess] = {}
        self.leaving: list[WorkerProcess] = []  # SIGTERM sent, exit code not collected yet
        self.exits: list[tuple[str, int | None]] = []
        self.joins = self.stops = self.kills = 0
        self.crashed: list[str] = []

    def free_slots(self) -> list[str]:
        busy = set(self.running) | {w.name for w in self.leaving if w.process.poll() is None}  # type: ignore[union-attr]
        return [slot for slot in SLOTS if slot not in busy]

    def join(self) -> None:
        free = self.free_slots()
        if not free:
            return
        slot = self.rng.choice(free)
        self.running[slot] = WorkerProcess(self.deployment, slot).start()
        self.joins += 1
        self.ctx.log(f"join {slot} ({len(self.running)} running)")

    def leave(self) -> None:
        slot = self.rng.choice(sorted(self.running))
        worker = self.running.pop(slot)
        assert worker.process is not None
        if self.rng.random() < 0.5:
            worker.process.send_signal(signal.SIGTERM)
            self.leaving.append(worker)
            self.stops += 1
            how = "graceful stop"
        else:
            worker.kill()
            self.kills += 1
            how = "kill -9"
        self.ctx.log(f"{how} {slot} ({len(self.running)} running)")

    def check(self) -> None:
        """Workers that exited on their own, and graceful stops that finished."""
        for slot, worker in list(self.running.items()):
            assert worker.process is not None
            if worker.process.poll() is not None:
                self.crashed.append(
                    f"{slot} exited with {worker.process.returncode} on its own; its log's "
                    f"first error lines:\n```\n{first_errors(worker)}\n```"
                )
                del self.running[slot]
        for worker in list(self.leaving):
            assert worker.process is not None
            if worker.process.poll() is not None:
                self.exits.append((worker.name, worker.process.returncode))
                self.leaving.remove(worker)

    def step(self) -> None:
        self.check()
        count = len(self.running)
        if count < 2:
            self.join()
        elif count >= 3:
            self.leave()
        elif self.rng.random() < 0.7:
            self.join()
        else:  # a replacement: one leaves as another joins
            self.leave()
            self.join()

    def finish(self, timeout_s: float = 90) -> None:
        for worker in self.leaving:
            assert worker.process is not None
            try:
                code: int | None = worker.process.wait(timeout=timeout_s)
            except Exception:
                worker.kill()
                code = None
            self.exits.append((worker.name, code))
        self.leaving.clear()


def run(ctx: Context) -> Outcome:
    return storm_scenario(ctx, TESTS)


def run_production(ctx: Context) -> Outcome:
    return storm_scenario(ctx, PRODUCTION)


def storm_scenario(ctx: Context, setup: Setup) -> Outcome:
    events = ctx.pick(small=10_000, full=40_000)
    storm_s = ctx.pick(small=20.0, full=60.0)
    deployment = setup.deployment(ctx, "storm")
    stream = synthetic_stream(ctx, deployment, events=events, users=events // 10, seed=31)
    half = len(stream.lines) // 2
    deployment.feed_catalog(stream.catalog)
    feeder = Feeder(deployment)
    feeder.send(stream.lines[:half])
    rng = random.Random(ctx.seed * 1000 + 31)
    storm = Storm(ctx, deployment, rng)
    lag = Lag(deployment)
    watch = StallWatch(deployment)
    figures: dict[str, Any] = {"events (half waiting, half fed during the storm)": events}
    failures: list[str] = []
    workers_seen: list[WorkerProcess] = []
    try:
        storm.join()
        storm.join()
        for worker in storm.running.values():
            worker.wait_healthy()
        workers_seen += storm.running.values()
        watch.start()
        rest = [*stream.lines[half:], *sentinel_lines(deployment, stream.until)]
        feeder.start(rest, rate=len(rest) / (storm_s * 0.8))
        committed_at_start = max(lag.committed(), 0)
        began = time.monotonic()
        while time.monotonic() - began < storm_s:
            time.sleep(rng.uniform(3.0, 6.0))
            storm.step()
            workers_seen += [w for w in storm.running.values() if w not in workers_seen]
        storm.check()
        while len(storm.running) < 2:
            storm.join()
            workers_seen += [w for w in storm.running.values() if w not in workers_seen]
        committed_at_end = max(lag.committed(), 0)
        feeder.join()
        ctx.log(f"storm over: {storm.joins} joins, {storm.stops} stops, {storm.kills} kills")
        figures["storm s"] = storm_s
        figures["joins (incl. the first two)"] = storm.joins
        figures["graceful leaves (SIGTERM)"] = storm.stops
        figures["kill -9 leaves"] = storm.kills
        figures["input committed during the storm"] = committed_at_end - committed_at_start
        settled = time.monotonic()
        timeout = ctx.pick(small=300, full=600)
        caught_up: float | None = None
        while time.monotonic() - settled < timeout:
            storm.check()
            if lag.lag() == 0:
                caught_up = time.monotonic() - settled
                break
            time.sleep(0.5)
        figures["after the storm: s until caught up (2 workers)"] = caught_up or "n/a"
        if caught_up is None:
            failures.append(f"the group did not catch up within {timeout} s after the storm")
        comparison = compare(
            stream.expected, read_actions(deployment, len(stream.expected), timeout_s=120)
        )
        figures.update(comparison.figures())
        if not comparison.exact:
            failures.append(f"actions differ from replay: {comparison.describe()}")
            evidence = write_evidence(deployment, comparison, stream.expected, stream.path)
            ctx.log(f"the affected users' records: {evidence}")
        late = [late_events(worker) for worker in storm.running.values()]
        figures["late events counted by the workers left at the end"] = (
            "n/a" if None in late else sum(n or 0 for n in late)
        )
        if setup.hybrid and late != [0] * len(late):
            failures.append(f"the workers left at the end counted late events: {late}")
    finally:
        watch.stop()
        figures["longest pause of a partition with input waiting s (committed)"] = round(
            watch.longest, 1
        )
        lag.close()
        for worker in storm.running.values():
            assert worker.process is not None
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
                storm.leaving.append(worker)
        storm.running.clear()
        storm.finish()
    failures += storm.crashed
    bad_exits = [f"{name}: {code}" for name, code in storm.exits if code != 0]
    figures["graceful stops (incl. the final ones) not exiting 0"] = len(bad_exits)
    if bad_exits:
        failures.append(f"graceful stops that did not exit 0: {', '.join(bad_exits)}")
    errors = sum(len(log_excerpt(w, 10_000).splitlines()) for w in workers_seen)
    figures["error lines in the workers' logs"] = errors
    production = " with production settings (issue 17, item 6)" if setup.suffix else ""
    return Outcome(
        name="rebalance_storm" + setup.suffix,
        title=f"Rebalance storm (issue 6, item 3){production}",
        passed=not failures,
        figures=figures,
        notes=failures,
        method=METHOD.format(settings=setup.text) + (HYBRID_CHECKS if setup.hybrid else ""),
        headline=(
            f"{storm.joins} joins, {storm.stops} graceful leaves, {storm.kills} kill -9 in "
            f"{storm_s:.0f} s: lost {figures.get('lost (in replay, not read)', 'n/a')}, "
            f"duplicated {figures.get('duplicated (copies beyond the first)', 'n/a')}, "
            f"changed {figures.get('changed (same action_id, other content)', 'n/a')}"
        ),
    )


METHOD = """
- Workers: `exactly_once`, with {settings}.
- Input: `shop_events`; half waits in the input topics when the first two workers start,
  the
  other half and then the sentinels (one consent per partition past the last deadline) are
  fed at an even pace over the first 80 % of the storm.
- The storm (seeded): every 3-6 s, with 2 workers running one joins (70 %) or one leaves as
  another joins (30 %); with 3 running one leaves; a leave is a graceful stop (SIGTERM, not
  waited for) or `kill -9`, half and half. Workers use four slots with their own data dirs,
  so a killed slot's next worker starts on dirty local state. After the storm, two workers
  stay and run until the group's committed input offsets reach the topics' end.
- The actions, read `read_committed` from the beginning, must equal `suppressor replay` of
  the input by `action_id` and content (lost, duplicated, changed, extra all 0); no worker
  may exit on its own; every graceful stop (during the storm and at the end) must exit 0.
- *Longest pause*: sampled every 0.5 s from the storm's start, the longest spell in which
  a partition number had input waiting and the group's committed offsets on it did not
  move (committed offsets trail processing by up to a commit interval).
"""
