"""Shared by the crash, broker-restart, rebalance-storm and burst scenarios: a synthetic
stream and its replay, paced feeding, consumer-group lag, RSS sampling, and the comparison
of the actions read ``read_committed`` with replay's (lost, duplicated, changed, extra).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaTimeoutError

from faults.harness import Context
from suppressor.adapters.feed import producer, route_by_type
from tests.integration.worker_helpers import (
    TEST_POLICY,
    Deployment,
    WorkerProcess,
    last_ts,
    replay_actions,
    rfc3339,
    sentinel_users,
    shop_events,
    write_catalog,
    write_lines,
)

POLICY = ", ".join(f"`{line}`" for line in TEST_POLICY.splitlines() if line.strip())
"""The tests' policy the scenarios' workers run with, for the methods' text."""


# --- the settings a scenario runs with ------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """The settings of a scenario's deployment: the tests' (``TESTS``) or production's
    (``PRODUCTION``); a scenario run with both is two scenario names (``crash``,
    ``crash_production``)."""

    suffix: str
    """Appended to the scenario's name: ``""`` or ``"_production"``."""
    partitions: int
    policy_text: str
    settings: tuple[tuple[str, str], ...]
    """``SUPPRESSOR_*`` settings beyond the Deployment's (lower-case names, as its extra)."""
    text: str
    """The settings in words, for a method's text."""

    def deployment(self, ctx: Context, name: str, **settings: str) -> Deployment:
        return ctx.deployment(
            name,
            partitions=self.partitions,
            policy_text=self.policy_text,
            extra={**dict(self.settings), **settings},
        )

    @property
    def hybrid(self) -> bool:
        return 'clock = "event"' not in self.policy_text


TESTS = Setup(
    suffix="",
    partitions=3,
    policy_text=TEST_POLICY,
    settings=(),
    text=f"the tests' settings: policy {POLICY}; 3 partitions; no standby replica; commit "
    "and tick interval 0.5 s; session timeout 6 s",
)
PRODUCTION = Setup(
    suffix="_production",
    partitions=8,
    policy_text='clock = "hybrid"\n',
    settings=(
        ("standby_replicas", "1"),
        ("commit_interval", "1.0"),
        ("tick_interval", "1.0"),
        ("session_timeout", "10"),
    ),
    text='production settings: policy `clock = "hybrid"`, the worker\'s default clock, every '
    "other policy value at its default (`idle_timeout` 30 s); 8 partitions, the default; 1 "
    "standby replica (`SUPPRESSOR_STANDBY_REPLICAS=1`); the worker's default commit and tick "
    "interval, 1 s, and session timeout, 10 s",
)

HYBRID_CHECKS = """
- **Why replay is still the reference under the hybrid clock** (suppressor/core/clock.py): a
  topic's event time moves on by the wall clock only from the moment its largest `ts`
  last rose, so a worker's stream time can run ahead of the events it has read by at
  most the longest wall-clock spell in which one of a partition's topics, in a process
  that holds the partition, got no newer event (a dead process's clock does not run; a
  new owner restores the saved stream time when it first reads the partition and counts
  from then). The input's events are seconds of event time apart, each stamped within
  ±60 s of its place in the feed (`shop_events`), so none is more than 2 min older than
  one sent before it; `grace` is 5 min. A decision can differ from replay's only if a
  deadline fires before an event with `ts` at or before it is applied, or an event comes
  late; both need stream time ahead of an unread event by more than `grace`, i.e. a
  partition's topic without a newer event for over 3 min (`grace` - 2 min) of wall clock
  while events were still on their way to it. The *longest pause* figure bounds such
  spells from above (it also counts the time no process held the partition). The events
  are stamped in 2024, far behind the wall clock, so another partition's watermark never
  counts as *fresh* (`Pipeline._fresh`) and always holds stream time back, as with the
  event clock; and replay's `--until`, two days past the last event, lies far beyond
  anything the wall clock adds in a run of minutes. So the actions must still equal
  replay's exactly; as a cross-check, no event may have been counted late
  (`suppressor_late_events_total` of the workers running at the end; the counts of
  earlier processes die with them).
"""
"""The method text's paragraph on checks under the hybrid clock (the production setup)."""
DEADLINES_PASSED = timedelta(days=2)
"""replay's --until and the sentinels' ts: past every basket deadline of the input."""


# --- the input and what replay makes of it -----------------------------------------------


@dataclass
class Stream:
    lines: list[bytes]
    path: Path
    catalog: Path
    until: str
    expected: dict[str, dict[str, Any]]
    replay_s: float


