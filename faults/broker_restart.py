"""Broker restart (issue 6, item 2): the broker goes away mid-stream and comes back.

One worker processes a backlog of synthetic shop events; at set points of its progress the
suite's broker is stopped (``deploy/local/kafka stop``: SIGTERM, a controlled shutdown),
left down for a while, and started again on the same data dir and port. The worker process
is never restarted: it must ride out the outage on its own, resume, and take the rest of the
stream (fed after each restart of the broker) to the same actions as ``suppressor replay``.
"""

from __future__ import annotations

import time
from typing import Any

from faults.harness import Context, Outcome
from faults.streaming import (
    POLICY,
    Feeder,
    Lag,
    compare,
    log_excerpt,
    processed,
    read_actions,
    sentinel_lines,
    summary,
    synthetic_stream,
    wait_caught_up,
)
from tests.integration.worker_helpers import WorkerProcess

RESUME_TIMEOUT_S = 180.0


def run(ctx: Context) -> Outcome:
    if ctx.broker is None:
        return Outcome("broker_restart", False, notes=["needs the suite's own broker (ctx.broker)"])
    broker = ctx.broker
    events = ctx.pick(small=8_000, full=40_000)
    outages: list[float] = ctx.pick(small=[5.0], full=[10.0, 30.0])
    points = ctx.pick(small=[0.3], full=[0.2, 0.5])
    deployment = ctx.deployment("broker")
    stream = synthetic_stream(ctx, deployment, events=events, users=events // 10, seed=21)
    backlog = int(len(stream.lines) * 0.8)
    # Some of the rest is fed after each restart: a worker that had taken the whole backlog
    # before an outage had nothing left to commit after it, and "committing again" never
    # came (the suite read that as a worker that did not resume).
    rest = stream.lines[backlog:]
    share = len(rest) // (len(outages) + 1)
    after_restart = [rest[i * share : (i + 1) * share] for i in range(len(outages))]
    last = rest[len(outages) * share :]
    deployment.feed_catalog(stream.catalog)
    feeder = Feeder(deployment)
    feeder.send(stream.lines[:backlog])
    worker = WorkerProcess(deployment, "survivor").start()
    lag = Lag(deployment)
    figures: dict[str, Any] = {
        "events (80 % before the worker starts, 20 % after the last broker restart)": events,
        "broker outages (s down)": ", ".join(f"{s:.0f}" for s in outages),
    }
    failures: list[str] = []
    stops: list[float] = []
    starts: list[float] = []
    resumed: list[float | None] = []
    committing: list[float | None] = []
    pid = None
    try:
        worker.wait_healthy()
        assert worker.process is not None
        pid = worker.process.pid
        for point, outage, fresh in zip(points, outages, after_restart, strict=True):
            while lag.committed() < point * len(stream.lines):
                worker.assert_alive()
                time.sleep(0.2)
            committed_before = lag.committed()
            ctx.log(f"stopping the broker at {committed_before:,} committed")
            began = time.monotonic()
            broker.stop()
            stops.append(time.monotonic() - began)
            time.sleep(outage)
            if worker.process.poll() is not None:
                failures.append(
                    f"the worker exited with {worker.process.returncode} while the broker was "
                    f"down:\n```\n{worker.log_tail(40)}\n```"
                )
                break
            records_down = processed(worker) or 0
            began = time.monotonic()
            broker.start()
            starts.append(time.monotonic() - began)
            up = time.monotonic()
            feeder.send(fresh)
            resumed_s = committed_s = None
            while time.monotonic() - up < RESUME_TIMEOUT_S:
                if worker.process.poll() is not None:
                    break
                if resumed_s is None and (processed(worker) or 0) > records_down:
                    resumed_s = time.monotonic() - up
                if committed_s is None and lag.committed() > committed_before:
                    committed_s = time.monotonic() - up
                if resumed_s is not None and committed_s is not None:
                    break
                time.sleep(0.2)
            resumed.append(resumed_s)
            committing.append(committed_s)
            ctx.log(f"broker back: worker processing after {resumed_s}s, committing {committed_s}s")
            if worker.process.poll() is not None:
                failures.append(
                    f"the worker exited with {worker.process.returncode} after the broker came "
                    f"back:\n```\n{worker.log_tail(40)}\n```"
                )
                break
            if resumed_s is None or committed_s is None:
                failures.append(
                    f"the worker did not resume within {RESUME_TIMEOUT_S:.0f} s of the broker's "
                    f"restart (processing: {resumed_s}, committing: {committed_s}); /health: "
                    f"{worker.health()}; log:\n```\n{worker.log_tail(40)}\n```"
                )
                break
        if not failures:
            feeder.send([*last, *sentinel_lines(deployment, stream.until)])
            caught_up = wait_caught_up(lag, [worker], ctx.pick(small=300, full=600))
            figures["after the last restart: s until caught up"] = caught_up or "n/a"
            if caught_up is None:
                failures.append(
                    f"the worker did not catch up; /health {worker.health()}; log:\n```\n"
                    f"{worker.log_tail(40)}\n```"
                )
            comparison = compare(
                stream.expected, read_actions(deployment, len(stream.expected), timeout_s=120)
            )
            figures.update(comparison.figures())
            if not comparison.exact:
                failures.append(f"actions differ from replay: {comparison.describe()}")
        same = worker.process.poll() is None and worker.process.pid == pid
        figures["worker process restarted by the suite"] = "no"
        figures["the same worker process alive at the end"] = same
        if not same:
            failures.append("the worker process did not survive")
    finally:
        lag.close()
        code = None
        if worker.process is not None and worker.process.poll() is None:
            code = worker.stop()
    figures["broker stop s (controlled shutdown)"] = summary(stops)
    figures["broker start s (until it answers metadata)"] = summary(starts)
    figures["broker up to worker processing again s (per outage)"] = ", ".join(
        "never" if s is None else f"{s:.1f}" for s in resumed
    )
    figures["broker up to worker committing again s (per outage)"] = ", ".join(
        "never" if s is None else f"{s:.1f}" for s in committing
    )
    errors = log_excerpt(worker)
    figures["error lines in the worker's log"] = len(errors.splitlines()) if errors else 0
    if code not in (0, None):
        failures.append(f"graceful stop exited {code}")
    return Outcome(
        name="broker_restart",
        title="Broker restart (issue 6, item 2)",
        passed=not failures,
        figures=figures,
        notes=failures,
        method=METHOD,
        headline=(
            f"{len(outages)} broker stop/start ({figures['broker outages (s down)']} s down), "
            f"worker not restarted: lost "
            f"{figures.get('lost (in replay, not read)', 'n/a')}, duplicated "
            f"{figures.get('duplicated (copies beyond the first)', 'n/a')}"
        ),
    )


METHOD = f"""
- Input: `shop_events`; 80 % of it waits in the input topics when the worker
  (`exactly_once`, policy {POLICY}) starts, so the outages hit it
  while it is catching up.
- When the group has committed a set share of the input (20 % and 50 % at full scale), the
  suite's broker is stopped with `deploy/local/kafka stop` (SIGTERM: controlled shutdown),
  kept down for the given seconds, and started again with `deploy/local/kafka start` on the
  same data dir and port. A share of the remaining 20 % is fed as soon as the broker
  answers (a worker that had taken the whole backlog before the outage would otherwise
  have nothing to commit). The worker is left alone: it must not exit, and must process
  records again (`records_processed` on `/health` grows) and commit again (the group's
  committed input offsets grow) on its own, within 180 s.
- After the last restart the rest of the 20 % and the sentinels (one consent per partition
  past the last deadline) are fed; once the group's offsets reach the topics' end the
  actions, read `read_committed`, must equal `suppressor replay` of the input by
  `action_id` and content (lost, duplicated, changed, extra all 0), the same worker
  process must still be running, and it must stop gracefully (exit 0).
"""
