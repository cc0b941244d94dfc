"""Hostile input (issue 6, item 5, and the privacy half of item 6).

At least 100,000 hostile records (``--scale full``; 3,000 at ``small``) drawn with
hypothesis strategies, interleaved with good shop events on all five input topics, into
one real worker. Checked: the worker never crashes; every bad record is in
``events.dlq`` exactly once, at its topic/partition/offset, with a code its kind allows;
every good event is processed (the actions equal ``suppressor replay`` of the good lines,
read ``read_committed``); far-future records move no partition's stream time (and a
basket armed at the end of the good stream does not fire early); far-past events are
applied as late events like replay applies them; and the personal fields the records
carry (e-mail, name, phone, address, IP, each with a recognisable marker) appear in none
of actions, decisions, conversions, the changelogs, the worker's log or ``/metrics``.

Generation: hypothesis strategies (``hypothesis.strategies``) drawn in a ``@given`` run
with a fixed ``@seed``, generate phase only (no shrinking, no example database), each
example a batch of up to 40 records collected into a list; no ``.example()``. The
oversized records (1 MB+) are built by plain code (hypothesis draws their size and
filler), as drawing megabytes through hypothesis would be slow for no gain.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from kafka import KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from faults.harness import Context, Outcome
from suppressor.adapters.feed import Record, consumer
from suppressor.wire.events import EVENT_TYPES
from tests.integration.worker_helpers import (
    REPO,
    Deployment,
    WorkerProcess,
    last_ts,
    replay_actions,
    rfc3339,
    shop_events,
    write_catalog,
    write_lines,
)

PRIVACY_FIGURE = "personal markers in actions, decisions, conversions, changelogs, log, /metrics"
T = TypeVar("T")
MARK = "zqxpii"
"""In every personal field the records carry; searched for case-insensitively."""
IP_PREFIX = "198.51.100."
"""TEST-NET-2: the personal IP addresses, searched for too."""
BIG_RECORD_LIMIT = 4 * 1024 * 1024
"""max.message.bytes of the input topics here, so that 1 MB+ records reach the worker (a
deployment whose producers may send them; the broker's default would refuse them at the
producer, and the worker would never see them)."""

POLICY = 'clock = "event"\nidle_timeout = "30s"\n'
"""Pure event time like replay; idle_timeout the product's default (30 s), not the 2 s of
tests/integration: the traffic squeezes two days of event time into a minute of feeding,
and with bad records in between an input topic's partition can go 2 s without a good event,
be left out of stream time as idle, and then read its next event hours of event time late
(a test artefact: 2 s of wall clock is 2 s of event time in a live shop)."""

CODES_OF: dict[str, frozenset[str]] = {
    "random_bytes": frozenset({"not_utf8", "not_json", "not_object", "missing_type"}),
    "not_utf8": frozenset({"not_utf8"}),
    "oversized": frozenset({"too_large"}),
    "deep_nesting": frozenset({"not_json", "too_large", "missing_type"}),
    "wrong_type": frozenset({"invalid_field"}),
    "wrong_type_ts": frozenset({"bad_timestamp"}),
    "unknown_type": frozenset({"unknown_type"}),
    "missing_field": frozenset({"missing_field"}),
    "missing_type": frozenset({"missing_type"}),
    "bad_timestamp": frozenset({"bad_timestamp"}),
    "far_future": frozenset({"future_timestamp"}),
    "not_object": frozenset({"not_object"}),
}
"""The dead-letter codes each kind of hostile record may get (SPEC section 3, README)."""


# --- personal fields ------------------------------------------------------------------


def personal_fields(tag: str) -> dict[str, str]:
    """The fields a careless producer adds; ``tag`` (``g12``/``b34``) says whose they are."""
    number = sum(map(ord, tag)) % 250 + 1
    return {
        "email": f"{MARK}.{tag}@example.invalid",
        "name": f"Zqxpii {tag.upper()} Doe",
        "phone": f"+31 6 {MARK.upper()} {tag}",
        "address": f"{tag} Zqxpii Lane, 3511 Utrecht",
        "ip": f"{IP_PREFIX}{number}",
    }


def marker_hits(data: bytes) -> bool:
    lowered = data.lower()
    return MARK.encode() in lowered or IP_PREFIX.encode() in lowered


# --- hypothesis strategies -------------------------------------------------------------

_ids = st.text(min_size=1, max_size=24)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_BASE_TS = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


@st.composite
def _good_event(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(EVENT_TYPES))
    seconds = draw(st.integers(0, 2 * 86400))
    event: dict[str, Any] = {
        "event_id": draw(_ids),
        "type": kind,
        "user_id": draw(_ids),
        "ts": rfc3339(_BASE_TS + timedelta(seconds=seconds)),
    }
    if kind == "browse":
        event.update(item_id=draw(_ids), page=draw(st.sampled_from(["product", "search"])))
    elif kind == "cart":
        event.update(action=draw(st.sampled_from(["add", "remove"])), item_id=draw(_ids))
        event["quantity"] = draw(st.integers(1, 5))
    elif kind == "purchase":
        event.update(order_id=draw(_ids), items=[{"item_id": draw(_ids), "quantity": 1}])
    elif kind == "review":
        event.update(item_id=draw(_ids), rating=draw(st.integers(1, 5)))
    elif kind == "consent":
        event.update(similar_item=draw(st.booleans()), max_actions_per_week=draw(st.integers(0, 9)))
    return event


_not_str = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=4), st.integers(), max_size=2)
)
_WRONG: dict[str, st.SearchStrategy[Any]] = {
    "event_id": _not_str | st.just("") | st.text(min_size=257, max_size=300),
    "user_id": _not_str | st.just("") | st.text(min_size=257, max_size=300),
    "item_id": _not_str | st.just(""),
    "order_id": _not_str | st.just(""),
    "page": _not_str.filter(lambda v: v is not None),
    "action": st.text(max_size=10).filter(lambda v: v not in ("add", "remove")) | _not_str,
    "quantity": st.integers(max_value=0)
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
    | st.none(),
    "rating": st.integers().filter(lambda v: not 1 <= v <= 5)
    | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.none(),
    "similar_item": st.integers() | st.text(max_size=5) | st.lists(st.booleans(), max_size=2),
    "max_actions_per_week": st.integers(max_value=-1) | st.text(max_size=5) | st.booleans(),
    "items": st.just([])
    | st.integers()
    | st.text(max_size=5)
    | st.none()
    | st.lists(st.integers(), min_size=1, max_size=3),
    "ts": _not_str,
}
_BAD_TS = st.sampled_from(
    [
        "2024-03-01T10:00:00",
        "2024-13-01T00:00:00Z",
        "2024-02-30T00:00:00Z",
        "2024-03-01T25:00:00Z",
        "yesterday",
        "1709280000",
        "",
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
        "+12024-03-01T00:00:00Z",
    ]
) | st.text(max_size=30)


def _encode(event: Any) -> bytes:
    return json.dumps(event).encode()


def _maybe_personal(draw: st.DrawFn, event: dict[str, Any]) -> dict[str, Any]:
    if draw(st.booleans()):
        tag = f"b{draw(st.integers(0, 10**9))}"
        return {**event, **personal_fields(tag)}
    return event


@st.composite
def hostile_record(draw: st.DrawFn, now: datetime) -> tuple[str, bytes]:
    """(kind, bytes) of one bad record; CODES_OF[kind] are the codes it may get."""
    kind = draw(
        st.sampled_from(
            [
                "random_bytes",
                "not_utf8",
                "deep_nesting",
                "wrong_type",
                "unknown_type",
                "missing_field",
                "bad_timestamp",
                "far_future",
                "not_object",
            ]
        )
    )
    event = _maybe_personal(draw, draw(_good_event()))
    if kind == "random_bytes":
        return kind, draw(st.binary(max_size=300))
    if kind == "not_utf8":
        raw = _encode(event)
        cut = raw.index(b'"user_id": "') + len(b'"user_id": "')
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80", b"\xf8\x88"]))
        return kind, raw[:cut] + junk + raw[cut:]
    if kind == "deep_nesting":
        depth = draw(st.integers(1_000, 12_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        nested = opener * depth + "1" + closer * depth
        if draw(st.booleans()):  # as a field of an otherwise good event
            text = _encode(event).decode()
            return kind, (text[:-1] + ', "extra": ' + nested + "}").encode()
        return kind, nested.encode()
    if kind == "wrong_type":
        name = draw(st.sampled_from([key for key in event if key in _WRONG and key != "type"]))
        event[name] = draw(_WRONG[name])
        return ("wrong_type_ts" if name == "ts" else kind), _encode(event)
    if kind == "unknown_type":
        event["type"] = draw(st.text(max_size=12).filter(lambda t: t not in EVENT_TYPES))
        return kind, _encode(event)
    if kind == "missing_field":
        required = {"event_id", "user_id", "ts", "type", "item_id", "order_id", "items", "rating"}
        required |= {"action"}
        name = draw(st.sampled_from(sorted(required & event.keys())))
        del event[name]
        return ("missing_type" if name == "type" else kind), _encode(event)
    if kind == "bad_timestamp":
        event["ts"] = draw(_BAD_TS)
        return kind, _encode(event)
    if kind == "far_future":
        ahead = draw(
            st.integers(2 * 3600, int((datetime(9999, 12, 31, tzinfo=UTC) - now).total_seconds()))
        )
        event["ts"] = rfc3339(now + timedelta(seconds=ahead))
        return kind, _encode(event)
    value = draw(st.lists(_json, max_size=3) | _scalars)  # not_object
    return kind, json.dumps(value).encode()


def draw_hostile(count: int, now: datetime, seed_value: int) -> list[tuple[str, bytes]]:
    """``count`` records from ``hostile_record``, reproducible for a seed (and hypothesis
    version): a ``@given`` run whose examples are batches, collected as they come."""
    out: list[tuple[str, bytes]] = []
    batch = st.lists(hostile_record(now), min_size=1, max_size=40)
    round_ = 0
    while len(out) < count:

        @seed(seed_value + round_)
        @settings(
            max_examples=max(10, (count - len(out)) // 15),
            phases=[Phase.generate],
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(batch)
        def collect(records: list[tuple[str, bytes]]) -> None:
            out.extend(records)

        collect()
        round_ += 1
    return out[:count]


def oversized_records(count: int, rng: random.Random) -> list[tuple[str, bytes]]:
    """1 MB+ records: a good-looking event with a huge field, or a huge binary blob."""
    records = []
    for number in range(count):
        size = rng.randint(1_050_000, 1_600_000)
        if number % 3 == 2:
            records.append(
                ("oversized", bytes(rng.getrandbits(8) for _ in range(64)) * (size // 64))
            )
            continue
        head = {
            "event_id": f"big-{number}",
            "type": "browse",
            "user_id": f"big-user-{number}",
            "item_id": "paper-1",
            "ts": "2024-03-01T10:00:00Z",
            **personal_fields(f"b-big{number}"),
        }
        filler = rng.choice("xé😀")
        text = (
            json.dumps(head)[:-1] + ', "note": "' + filler * (size // len(filler.encode())) + '"}'
        )
        records.append(("oversized", text.encode()))
    return records


# --- good traffic --------------------------------------------------------------------------


@dataclass
class GoodTraffic:
    lines: list[bytes]
    last_good: datetime
    canaries: list[str]
    far_past_users: list[str]
    personal: int


def good_traffic(
    deployment: Deployment, users: int, events: int, far_past: int, seed_value: int
) -> GoodTraffic:
    rng = random.Random(seed_value)
    shop = [json.loads(line) for line in shop_events(users=users, events=events, seed=seed_value)]
    personal = 0
    for number, event in enumerate(shop):
        if rng.random() < 0.3:
            event.update(personal_fields(f"g{number}"))
            personal += 1
    last = max(datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) for e in shop)
    lines = [json.dumps(e).encode() for e in shop]
    far_past_users = []
    for number in range(far_past):  # each its own user: late or not, order cannot matter
        moment = datetime(1, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 2000 * 365))
        user = f"ancient-{number}"
        far_past_users.append(user)
        event = {
            "event_id": f"past-{number}",
            "type": "purchase",
            "user_id": user,
            "order_id": f"o-past-{number}",
            "items": [{"item_id": rng.choice(["paper-1", "pen-2", "bruges"]), "quantity": 1}],
            "ts": _four_digit_year(moment),
            **personal_fields(f"g-past{number}"),
        }
        lines.insert(rng.randrange(len(lines) // 10, len(lines)), json.dumps(event).encode())
    canaries = _one_user_per_partition(deployment, "canary")
    for user in canaries:  # armed at the very end: a stream time pushed ahead fires them early
        lines.append(
            json.dumps(
                {
                    "event_id": f"{user}-add",
                    "type": "cart",
                    "action": "add",
                    "user_id": user,
                    "item_id": "pen-1",
                    "ts": rfc3339(last),
                }
            ).encode()
        )
    return GoodTraffic(lines, last, canaries, far_past_users, personal + far_past)


def _four_digit_year(moment: datetime) -> str:
    """RFC 3339 for any year (strftime's %Y gives '1' for year 1 here, not '0001')."""
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )


