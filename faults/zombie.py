"""Zombie worker (issue 17, item 6): a worker paused past its session comes back fenced.

Two workers share a live synthetic shop stream under ``exactly_once``. Worker A gets
SIGSTOP (a long GC pause, a frozen VM, a stopped container) and stays stopped beyond the
session timeout, until the group has given A's partitions to B and B has committed
events on them; then SIGCONT. A wakes up in the middle of whatever it was doing, with
records fetched before the pause still to process and a transaction open: its late sends
use transactional ids that B has since initialised with a newer epoch, so the broker
must refuse (fence) them, and nothing A writes may become visible to a ``read_committed``
reader. After the feed, the actions read ``read_committed`` must equal
``suppressor replay`` of the input: 0 duplicated, 0 lost, 0 changed, 0 extra.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any

from kafka.admin import KafkaAdminClient

from faults.harness import Context, Outcome
from faults.hostile import read_everything
from faults.streaming import (
    POLICY,
    Feeder,
    Lag,
    StallWatch,
    compare,
    log_excerpt,
    processed,
    read_actions,
    sentinel_lines,
    stop_or_kill,
    synthetic_stream,
    wait_caught_up,
)
from suppressor.adapters.feed import Record
from tests.integration.worker_helpers import Deployment, WorkerProcess

PARTITIONS = 4
"""Two each."""
FENCING = re.compile(r"fenc|ProducerEpoch|producer epoch|INVALID_PRODUCER", re.I)
"""A log line about a fenced producer (aiokafka: ProducerFenced, InvalidProducerEpoch)."""


def owned(worker: WorkerProcess) -> set[int]:
    """The partitions a worker has processed records (events or ticks) of since they were
    last assigned to it (``/health`` ``partitions``)."""
    health = worker.health() or {}
    return set(health.get("partitions") or ())


def wait_split(a: WorkerProcess, b: WorkerProcess, partitions: int, timeout_s: float) -> bool:
    """Until A and B each own some partitions and together all of them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        mine, theirs = owned(a), owned(b)
        if mine and theirs and not mine & theirs and len(mine | theirs) == partitions:
            return True
        time.sleep(0.5)
    return False


def committed_by_partition(lag: Lag) -> dict[int, int] | None:
    offsets = lag.committed_offsets()
    if offsets is None:
        return None
    result: Counter[int] = Counter()
    for tp, offset in offsets.items():
        result[tp.partition] += offset
    return dict(result)


def wait_takeover(
    lag: Lag, b: WorkerProcess, taken: set[int], before: dict[int, int], timeout_s: float
) -> bool:
    """Until B owns ``taken`` and the group's committed offsets moved on every one of them
    (B processed and committed events there)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        b.assert_alive()
        now = committed_by_partition(lag)
        if (
            taken <= owned(b)
            and now is not None
            and all(now.get(p, 0) > before.get(p, 0) for p in taken)
        ):
            return True
        time.sleep(0.5)
    return False


def group_members(deployment: Deployment) -> int | None:
    """Members of the worker group, as the broker's coordinator sees them."""
    admin = KafkaAdminClient(bootstrap_servers=deployment.bootstrap, **deployment.client_config)
    try:
        group = deployment.settings.app_id
        described = admin.describe_groups([group])
    except Exception:
        return None
    finally:
        admin.close()
    found = described.get(group) if isinstance(described, dict) else None
    if found is None and isinstance(described, list) and described:
        found = described[0]
    members = found.get("members") if isinstance(found, dict) else None
    return None if members is None else len(members)


@dataclass
class Fate:
    """What became of A after SIGCONT."""

    exited: int | None = None
    exited_after_s: float | None = None
    rejoined_after_s: float | None = None
    hung: str = ""
    """When it did neither: what its pages and the group said, and its threads' stacks."""

    def describe(self) -> str:
        if self.exited is not None:
            after = f"{self.exited_after_s:.1f} s after SIGCONT"
            return f"exited on its own with status {self.exited} {after}"
        if self.rejoined_after_s is not None:
            return f"rejoined the group {self.rejoined_after_s:.1f} s after SIGCONT"
        return "neither rejoined nor exited (hung; its threads dumped, then it was ended)"


def watch_zombie(
    deployment: Deployment, a: WorkerProcess, b: WorkerProcess, timeout_s: float
) -> Fate:
    """After SIGCONT: until A exits, or is a member of the group again (2 members) with
    partitions of its own and ``/health`` ok."""
    started = time.monotonic()
    fate = Fate()
    while time.monotonic() - started < timeout_s:
        assert a.process is not None
        code = a.process.poll()
        if code is not None:
            fate.exited, fate.exited_after_s = code, time.monotonic() - started
            return fate
        health = a.health() or {}
        mine, theirs = owned(a), owned(b)
        if (
            health.get("status") == "ok"
            and mine
            and not mine & theirs
            and group_members(deployment) == 2
        ):
            fate.rejoined_after_s = time.monotonic() - started
            return fate
        time.sleep(0.5)
    return fate