def synthetic_stream(
    ctx: Context,
    deployment: Deployment,
    *,
    events: int,
    users: int,
    seed: int,
    replay: bool = True,
) -> Stream:
    """``events`` shop events (``shop_events``), the catalog, and replay's actions."""
    workdir = deployment.workdir
    catalog = write_catalog(workdir / "catalog.jsonl")
    path = write_lines(workdir / "events.jsonl", shop_events(users, events, seed=seed))
    until = rfc3339(last_ts(path) + DEADLINES_PASSED)
    started = time.monotonic()
    expected = (
        replay_actions(path, catalog, deployment.policy_path, until, workdir) if replay else {}
    )
    replay_s = time.monotonic() - started
    ctx.log(f"{events:,} events, replay: {len(expected):,} actions in {replay_s:.0f}s")
    lines = path.read_bytes().splitlines()
    return Stream(lines, path, catalog, until, expected, replay_s)


def sentinel_lines(deployment: Deployment, until: str) -> list[bytes]:
    """``Deployment.feed_sentinels`` as lines, to send after the events on one producer."""
    return [
        json.dumps(
            {"event_id": f"sentinel-{user}", "type": "consent", "user_id": user, "ts": until}
        ).encode()
        for user in sentinel_users(deployment.topology)
    ]


# --- feeding --------------------------------------------------------------------------------


class Feeder:
    """Sends event lines to their input topics (keyed by user, as ``suppressor.adapters.feed``
    does) at a
    given rate, in this thread or a background one; the JSON is parsed before the clock
    starts so a high rate is not limited by parsing."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.routes = route_by_type(deployment.topology.inputs)
        self.sent = 0
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def _prepared(self, lines: Sequence[bytes]) -> list[tuple[str, bytes, bytes]]:
        prepared = []
        for line in lines:
            event = json.loads(line)
            prepared.append((self.routes[event["type"]], str(event["user_id"]).encode(), line))
        return prepared

    def send(self, lines: Sequence[bytes], rate: float | None = None) -> float:
        """Send ``lines`` (at most ``rate`` per second); the seconds it took."""
        prepared = self._prepared(lines)
        kafka = producer(self.deployment.bootstrap, self.deployment.client_config)
        started = time.monotonic()
        try:
            for number, (topic, key, value) in enumerate(prepared):
                kafka.send(topic, key=key, value=value)
                self.sent += 1
                if rate and number % 50 == 0:
                    ahead = started + number / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
            kafka.flush()
        finally:
            kafka.close()
        return time.monotonic() - started

    def blast(self, lines: Sequence[bytes], workdir: Path) -> float:
        """Send ``lines`` as fast as the machine allows: one ``kcat`` (librdkafka, C) per input
        topic in parallel, keyed by user and partitioned like the Java client (murmur2) as
        the Python producer does; the seconds from the first send to the last ack."""
        kcat = shutil.which("kcat")
        if kcat is None:  # `make tools` installs it
            return self.send(lines)
        by_topic: dict[str, list[bytes]] = {}
        for topic, key, value in self._prepared(lines):
            by_topic.setdefault(topic, []).append(key + b"\t" + value)
        files = []
        for number, (topic, records) in enumerate(sorted(by_topic.items())):
            path = workdir / f"blast-{number}.tsv"
            path.write_bytes(b"\n".join(records) + b"\n")
            files.append((topic, path))
        started = time.monotonic()
        processes = [
            subprocess.Popen(
                [kcat, "-P", "-b", self.deployment.bootstrap, "-t", topic, "-K", "\t",
                 "-X", "topic.partitioner=murmur2_random", "-X", "linger.ms=20", "-l", str(path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for topic, path in files
        ]  # fmt: skip
        for process in processes:
            _, error = process.communicate(timeout=300)
            if process.returncode != 0:
                raise RuntimeError(f"kcat failed: {error.decode(errors='replace')[-500:]}")
        self.sent += len(lines)
        return time.monotonic() - started

    def start(self, lines: Sequence[bytes], rate: float | None = None) -> Feeder:
        def work() -> None:
            try:
                self.send(lines, rate)
            except BaseException as error:  # reported by join()
                self.error = error

        self._thread = threading.Thread(target=work, name="feeder", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout_s: float = 600) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.error is not None:
            raise self.error


# --- lag ------------------------------------------------------------------------------------


class Lag:
    """End offsets of the input topics minus the worker group's committed offsets."""

    def __init__(self, deployment: Deployment, topics: Iterable[str] | None = None) -> None:
        self.group = deployment.settings.app_id
        config = dict(deployment.client_config)
        self.admin = KafkaAdminClient(bootstrap_servers=deployment.bootstrap, **config)
        self.consumer = KafkaConsumer(bootstrap_servers=deployment.bootstrap, **config)
        names = tuple(topics or deployment.topology.inputs)
        self.partitions = [
            TopicPartition(topic, p)
            for topic in names
            for p in range(deployment.partitions)  # the Deployment made them all
        ]

    def end(self) -> int:
        return sum(self.end_offsets().values())

    def end_offsets(self) -> dict[TopicPartition, int]:
        return dict(self.consumer.end_offsets(self.partitions))

    def committed(self) -> int:
        offsets = self.committed_offsets()
        return -1 if offsets is None else sum(offsets.values())

    def committed_offsets(self) -> dict[TopicPartition, int] | None:
        """The group's committed offset of each input partition (0: none yet); None while
        unknown (no group yet, or its coordinator is moving)."""
        try:
            found = self.admin.list_group_offsets({self.group: None}).get(self.group, {})
        except Exception:
            return None
        wanted = set(self.partitions)
        return {
            tp: max(meta.offset, 0) if (meta := found.get(tp)) is not None else 0 for tp in wanted
        }

    def lag(self) -> int:
        """-1 while unknown: no committed offsets yet, or this reader's own client timed out
        asking for the end offsets (it did once, just after a broker restart, while the
        worker was committing again); a lag that stays unknown counts as a stall."""
        committed = self.committed()
        if committed < 0:
            return -1
        try:
            return self.end() - committed
        except KafkaTimeoutError:
            return -1

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()