def replay_late(events: Path, catalog: Path, policy: Path, until: str) -> int:
    """The late events ``suppressor replay`` counts (its summary line) on the same input."""
    command = [
        sys.executable,
        "-m",
        "suppressor.entrypoints.cli",
        "replay",
        str(events),
        "--catalog",
    ]
    command += [str(catalog), "--policy", str(policy), "--until", until, "--actions", "/dev/null"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    found = re.search(r"late: (\d+)", done.stderr)
    return int(found.group(1)) if found else -1


def _one_user_per_partition(deployment: Deployment, stem: str) -> list[str]:
    found: dict[int, str] = {}
    number = 0
    while len(found) < deployment.topology.partitions:
        user = f"{stem}-{number}"
        found.setdefault(deployment.topology.partition_for(user), user)
        number += 1
    return [found[p] for p in sorted(found)]


# --- feeding -----------------------------------------------------------------------------


def raise_record_limit(bootstrap: str, topics: Iterable[str], limit: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        admin.alter_configs(
            [
                ConfigResource(
                    ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(limit)}
                )
                for topic in topics
            ]
        )
    finally:
        admin.close()


def feed_interleaved(
    deployment: Deployment,
    good: list[bytes],
    bad: list[tuple[str, bytes]],
    rng: random.Random,
    progress: Callable[[str], None],
) -> dict[tuple[str, int, int], str]:
    """Good lines keyed by user (every tenth by event id: repartitioned), bad records on all
    five input topics in between with odd keys; the bad records' positions -> kind."""
    inputs = deployment.topology.inputs
    routes = {"browse": 0, "cart": 1, "purchase": 2, "review": 3, "consent": 4, "forget": 4}
    kafka = KafkaProducer(
        bootstrap_servers=[deployment.bootstrap],
        acks="all",
        linger_ms=20,
        batch_size=256 * 1024,
        max_request_size=BIG_RECORD_LIMIT,
    )
    slots = sorted(rng.randrange(len(good) + 1) for _ in bad)
    futures = []
    next_bad = 0
    try:
        for number in range(len(good) + 1):
            while next_bad < len(bad) and slots[next_bad] == number:
                kind, raw = bad[next_bad]
                key = rng.choice(
                    [None, b"bad", bytes([rng.getrandbits(8) for _ in range(8)]), b"user-1"]
                )
                topic = inputs[next_bad % len(inputs)]
                futures.append((kafka.send(topic, key=key, value=raw), kind))
                next_bad += 1
            if number < len(good):
                event = json.loads(good[number])
                key = event["event_id"] if number % 10 == 9 else event["user_id"]
                kafka.send(inputs[routes[event["type"]]], key=key.encode(), value=good[number])
            if number and number % 5000 == 0:
                progress(f"sent {number:,} good and {next_bad:,} bad records")
        kafka.flush()
        positions: dict[tuple[str, int, int], str] = {}
        for future, kind in futures:
            meta = future.get(timeout=60)
            positions[(meta.topic, meta.partition, meta.offset)] = kind
    finally:
        kafka.close()
    return positions


# --- checks ------------------------------------------------------------------------------


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def read_everything(
    bootstrap: str,
    topics: list[str],
    keep: Callable[[Record], T],
    *,
    committed_only: bool = False,
    timeout_s: float = 900,
) -> dict[str, list[T]]:
    """``keep(record)`` of every record of ``topics`` up to their end offsets now (with
    ``committed_only=False`` aborted transactions' records too): one consumer, one pass, no
    settle time; ``keep`` lets a caller hold a digest instead of the value (the DLQ of the
    full scale is most of a gigabyte)."""
    kafka = consumer(bootstrap, committed_only=committed_only)
    out: dict[str, list[T]] = {topic: [] for topic in topics}
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in (kafka.partitions_for_topic(topic) or ())
        ]
        kafka.assign(partitions)
        kafka.seek_to_beginning()
        ends = {tp: end for tp, end in kafka.end_offsets(partitions).items() if end > 0}
        deadline = time.monotonic() + timeout_s
        while ends and time.monotonic() < deadline:
            for tp, batch in kafka.poll(timeout_ms=500).items():
                for m in batch:
                    record = Record(tp.topic, m.partition, m.offset, m.key, m.value)
                    out[tp.topic].append(keep(record))
            ends = {tp: end for tp, end in ends.items() if kafka.position(tp) < end}
        if ends:
            raise TimeoutError(f"{len(ends)} partitions not read to their end in {timeout_s} s")
    finally:
        kafka.close()
    return out