def page(worker: WorkerProcess, path: str) -> str:
    """HTTP status of one of the worker's pages, or why there is none."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.web_port}{path}", timeout=2):
            return "200"
    except urllib.error.HTTPError as error:
        return str(error.code)
    except OSError as error:
        return f"no answer ({type(error).__name__})"


def dump_threads(worker: WorkerProcess) -> str:
    """SIGABRT to a worker started with PYTHONFAULTHANDLER=1: Python's faulthandler writes
    every thread's stack to its log before the process dies; the dump's first lines."""
    assert worker.process is not None
    before = len(worker.log_text())
    worker.process.send_signal(signal.SIGABRT)
    try:
        worker.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
    dump = worker.log_text()[before:]
    start = dump.find("Thread 0x")
    return dump[start:] if start >= 0 else dump[-3000:]


def diagnose_hang(deployment: Deployment, a: WorkerProcess) -> str:
    members = group_members(deployment)
    stacks = dump_threads(a)
    return (
        f"/health {page(a, '/health')}, /health/live {page(a, '/health/live')}, group "
        f"members {members}; its threads (faulthandler, SIGABRT):\n```\n{stacks[:4000]}\n```"
    )


def fencing_lines(worker: WorkerProcess) -> list[str]:
    return [line for line in worker.log_text().splitlines() if FENCING.search(line)]


def _action_id(record: Record) -> str:
    return str(record.json()["action_id"])


def run(ctx: Context) -> Outcome:
    events = ctx.pick(small=8_000, full=30_000)
    feed_s = ctx.pick(small=75.0, full=150.0)
    deployment = ctx.deployment("zombie", partitions=PARTITIONS)
    session_s = deployment.settings.session_timeout
    stream = synthetic_stream(ctx, deployment, events=events, users=events // 10, seed=51)
    deployment.feed_catalog(stream.catalog)
    lines = [*stream.lines, *sentinel_lines(deployment, stream.until)]
    feeder = Feeder(deployment)
    lag = Lag(deployment)
    watch = StallWatch(deployment)
    a = WorkerProcess(deployment, "a", PYTHONFAULTHANDLER="1")  # see dump_threads
    b = WorkerProcess(deployment, "b")
    figures: dict[str, Any] = {"events (fed live)": events, "session timeout s": session_s}
    failures: list[str] = []
    fate = Fate()
    fencing: list[str] = []
    comparison = compare(stream.expected, [])
    codes: dict[str, int | None] = {}
    try:
        a.start().wait_healthy()
        b.start().wait_healthy()
        if not wait_split(a, b, PARTITIONS, timeout_s=120):
            raise AssertionError(f"A and B did not share the partitions: {owned(a)} {owned(b)}")
        taken = owned(a)
        figures["A's partitions before the pause"] = ", ".join(map(str, sorted(taken)))
        watch.start()
        feeder.start(lines, rate=len(lines) / feed_s)
        while (processed(a) or 0) < 500:  # A is busy: sends of a transaction in flight
            a.assert_alive()
            time.sleep(0.2)
        before = committed_by_partition(lag) or {}
        assert a.process is not None
        a.process.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        processed_before = processed(b)
        ctx.log(f"A stopped (SIGSTOP), its partitions {sorted(taken)}")
        took_over = wait_takeover(lag, b, taken, before, timeout_s=ctx.pick(small=120, full=180))
        takeover_s = time.monotonic() - stopped
        figures["SIGSTOP until B committed events on A's partitions s"] = (
            round(takeover_s, 1) if took_over else "never"
        )
        if not took_over:
            failures.append(f"B did not take A's partitions over within {takeover_s:.0f} s")
        time.sleep(1.0)
        processed_after = processed(b)
        figures["records B processed while A was stopped"] = (
            "n/a"  # /health did not answer 200
            if processed_before is None or processed_after is None
            else processed_after - processed_before
        )
        a.process.send_signal(signal.SIGCONT)
        figures["A stopped for s"] = round(time.monotonic() - stopped, 1)
        ctx.log(f"A continued (SIGCONT) after {time.monotonic() - stopped:.1f} s")
        zombie_s = ctx.pick(small=60, full=90)
        fate = watch_zombie(deployment, a, b, timeout_s=zombie_s)
        ctx.log(f"A {fate.describe()}")
        figures["A after SIGCONT"] = fate.describe()
        if fate.exited is None and fate.rejoined_after_s is None:
            fate.hung = diagnose_hang(deployment, a)
            failures.append(
                f"A neither rejoined the group nor exited within {zombie_s} s of SIGCONT: "
                f"{fate.hung}"
            )
        feeder.join()
        workers = [a, b] if fate.rejoined_after_s is not None else [b]
        caught = wait_caught_up(lag, workers, ctx.pick(small=300, full=600))
        figures["after the feed: s until caught up"] = "n/a" if caught is None else round(caught, 1)
        if caught is None:
            failures.append("the group did not catch up with the input")
        comparison = compare(stream.expected, read_actions(deployment, len(stream.expected), 120))
        figures.update(comparison.figures())
        if not comparison.exact:
            failures.append(f"actions differ from replay: {comparison.describe()}")
        topic = deployment.topology.actions
        everything = read_everything(deployment.bootstrap, [topic], _action_id)[topic]
        figures["action records in aborted transactions (read_uncommitted - read_committed)"] = (
            len(everything) - comparison.read
        )
    finally:
        watch.stop()
        lag.close()
        for worker in (a, b):
            if worker.process is not None and worker.process.poll() is None:
                codes[worker.name] = stop_or_kill(worker)  # SIGCONT first: A may be stopped
            elif worker.process is not None:
                codes[worker.name] = EXITED_BEFORE  # see fate, or a crash of B
    fencing = fencing_lines(a)
    figures["fencing errors in A's log (lines)"] = len(fencing)
    figures["records A's log says it sent to the DLQ as internal_error (none visible)"] = (
        a.log_text().count("internal error on")
    )
    figures["partitions wiped on assignment (dirty local state), A / B"] = (
        f"{a.log_text().count('wiped')} / {b.log_text().count('wiped')}"
    )
    figures["longest pause of a partition with input waiting s (committed)"] = round(
        watch.longest, 1
    )
    figures["graceful stop at the end: A / B exit status"] = (
        f"{_status(codes.get('a'))} / {_status(codes.get('b'))}"
    )
    if codes.get("b") != 0:
        failures.append(
            f"B's graceful stop exited {codes.get('b')}: {log_excerpt(b) or b.log_tail(20)}"
        )
    if codes.get("a") not in (0, EXITED_BEFORE):
        failures.append(f"A's graceful stop at the end: {_status(codes.get('a'))}")
    notes = list(failures)
    if fate.exited not in (None, 0) and fencing:
        notes.append(
            f"A did not rejoin: once its sends after SIGCONT were fenced, the worker stopped "
            f"with exit status {fate.exited}; nothing it sent then became visible "
            "(read_committed). Its supervisor (systemd, Kubernetes) starts it again; Kafka "
            "Streams instead closes the migrated tasks and rejoins (TaskMigratedException)."
        )
    if fencing:
        notes.append(f"A's first fencing line: `{fencing[0][:300]}`")
    return Outcome(
        name="zombie",
        title="Zombie worker, SIGSTOP past the session timeout (issue 17, item 6)",
        passed=not failures,
        figures=figures,
        notes=notes,
        method=METHOD.format(events=events, partitions=PARTITIONS, session=session_s),
        headline=(
            f"A stopped {figures.get('A stopped for s', '?')} s (session {session_s:.0f} s), "
            f"{len(fencing)} fencing errors logged, A {fate.describe()}: "
            f"{comparison.duplicated} duplicated / {len(comparison.lost)} lost / "
            f"{len(comparison.changed)} changed / {len(comparison.extra)} extra"
        ),
    )


EXITED_BEFORE = -1000
"""In ``codes``: the worker had exited before the graceful stop at the end."""


def _status(code: int | None) -> str:
    if code == EXITED_BEFORE:
        return "exited before"
    return "killed (stop took over 60 s)" if code is None else str(code)


METHOD = f"""
- Input: `shop_events` ({{events:,}} events), fed live at an even pace over
  about a minute (small) or two and a half (full), then one consent per partition past the
  last deadline (the sentinels).