class StallWatch:
    """The longest wall-clock spell in which a partition number had input waiting and the
    group's committed offsets on it did not move, sampled every ``interval_s`` in a thread
    of its own (its own clients). Committed offsets trail processing by up to a commit
    interval, so this bounds a partition's pause in processing from above (give or take
    the sampling interval)."""

    def __init__(self, deployment: Deployment, interval_s: float = 0.5) -> None:
        self.deployment = deployment
        self.interval_s = interval_s
        self.longest = 0.0
        self.longest_partition: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-watch", daemon=True)

    def start(self) -> StallWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        lag = Lag(self.deployment)
        moved: dict[int, tuple[int, float]] = {}  # partition -> (committed, since)
        try:
            while not self._stop.wait(self.interval_s):
                committed = lag.committed_offsets()
                try:
                    ends = lag.end_offsets()
                except KafkaTimeoutError:
                    continue
                if committed is None:
                    continue
                now = time.monotonic()
                for partition in range(self.deployment.partitions):
                    done = sum(o for tp, o in committed.items() if tp.partition == partition)
                    end = sum(o for tp, o in ends.items() if tp.partition == partition)
                    last, since = moved.get(partition, (-1, now))
                    if done != last or done >= end:
                        moved[partition] = (done, now)
                    elif now - since > self.longest:
                        self.longest, self.longest_partition = now - since, partition
        finally:
            lag.close()


def wait_caught_up(
    lag: Lag,
    workers: Sequence[WorkerProcess],
    timeout_s: float,
    check_alive: bool = True,
    stall_s: float = 120.0,
) -> float | None:
    """Seconds until the group's committed offsets reach the input topics' end (None: not
    within ``timeout_s``, or no progress at all for ``stall_s``)."""
    started = last_move = time.monotonic()
    last = None
    while time.monotonic() - started < timeout_s:
        if check_alive:
            for worker in workers:
                worker.assert_alive()
        behind = lag.lag()
        if behind == 0:
            return time.monotonic() - started
        if behind != last:
            last, last_move = behind, time.monotonic()
        elif time.monotonic() - last_move > stall_s:
            return None
        time.sleep(0.5)
    return None


# --- the worker -----------------------------------------------------------------------------


def processed(worker: WorkerProcess) -> int | None:
    health = worker.health()
    return None if health is None else int(health.get("records_processed", 0))


def late_events(worker: WorkerProcess) -> int | None:
    """The worker's ``suppressor_late_events_total``; None when /metrics does not answer."""
    try:
        return int(worker.metric("suppressor_late_events_total"))
    except OSError:
        return None


@dataclass
class Restart:
    """Seconds from the (re)start of a worker process until it answered /health, said ok,
    and had processed a record."""

    answered_s: float | None = None
    healthy_s: float | None = None
    processing_s: float | None = None