def _all_topics(deployment: Deployment) -> list[str]:
    admin = KafkaAdminClient(bootstrap_servers=[deployment.bootstrap])
    try:
        stem = deployment.prefix.rstrip(".")
        return sorted(name for name in admin.list_topics() if name.startswith(stem))
    finally:
        admin.close()


def _wait_for_dead_letters(
    deployment: Deployment, worker: WorkerProcess, count: int, timeout_s: float
) -> list[dict[str, Any]]:
    """Once the worker counts ``count`` dead letters (``/metrics``), a digest of each
    committed record of the DLQ topic: source, code, truncated_from."""
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{worker.web_port}/metrics"
    while time.monotonic() < deadline:
        worker.assert_alive()
        if _metric(_get(url), "suppressor_dlq_total") >= count:
            break
        time.sleep(2)
    time.sleep(3)  # a few commit intervals: the last transaction commits
    return read_everything(
        deployment.bootstrap, [deployment.topology.dlq], _dead_letter_digest, committed_only=True
    )[deployment.topology.dlq]


def _dead_letter_digest(record: Record) -> dict[str, Any]:
    letter = record.json()
    return {
        "source": letter["source"],
        "error_code": letter["error_code"],
        "error": letter["error"][:120],
        "original": letter["original"][:160],
        "truncated_from": letter.get("truncated_from"),
    }