- Two workers A and B, `exactly_once`, policy {POLICY}, {{partitions}} partitions, session
  timeout {{session:.0f}} s (`SUPPRESSOR_SESSION_TIMEOUT`). Once each owns partitions and A has
  processed 500 records, A gets SIGSTOP, in the middle of the feed, so with a
  transaction open and fetched records waiting. It stays stopped until the group has
  given A's partitions to B and the group's committed input offsets moved on every one of
  them (B processed and committed events there), then 1 s more; then SIGCONT.
- After SIGCONT, A is watched: it *rejoined* when the group's coordinator lists 2
  members again and A owns partitions and says ok on `/health`, or it *exited*; if it
  does neither within a minute (90 s at full scale), the check fails, and what its
  `/health` pages and the group coordinator say is reported with a dump of its threads'
  stacks (it runs with `PYTHONFAULTHANDLER=1` and gets SIGABRT). The
  fencing errors are the lines of A's log naming a fenced producer or a stale producer
  epoch. The feed ends; once the group's committed offsets reach the input's end, the
  actions are read `read_committed` and compared by `action_id` with `suppressor replay`
  of the input: duplicated, lost, changed and extra must all be 0. The records of
  aborted transactions (A's open transaction at the pause, A's late sends, any others)
  are the action records read `read_uncommitted` minus those read `read_committed`.
- B must never exit on its own and must stop gracefully with status 0 at the end; so must
  A if it is still running.
"""