def time_restart(worker: WorkerProcess, timeout_s: float = 180, processing: bool = True) -> Restart:
    """Call right after ``worker.start()``; with ``processing``, also waits for a record."""
    started = time.monotonic()
    result = Restart()
    while time.monotonic() - started < timeout_s:
        worker.assert_alive()
        health = worker.health()
        now = time.monotonic() - started
        if health is not None:
            result.answered_s = result.answered_s or now
            if health.get("status") == "ok" and result.healthy_s is None:
                result.healthy_s = now
            if health.get("records_processed", 0) > 0 and result.processing_s is None:
                result.processing_s = now
        if result.healthy_s is not None and (result.processing_s is not None or not processing):
            break
        time.sleep(0.1)
    return result


def vm_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """VmRSS of one process every ``interval_s``, in a background thread, with a phase label."""

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.phase = "start"
        self.samples: list[tuple[float, str, int]] = []  # (monotonic, phase, kB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = vm_rss_kb(self.pid)
            if rss is not None:
                self.samples.append((time.monotonic(), self.phase, rss))
            self._stop.wait(self.interval_s)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def of(self, *phases: str) -> list[int]:
        return [kb for _, phase, kb in self.samples if phase in phases]


def stop_or_kill(worker: WorkerProcess, timeout_s: float = 60.0) -> int | None:
    """A graceful stop (SIGTERM, after SIGCONT in case it is stopped) and its exit status;
    None when it did not finish within ``timeout_s`` and the worker was killed instead."""
    assert worker.process is not None
    worker.process.send_signal(signal.SIGCONT)
    try:
        return worker.stop(timeout_s)
    except subprocess.TimeoutExpired:
        worker.kill()
        return None


ERROR_MARKS = (
    "ERROR",
    "CRITICAL",
    "Traceback",
    "Error:",
    '"level": "error"',
    '"level": "critical"',
)
"""A log line with one of these is an error line (plain text, or the worker's JSON lines)."""


def log_excerpt(worker: WorkerProcess, limit: int = 12) -> str:
    """The worker log's error lines (tracebacks, ERROR, CRITICAL), the last ``limit``."""
    lines = worker.log_text().splitlines() if worker.log_path.exists() else []
    wanted = [line for line in lines if any(mark in line for mark in ERROR_MARKS)]
    return "\n".join(wanted[-limit:])


# --- comparison with replay -------------------------------------------------------------------


@dataclass
class Comparison:
    """The actions read (``read_committed``) against replay's, by ``action_id``."""

    expected: int
    read: int
    distinct: int
    lost: list[str] = field(default_factory=list)
    """In replay, never read."""
    extra: list[str] = field(default_factory=list)
    """Read, not in replay."""
    duplicated: int = 0
    """Copies read beyond the first of an action_id."""
    duplicated_ids: int = 0
    changed: list[str] = field(default_factory=list)
    """action_ids of which a copy differs in content from replay's action."""

    @property
    def exact(self) -> bool:
        return not (self.lost or self.extra or self.duplicated or self.changed)

    @property
    def same_ids_and_content(self) -> bool:
        """At-least-once: duplicates allowed, but only of replay's actions, unchanged."""
        return not (self.lost or self.extra or self.changed)

    def figures(self, prefix: str = "") -> dict[str, Any]:
        return {
            f"{prefix}actions expected (replay)": self.expected,
            f"{prefix}actions read (read_committed)": self.read,
            f"{prefix}lost (in replay, not read)": len(self.lost),
            f"{prefix}duplicated (copies beyond the first)": self.duplicated,
            f"{prefix}changed (same action_id, other content)": len(self.changed),
            f"{prefix}extra (action_id not in replay)": len(self.extra),
        }

    def describe(self) -> str:
        parts = [
            f"{len(self.lost)} lost",
            f"{self.duplicated} duplicated copies ({self.duplicated_ids} action_ids)",
            f"{len(self.changed)} changed",
            f"{len(self.extra)} extra",
        ]
        samples = [f"lost e.g. {self.lost[:3]}" if self.lost else ""]
        samples.append(f"extra e.g. {self.extra[:3]}" if self.extra else "")
        samples.append(f"changed e.g. {self.changed[:3]}" if self.changed else "")
        return ", ".join(parts) + "".join(f"; {s}" for s in samples if s)


def compare(expected: dict[str, dict[str, Any]], actions: Sequence[dict[str, Any]]) -> Comparison:
    counts = Counter(a["action_id"] for a in actions)
    changed = sorted(
        {a["action_id"] for a in actions if a["action_id"] in expected}
        & {a["action_id"] for a in actions if a != expected.get(a["action_id"])}
    )
    return Comparison(
        expected=len(expected),
        read=len(actions),
        distinct=len(counts),
        lost=sorted(expected.keys() - counts.keys()),
        extra=sorted(counts.keys() - expected.keys()),
        duplicated=sum(n - 1 for n in counts.values()),
        duplicated_ids=sum(1 for n in counts.values() if n > 1),
        changed=changed,
    )