def run(ctx: Context) -> Outcome:
    hostile_count = ctx.pick(small=3_000, full=100_000)
    oversized_count = ctx.pick(small=3, full=24)
    users, events = ctx.pick(small=(150, 1_500), full=(2_000, 20_000))
    far_past = ctx.pick(small=20, full=200)
    now = datetime.now(UTC).replace(microsecond=0)
    rng = random.Random(ctx.seed)
    figures: dict[str, Any] = {}
    notes: list[str] = []
    failures: list[str] = []

    deployment = ctx.deployment("hostile", policy_text=POLICY)
    catalog = write_catalog(deployment.workdir / "catalog.jsonl")
    raise_record_limit(ctx.bootstrap, deployment.topology.inputs, BIG_RECORD_LIMIT)

    started = time.monotonic()
    bad = draw_hostile(hostile_count - oversized_count, now, ctx.seed)
    bad += oversized_records(oversized_count, rng)
    rng.shuffle(bad)
    figures["hostile records generated"] = len(bad)
    figures["generation s (hypothesis)"] = round(time.monotonic() - started, 1)
    kinds = Counter(kind for kind, _ in bad)
    figures["hostile records by kind"] = ", ".join(f"{k} {n:,}" for k, n in sorted(kinds.items()))
    figures["hostile records carrying personal fields"] = sum(
        1 for _, raw in bad if marker_hits(raw)
    )
    figures["largest hostile record, bytes"] = max(len(raw) for _, raw in bad)
    ctx.log(f"generated {len(bad):,} hostile records in {figures['generation s (hypothesis)']} s")

    traffic = good_traffic(deployment, users, events, far_past, ctx.seed)
    good_path = write_lines(deployment.workdir / "good.jsonl", traffic.lines)
    until = rfc3339(last_ts(good_path) + timedelta(days=2))
    expected = replay_actions(good_path, catalog, deployment.policy_path, until, deployment.workdir)
    figures["good events"] = len(traffic.lines)
    figures["good events carrying personal fields"] = traffic.personal
    figures["far-past good events (years 0001-2000)"] = far_past
    figures["actions expected (replay of the good events)"] = len(expected)
    figures["late events in replay of the good events"] = replay_late(
        good_path, catalog, deployment.policy_path, until
    )

    deployment.feed_catalog(catalog)
    worker = WorkerProcess(deployment, "hostile").start()
    try:
        worker.wait_healthy()
        pid = worker.process.pid if worker.process else None
        feed_started = time.monotonic()
        positions = feed_interleaved(deployment, traffic.lines, bad, rng, ctx.log)
        ctx.log(f"fed {len(positions):,} bad and {len(traffic.lines):,} good records")
        dead = _wait_for_dead_letters(
            deployment, worker, len(positions), timeout_s=ctx.pick(small=300, full=1500)
        )
        ctx.log(f"{len(dead):,} dead letters read")
        figures["worker s to dead-letter every bad record"] = round(
            time.monotonic() - feed_started, 1
        )

        # far-future: no partition's stream time beyond the good stream; the canaries wait
        health = worker.health() or {}
        times = [t for t in (health.get("stream_time") or {}).values() if t]
        latest = max(times) if times else None
        figures["latest partition stream time before the sentinels"] = latest or "none"
        figures["last good event time"] = rfc3339(traffic.last_good)
        early_actions = [
            a for a in deployment.actions(settle_s=2.0) if a["ts"] > rfc3339(traffic.last_good)
        ]
        canary_early = [a for a in early_actions if a["user_id"] in traffic.canaries]
        figures["actions dated after the last good event, before the sentinels"] = len(
            early_actions
        )
        if latest is None or latest > rfc3339(traffic.last_good) or early_actions or canary_early:
            failures.append(
                f"far-future records moved stream time: latest {latest}, {len(early_actions)} "
                f"actions after {rfc3339(traffic.last_good)} ({len(canary_early)} canaries)"
            )

        deployment.feed_sentinels(until)
        ctx.log("sentinels sent, reading the actions")
        actual_list = deployment.actions(
            at_least=len(expected), timeout_s=ctx.pick(small=180, full=900)
        )
        ids = Counter(a["action_id"] for a in actual_list)
        actual = {a["action_id"]: a for a in actual_list}
        missing, extra = expected.keys() - actual.keys(), actual.keys() - expected.keys()
        changed = [k for k in expected.keys() & actual.keys() if expected[k] != actual[k]]
        duplicated = sum(n - 1 for n in ids.values() if n > 1)
        figures["actions read (read_committed)"] = len(actual_list)
        figures["actions missing vs replay"] = len(missing)
        figures["actions extra vs replay"] = len(extra)
        figures["actions duplicated"] = duplicated
        figures["actions differing in content"] = len(changed)
        for label, ids_ in (("missing", missing), ("extra", extra)):
            source = expected if label == "missing" else actual
            for action_id in sorted(ids_)[:4]:
                a = source[action_id]
                notes.append(
                    f"{label}: {a['kind']} {a['user_id']} {a['ts']} items {a['items']} "
                    f"from {a['source_event_ids']}"
                )
        if missing or extra or changed or duplicated:
            failures.append(
                f"actions differ from replay: {len(missing)} missing, {len(extra)} extra, "
                f"{len(changed)} changed, {duplicated} duplicated"
            )
        past_actions = [a for a in actual_list if a["user_id"] in set(traffic.far_past_users)]
        figures["far-past events' actions (similar_item, dated as the event)"] = len(past_actions)
        canary_fired = sum(1 for a in actual_list if a["user_id"] in traffic.canaries)
        figures["canary baskets fired after the sentinels (of one per partition)"] = canary_fired
        if canary_fired != len(traffic.canaries):
            failures.append(
                f"{canary_fired} of {len(traffic.canaries)} canary baskets fired at the end"
            )

        # the dead letters: each bad record once, at its position, with an allowed code
        found: dict[tuple[str, int, int], dict[str, Any]] = {}
        repeated = 0
        for letter in dead:
            source = letter["source"]
            where = (source.get("topic"), source.get("partition"), source.get("offset"))
            repeated += where in found
            found[where] = letter
        not_in_dlq = positions.keys() - found.keys()
        unexpected = found.keys() - positions.keys()
        wrong_code = [
            (positions[w], found[w]["error_code"])
            for w in positions.keys() & found.keys()
            if found[w]["error_code"] not in CODES_OF[positions[w]]
        ]
        codes = Counter(letter["error_code"] for letter in found.values())
        figures["dead letters read"] = len(dead)
        figures["dead letters by code"] = ", ".join(f"{c} {n:,}" for c, n in sorted(codes.items()))
        figures["bad records missing from the DLQ"] = len(not_in_dlq)
        figures["DLQ records not from a bad record (good ones refused)"] = len(unexpected)
        figures["bad records dead-lettered twice"] = repeated
        figures["bad records with a code their kind does not allow"] = len(wrong_code)
        figures["1 MB+ dead letters kept truncated (truncated_from)"] = sum(
            1
            for w, letter in found.items()
            if letter.get("truncated_from") and positions.get(w) == "oversized"
        )
        for where in sorted(unexpected)[:3]:
            letter = found[where]
            notes.append(
                f"DLQ record not from a bad record: {where} {letter['error_code']} "
                f"{letter['error'][:120]!r} {letter['original'][:160]!r}"
            )
        if not_in_dlq or unexpected or repeated or wrong_code:
            failures.append(
                f"DLQ: {len(not_in_dlq)} missing, {len(unexpected)} unexpected, {repeated} twice, "
                f"wrong codes {Counter(wrong_code).most_common(5)}"
            )

        ctx.log("actions and dead letters checked; metrics, log, privacy scan")
        # metrics and late events
        metrics = _get(f"http://127.0.0.1:{worker.web_port}/metrics")
        late = _metric(metrics, "suppressor_late_events_total")
        figures["late events counted by the worker (suppressor_late_events_total)"] = int(late)
        dlq_metric = sum(v for k, v in _samples(metrics, "suppressor_dlq_total"))
        figures["suppressor_dlq_total (all codes)"] = int(dlq_metric)
        if int(dlq_metric) != len(positions):
            failures.append(
                f"suppressor_dlq_total is {dlq_metric}, {len(positions)} bad records were sent"
            )

        # zero crashes: the same process all along, no traceback in its log
        worker.assert_alive()
        same = worker.process is not None and worker.process.pid == pid
        log_text = worker.log_text()
        tracebacks = log_text.count("Traceback")
        crashed = sum(1 for line in log_text.splitlines() if "crash" in line.lower())
        figures["worker process restarts"] = 0 if same else 1
        figures["tracebacks / 'crash' lines in the worker log"] = f"{tracebacks} / {crashed}"
        if not same or tracebacks or crashed:
            failures.append(
                f"worker crashed or logged tracebacks ({tracebacks}) / crash lines ({crashed})"
            )

        # privacy: the personal markers
        privacy = _privacy(deployment, metrics, worker)
        figures.update(privacy.figures)
        failures += privacy.failures
        notes += privacy.notes
        ctx.log("privacy scan done")
        health_after = worker.health() or {}
        figures["records the worker read (incl. ticks, forwarded)"] = health_after.get(
            "records_processed", "?"
        )
    finally:
        code = worker.stop()
    if code != 0:
        failures.append(f"the worker's graceful stop exited {code}")
    leak = _privacy_log_only(worker)  # the log once more, with the shutdown lines in it
    if leak:
        failures.append(f"{leak} worker log lines carry a personal marker (after the stop)")

    notes = failures + notes
    passed = not failures
    leaked = figures.get(PRIVACY_FIGURE, "?")
    return Outcome(
        name="hostile",
        title="Hostile input and privacy (issue 6, items 5 and 6)",
        passed=passed,
        figures=figures,
        notes=notes,
        method=METHOD,
        headline=(
            f"{len(bad):,} hostile + {len(traffic.lines):,} good records: "
            f"{figures.get('bad records missing from the DLQ', '?')} missing from the DLQ, "
            f"{figures.get('actions missing vs replay', '?')} missing / "
            f"{figures.get('actions extra vs replay', '?')} extra actions, "
            f"personal markers in outputs/logs/metrics: {leaked}"
        ),
    )


@dataclass
class _Privacy:
    figures: dict[str, Any]
    failures: list[str]
    notes: list[str]


def _privacy(deployment: Deployment, metrics: str, worker: WorkerProcess) -> _Privacy:
    figures: dict[str, Any] = {}
    failures: list[str] = []
    notes: list[str] = []
    topology = deployment.topology
    inputs = set(topology.inputs) | {topology.catalog}
    leaks = 0
    clean_dlq = True
    good_mark = f"{MARK}.g".encode()

    def digest(record: Record) -> tuple[bool, bool]:
        data = (record.key or b"") + b"\0" + (record.value or b"")
        return marker_hits(data), good_mark in data.lower()

    scanned = read_everything(
        deployment.bootstrap, [t for t in _all_topics(deployment) if t not in inputs], digest
    )
    for topic, everything in scanned.items():
        total = len(everything)
        hits = sum(1 for hit, _ in everything if hit)
        short = (
            topic[len(deployment.prefix) :]
            if topic.startswith(deployment.prefix)
            else topic.split("-app-", 1)[-1]
        )
        if topic == topology.dlq:
            from_good = sum(1 for _, good in everything if good)
            figures["DLQ records carrying a personal marker (all from bad records)"] = hits
            figures["DLQ records carrying a good event's personal marker"] = from_good
            clean_dlq = not from_good
            if from_good:
                failures.append(f"{from_good} DLQ records carry a good event's personal fields")
        elif topic == topology.repartition:
            figures["repartition topic records carrying a personal marker"] = (
                f"{hits:,} of {total:,}"
            )
            if hits:  # forwarded events are re-encoded with known fields only
                failures.append(f"{hits} repartitioned records carry a personal marker")
        else:
            leaks += hits
            if hits:
                failures.append(f"{hits} records on {short} carry a personal marker")
    figures["records scanned for personal markers (every topic the worker writes)"] = sum(
        len(records) for records in scanned.values()
    )
    log_hits = sum(1 for line in worker.log_text().splitlines() if marker_hits(line.encode()))
    metric_hits = sum(1 for line in metrics.splitlines() if marker_hits(line.encode()))
    if log_hits or metric_hits:
        failures.append(
            f"personal markers in the worker log ({log_hits} lines) or /metrics ({metric_hits})"
        )
    figures[PRIVACY_FIGURE] = leaks + log_hits + metric_hits
    if figures.get("DLQ records carrying a personal marker (all from bad records)"):
        notes.append(
            "By design the DLQ keeps a bad record's original bytes (SPEC section 3: 'the original "
            "bytes (as text or base64)'), so personal fields *in a record that could not be "
            "used* reach `events.dlq`; SPEC section 8 ('nothing but ids, timestamps and reason "
            "codes leaves the worker') is at odds with that. Treat `events.dlq` as holding "
            "personal data: restrict its ACLs and keep its retention short."
            + (" Good events' personal fields never reach it (checked)." if clean_dlq else "")
        )
    return _Privacy(figures, failures, notes)