def read_actions(
    deployment: Deployment, expected: int, timeout_s: float, settle_s: float = 5.0
) -> list[dict[str, Any]]:
    """The actions topic, read until it holds ``expected`` distinct action ids and has been
    quiet for ``settle_s`` (or ``timeout_s`` is up). Distinct, not records: at least once,
    the copies of early actions would otherwise reach the count while the last deadlines
    (fired when the sentinels' watermarks arrive, after the inputs are committed) are still
    on their way, and those would count as lost."""
    deadline = time.monotonic() + timeout_s
    at_least = expected
    while True:
        left = max(1.0, deadline - time.monotonic())
        actions = deployment.actions(at_least=at_least, timeout_s=left, settle_s=settle_s)
        distinct = len({action["action_id"] for action in actions})
        if distinct >= expected or time.monotonic() >= deadline:
            return actions
        at_least = len(actions) + expected - distinct


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def summary(values: Iterable[float | None]) -> str:
    """min / median / max of the values that are there (``n/a`` when none)."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return "n/a"
    middle = known[len(known) // 2]
    return f"{known[0]:.1f} / {middle:.1f} / {known[-1]:.1f}"


def chunks(lines: Sequence[bytes], *sizes: int) -> Iterator[Sequence[bytes]]:
    """Consecutive slices of ``lines`` of the given sizes, then the rest."""
    start = 0
    for size in sizes:
        yield lines[start : start + size]
        start += size
    yield lines[start:]


def write_evidence(
    deployment: Deployment,
    comparison: Comparison,
    expected: dict[str, dict[str, Any]],
    events: Path,
) -> Path:
    """When the actions differ from replay: what a person investigating needs, in
    ``evidence.json`` beside the workers' logs. For every user with a lost, extra or
    duplicated action: the user's partition, input events, replay's actions, the actions
    read (partition, offset), the decisions, and the user's changelog records read both
    ``read_committed`` and not (a record only in the second was aborted), each state
    decoded."""
    from suppressor.core.codec import decode_state  # the suite's only use of the core codec

    read = deployment.read(deployment.topology.actions, settle_s=2.0, timeout_s=60)
    counts = Counter(r.json()["action_id"] for r in read)
    users = {expected[i]["user_id"] for i in comparison.lost}
    users |= {
        a["user_id"]
        for a in (r.json() for r in read)
        if a["action_id"] in comparison.extra or counts[a["action_id"]] > 1
    }
    topology = deployment.topology
    keys = {user.encode() for user in users}

    def records(topic: str, committed: bool = True) -> list[dict[str, Any]]:
        found = []
        for record in deployment.read(topic, settle_s=2.0, timeout_s=60, committed_only=committed):
            if record.key not in keys:
                continue
            entry: dict[str, Any] = {"partition": record.partition, "offset": record.offset}
            if topic.endswith("-changelog"):
                if record.value is None:
                    entry["state"] = None
                else:
                    state, origins = decode_state(record.value)
                    entry["state"] = dataclasses.asdict(state)
                    entry["origins"] = origins
            else:
                entry["value"] = record.json()
            entry["user"] = record.key.decode() if record.key else None
            found.append(entry)
        return found

    changelog = topology.changelog("users")
    committed = records(changelog)
    seen = {(r["partition"], r["offset"]) for r in committed}
    aborted = [r for r in records(changelog, False) if (r["partition"], r["offset"]) not in seen]
    parsed = (json.loads(line) for line in events.read_bytes().splitlines() if line.strip())
    inputs = [event for event in parsed if event.get("user_id") in users]
    decisions = records(topology.decisions)
    evidence: dict[str, Any] = {}
    for user in sorted(users):
        evidence[user] = {
            "partition": topology.partition_for(user),
            "events": [e for e in inputs if e.get("user_id") == user],
            "replay": [a for a in expected.values() if a["user_id"] == user],
            "lost": [i for i in comparison.lost if expected[i]["user_id"] == user],
            "actions": [
                {"partition": r.partition, "offset": r.offset, **r.json()}
                for r in read
                if r.key == user.encode()
            ],
            "decisions": [d for d in decisions if d["user"] == user],
            "changelog": [r for r in committed if r["user"] == user],
            "changelog_aborted": [r for r in aborted if r["user"] == user],
        }
    path = deployment.workdir / "evidence.json"
    path.write_text(json.dumps(evidence, indent=1, default=str))
    return path