def _privacy_log_only(worker: WorkerProcess) -> int:
    return sum(1 for line in worker.log_text().splitlines() if marker_hits(line.encode()))


def _samples(metrics: str, name: str) -> list[tuple[str, float]]:
    out = []
    for line in metrics.splitlines():
        if line.startswith(name):
            labels, _, value = line.rpartition(" ")
            out.append((labels, float(value)))
    return out


def _metric(metrics: str, name: str) -> float:
    return sum(value for _, value in _samples(metrics, name))


METHOD = """
- **Traffic.** Good events: `shop_events` (tests/integration/worker_helpers.py) with 30 % of
  them carrying five personal fields (`email`, `name`, `phone`, `address`, `ip`, each with
  the marker `zqxpii` or an address in 198.51.100.0/24), far-past purchases (years
  0001-2000, one user each, so arrival order cannot matter) and one *canary* cart add per
  partition dated at the last good event. Every tenth good event is keyed by event id instead
  of user id (the worker repartitions it). Hostile records: drawn with hypothesis
  strategies (a `@given` run with a fixed `@seed`, generate phase only, batches of up to 40
  collected into a list), half of them with personal fields: random bytes, a good event with
  an invalid UTF-8 sequence in a string, 1,000-12,000 levels of nested arrays or objects (alone
  or as a field), one field of a good event replaced by a wrongly typed value (empty or
  257+ character ids, numbers as strings, floats and booleans as ints, out-of-range ints,
  empty `items`, ...), unknown `type`s, a required field dropped, unusable timestamps
  (no offset, impossible dates, outside years 0001-9999 in UTC, random text), timestamps
  2 h to year 9999 ahead of the wall clock, JSON values that are not objects; and 1 MB+
  records by plain code (a huge field in UTF-8 of 1-4 byte characters, or a binary blob). The
  input topics' `max.message.bytes` is raised to 4 MB so these reach the worker; the
  output topics keep the broker default (1 MB). The bad records go to all five input
  topics in turn, keyed `None`, junk bytes or a real user id, at random places among the
  good ones; the producer's acks give each one's topic/partition/offset.
- **Worker.** One `python -m suppressor.entrypoints.worker`, `exactly_once`, `clock = "event"` (pure
  event time, as replay), `idle_timeout = "30s"` (the product default; the 2 s of
  tests/integration lets an input partition that only got bad records for 2 s drop out of
  stream time while two days of event time pass in a minute of feeding, a test artefact
  that makes its next good events late), 3 partitions, started before the traffic.
- **Checks.** (1) Every bad record's position appears exactly once in `events.dlq`, with a
  code its kind allows, and nothing else does; `suppressor_dlq_total` equals the count.
  (2) Once the DLQ is complete, no partition's `stream_time` (`/health`) is past the last good
  event and no action is dated after it (a far-future record admitted would have pushed
  stream time to its date and fired the canaries). (3) Then one consent per partition at
  the last good event + 2 days (the sentinels of tests/integration) lets every deadline
  fire; the actions read `read_committed` must equal `suppressor replay --until` of the good
  lines, field for field, no duplicates, the canaries included. (4) The worker process is the
  one started (no restart), alive, with no traceback or crash line in its log, and stops
  gracefully with status 0. (5) Every topic the worker writes (actions, decisions,
  conversions, both changelogs, ticks, repartition, DLQ), read `read_uncommitted` so aborted
  writes count too, the worker log and `/metrics` are searched for the markers: none may
  appear anywhere but in the DLQ (bad records' originals, by design); a good event's
  marker may not appear in the DLQ. (The repartition topic carried forwarded events' original
  bytes until they were re-encoded with known fields only: it is checked like the rest.)
- **Far-past events** are valid: applied as late events (state updated, counted in
  `suppressor_late_events_total`, SPEC section 5) and, being purchases, each gives a
  `similar_item` dated as the event, as replay gives.
"""
