"""The worker on a real broker: the same actions as replay, bad input, erasure, hybrid clock.

Each test has its own topics, app id (consumer group), data dir and web port, and
runs ``python -m suppressor.entrypoints.worker`` as a subprocess. Expected actions come from
``suppressor replay`` on the same files, ``--until`` past the last deadline; the
worker gets there by one sentinel consent per partition at the same time (see
``Deployment.feed_sentinels``), under ``clock = "event"`` so both are pure event time.
"""

from __future__ import annotations

import json
import subprocess
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from suppressor.adapters.feed import producer, route_by_type
from suppressor.wire.timefmt import format_ms
from tests.integration.worker_helpers import (
    PYTHON,
    REPO,
    TEST_POLICY,
    Deployment,
    WorkerProcess,
    by_action_id,
    last_ts,
    replay_actions,
    rfc3339,
    shop_events,
    write_lines,
)

DEADLINES_PASSED = timedelta(days=2)
"""--until: past every basket deadline (abandon_after 1h + grace 5m) of the input."""


def expected_and_until(
    deployment: Deployment, events: Path, catalog: Path
) -> tuple[dict[str, dict[str, Any]], str]:
    until = rfc3339(last_ts(events) + DEADLINES_PASSED)
    expected = replay_actions(events, catalog, deployment.policy_path, until, deployment.workdir)
    return expected, until


def assert_same_actions(
    deployment: Deployment,
    expected: dict[str, dict[str, Any]],
    *workers: WorkerProcess,
    timeout_s: float = 300.0,
) -> None:
    """The read_committed actions equal ``expected``. Waits up to ``timeout_s`` for them all
    (a bound on waiting on a loaded machine, not a performance check); on a mismatch the
    message shows how far each worker's stream time got (slow, or stuck?)."""
    found = deployment.actions(at_least=len(expected), timeout_s=timeout_s)
    actual = by_action_id(found)  # no duplicates either
    missing, extra = expected.keys() - actual.keys(), actual.keys() - expected.keys()
    if missing or extra:
        latest = max((expected[a]["ts"] for a in missing), default=None)
        progress = {w.name: (w.health() or {}).get("stream_time") for w in workers}
        raise AssertionError(
            f"{len(missing)} missing (latest dated {latest}), {len(extra)} extra; "
            f"workers' stream time: {progress}"
        )
    assert actual == expected


# --- equivalence with replay ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("guarantee", "fetch_wait"),
    [("exactly_once", "0"), ("at_least_once", "0"), ("exactly_once", "0.02")],
)
def test_live_traffic_gives_replays_actions(
    deployment: Deployment, catalog: Path, guarantee: str, fetch_wait: str
) -> None:
    events = write_lines(deployment.workdir / "events.jsonl", shop_events(users=60, events=1500))
    expected, until = expected_and_until(deployment, events, catalog)
    assert len(expected) > 20, "the stream should produce a fair number of actions"
    deployment.feed_catalog(catalog)
    worker = WorkerProcess(
        deployment, "live",
        SUPPRESSOR_PROCESSING_GUARANTEE=guarantee, SUPPRESSOR_FETCH_WAIT=fetch_wait,
    ).start()  # fmt: skip
    try:
        # what the running app does (Faust caches it: read too early, it was at least once)
        assert worker.wait_healthy()["processing_guarantee"] == guarantee
        held = "fetches held up to 20 ms for 65536 bytes" in worker.log_text()
        assert held == (fetch_wait != "0"), "SUPPRESSOR_FETCH_WAIT reaches the consumer"
        deployment.feed_events(events.read_bytes().splitlines())
        deployment.feed_sentinels(until)
        assert_same_actions(deployment, expected)
        worker.assert_alive()
    finally:
        assert worker.stop() == 0


def test_catch_up_on_the_demo_stream(
    kafka_bootstrap: str, unique_topic_prefix: str, tmp_path: Path
) -> None:
    """examples/: every demo event waits in the topics before the worker starts."""
    examples = REPO / "examples"
    policy = TEST_POLICY + (examples / "policy.toml").read_text()  # top-level keys first
    deployment = Deployment(kafka_bootstrap, unique_topic_prefix, tmp_path, policy_text=policy)
    events, catalog = examples / "events.jsonl", examples / "catalog.jsonl"
    expected, until = expected_and_until(deployment, events, catalog)
    assert expected, "the demo stream has actions"
    deployment.feed_catalog(catalog)
    deployment.feed_events(events.read_bytes().splitlines())
    deployment.feed_sentinels(until)
    worker = WorkerProcess(deployment, "demo").start()
    try:
        assert_same_actions(deployment, expected)
    finally:
        assert worker.stop() == 0


def test_a_catch_up_through_large_record_batches_makes_no_event_late(
    kafka_bootstrap: str, unique_topic_prefix: str, tmp_path: Path, catalog: Path
) -> None:
    """A backlog written in record batches of close to 1 MB, as librdkafka (kcat) writes
    them: Kafka returns a partition's whole batch whatever the fetch size, and the
    consumer's position is past all of it the moment Faust takes it, while its records
    reach the agent one by one over seconds. Such a partition is not caught up: it must not
    be left out of stream time as idle (1 s here) while its records still wait, or they
    come late. Found by the fault suite's burst scenario (4 failing runs of 10)."""
    policy = 'clock = "event"\nidle_timeout = "1s"\n'
    deployment = Deployment(kafka_bootstrap, unique_topic_prefix, tmp_path, policy_text=policy)
    path = write_lines(tmp_path / "events.jsonl", shop_events(users=3000, events=40_000, seed=11))
    expected, until = expected_and_until(deployment, path, catalog)
    deployment.feed_catalog(catalog)
    batches = {"linger_ms": 2000, "batch_size": 900_000, "max_request_size": 4_000_000}
    deployment.feed_events(
        path.read_bytes().splitlines(), client_config={**deployment.client_config, **batches}
    )
    deployment.feed_sentinels(until)
    worker = WorkerProcess(deployment, "batches").start()
    try:
        assert_same_actions(deployment, expected, worker)
        assert worker.metric("suppressor_late_events_total") == 0
    finally:
        assert worker.stop() == 0


def test_catch_up_on_rees46_backlog_not_keyed_by_user(
    deployment: Deployment, tmp_path: Path
) -> None:
    """All of the REES46 sample waits in the topics before the worker starts (catch-up), and
    a third of it is keyed by event id instead of user id (repartitioned by the worker)."""
    converted = tmp_path / "rees46"
    subprocess.run(
        [PYTHON, "-m", "suppressor.core.datasets.rees46", "--out", str(converted)],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    events, catalog = converted / "events.jsonl", converted / "catalog.jsonl"
    expected, until = expected_and_until(deployment, events, catalog)
    assert expected, "the sample has purchases: similar items must come out"
    deployment.feed_catalog(catalog)
    deployment.feed_events(events.read_bytes().splitlines(), key_of=_misrouted_third)
    deployment.feed_sentinels(until)
    worker = WorkerProcess(deployment, "catch-up").start()
    try:
        assert_same_actions(deployment, expected)
        assert "events-by-user" in _topics_written(deployment)
        worker.assert_alive()
    finally:
        assert worker.stop() == 0


def _misrouted_third(event: dict[str, Any]) -> str:
    return (
        event["event_id"] if zlib.crc32(event["event_id"].encode()) % 3 == 0 else event["user_id"]
    )


def _topics_written(deployment: Deployment) -> set[str]:
    records = deployment.read(deployment.topology.repartition, settle_s=1.0, timeout_s=20)
    return {"events-by-user"} if records else set()


def test_hybrid_clock_fires_a_deadline_on_a_quiet_partition(
    kafka_bootstrap: str, unique_topic_prefix: str, tmp_path: Path, catalog: Path
) -> None:
    """One cart add at wall-clock time, then silence: the wall clock brings its deadline."""
    policy = 'abandon_after = "3s"\ngrace = "1s"\nidle_timeout = "2s"\n'  # clock: hybrid
    deployment = Deployment(kafka_bootstrap, unique_topic_prefix, tmp_path, policy_text=policy)
    deployment.feed_catalog(catalog)
    worker = WorkerProcess(deployment, "hybrid").start()
    try:
        worker.wait_healthy()
        now = datetime.now(UTC).replace(microsecond=0)
        cart = {
            "event_id": "c1",
            "type": "cart",
            "action": "add",
            "user_id": "quiet-user",
            "item_id": "paper-1",
            "ts": rfc3339(now),
        }
        deployment.feed_events([json.dumps(cart).encode()])
        actions = deployment.actions(at_least=1, settle_s=1.0, timeout_s=60)
        assert [(a["kind"], a["user_id"], a["ts"]) for a in actions] == [
            ("basket_recovery", "quiet-user", rfc3339(now + timedelta(seconds=3)))
        ]
    finally:
        assert worker.stop() == 0


def test_hybrid_clock_an_event_forwarded_by_a_live_partition_is_not_late(
    kafka_bootstrap: str, unique_topic_prefix: str, tmp_path: Path, catalog: Path
) -> None:
    """Live traffic keyed by user on every partition for longer than ``idle_timeout``: the
    partitions forward each other nothing, so their fresh watermarks no longer hold each
    other's stream time back (``Pipeline._fresh``). Then a cart add keyed by its event id
    lands on another partition and is forwarded to its user's: it must still be on time
    (within ``grace``, not late) and its basket deadline must fire there.

    Every event is stamped with the wall clock as it is sent, by one producer kept open.
    With the hybrid clock an event is late when it reaches the worker more than ``grace``
    later than the previous one of its topic did, against their stamps, so ``grace`` is
    3 s: at 1 s, with a producer opened per round after the stamp, a CI run on a loaded
    machine counted 3 late events (which ones, the counter does not say). The forward
    itself takes milliseconds."""
    policy = 'abandon_after = "3s"\ngrace = "3s"\nidle_timeout = "2s"\n'  # clock: hybrid
    deployment = Deployment(kafka_bootstrap, unique_topic_prefix, tmp_path, policy_text=policy)
    topology = deployment.topology
    routes = route_by_type(topology.inputs)
    deployment.feed_catalog(catalog)
    shoppers = topology.one_user_per_partition("live")
    user = "forwarded-user"
    key = next(
        f"cart-{n}"
        for n in range(1000)
        if topology.partition_for(f"cart-{n}") != topology.partition_for(user)
    )
    kafka = producer(deployment.bootstrap, deployment.client_config)

    def send(event: dict[str, Any], key: str) -> None:
        kafka.send(routes[event["type"]], key=key.encode(), value=json.dumps(event).encode())

    def browse_everywhere(second: int) -> None:
        moment = format_ms(time.time_ns() // 1_000_000)  # the shop's clock, to the ms
        for shopper in shoppers:
            send({"event_id": f"b{second}-{shopper}", "type": "browse", "page": "product",
                  "user_id": shopper, "item_id": "paper-1", "ts": moment}, shopper)  # fmt: skip
        kafka.flush()

    worker = WorkerProcess(deployment, "forwarded").start()
    try:
        worker.wait_healthy()
        for second in range(6):  # three times idle_timeout
            browse_everywhere(second)
            time.sleep(1)
        now_ms = time.time_ns() // 1_000_000
        send({"event_id": key, "type": "cart", "action": "add", "user_id": user,
              "item_id": "paper-1", "ts": format_ms(now_ms)}, key)  # fmt: skip
        kafka.flush()
        for second in range(6, 12):
            browse_everywhere(second)
            time.sleep(1)
        actions = deployment.actions(at_least=1, settle_s=1.0, timeout_s=60)
        assert [(a["kind"], a["ts"]) for a in actions if a["user_id"] == user] == [
            ("basket_recovery", format_ms(now_ms + 3_000))
        ]
        assert _topics_written(deployment) == {"events-by-user"}, "it was forwarded"
        assert worker.metric("suppressor_late_events_total") == 0
    finally:
        kafka.close()
        assert worker.stop() == 0


# --- bad input, erasure ------------------------------------------------------------------------

BAD_RECORDS = [
    (b"\xff\xfe not utf-8", "not_utf8"),
    (b"{not json", "not_json"),
    (b"[1, 2, 3]", "not_object"),
    (
        b'{"event_id": "x1", "type": "teleport", "user_id": "u", "ts": "2024-03-01T09:00:00Z"}',
        "unknown_type",
    ),
    (
        b'{"event_id": "x2", "type": "review", "user_id": "u", "item_id": "pen-1",'
        b' "rating": "five", "ts": "2024-03-01T09:00:00Z"}',
        "invalid_field",
    ),
    (
        b'{"event_id": "x3", "type": "browse", "user_id": "u", "ts": "2024-03-01T09:00:00Z"}',
        "missing_field",
    ),
    (
        b'{"event_id": "x4", "type": "browse", "user_id": "u", "item_id": "pen-1",'
        b' "ts": "yesterday"}',
        "bad_timestamp",
    ),
    (  # would move stream time years ahead and fire every deadline: refused instead
        b'{"event_id": "x5", "type": "browse", "user_id": "u", "item_id": "pen-1",'
        b' "ts": "9999-01-01T00:00:00Z"}',
        "future_timestamp",
    ),
]


def test_bad_input_on_every_topic_goes_to_the_dlq(deployment: Deployment, catalog: Path) -> None:
    good = shop_events(users=30, events=600, seed=11)
    events = write_lines(deployment.workdir / "good.jsonl", good)
    expected, until = expected_and_until(deployment, events, catalog)
    deployment.feed_catalog(catalog)
    worker = WorkerProcess(deployment, "bad-input").start()
    try:
        worker.wait_healthy()
        sent_bad = _interleave_bad_records(deployment, good)
        deployment.feed_sentinels(until)
        assert_same_actions(deployment, expected)
        dead = [r.json() for r in deployment.read(deployment.topology.dlq, at_least=len(sent_bad))]
        found = {
            (d["source"]["topic"], d["source"]["partition"], d["source"]["offset"]): d["error_code"]
            for d in dead
        }
        assert found == sent_bad
        worker.assert_alive()
    finally:
        assert worker.stop() == 0


def _interleave_bad_records(
    deployment: Deployment, good: list[str]
) -> dict[tuple[str, int, int], str]:
    """Good events keyed by user id, each bad record on every input topic in between."""
    kafka = producer(deployment.bootstrap)
    inputs = deployment.topology.inputs
    routes = {"browse": 0, "cart": 1, "purchase": 2, "review": 3, "consent": 4, "forget": 4}
    sent: dict[tuple[str, int, int], str] = {}
    futures = []
    for number, line in enumerate(good):
        event = json.loads(line)
        kafka.send(
            inputs[routes[event["type"]]], key=event["user_id"].encode(), value=line.encode()
        )
        if number % 40 == 0:
            raw, code = BAD_RECORDS[(number // 40) % len(BAD_RECORDS)]
            for topic in inputs:
                futures.append((kafka.send(topic, key=b"bad", value=raw), code))
    kafka.flush()
    for future, code in futures:
        meta = future.get(timeout=30)
        sent[(meta.topic, meta.partition, meta.offset)] = code
    kafka.close()
    assert {topic for topic, _, _ in sent} == set(inputs)
    assert set(sent.values()) == {code for _, code in BAD_RECORDS}
    return sent


def test_forget_leaves_a_tombstone_and_cancels_the_pending_basket(
    deployment: Deployment, catalog: Path
) -> None:
    lines = [
        {
            "event_id": "f1",
            "type": "cart",
            "action": "add",
            "user_id": "forgetful",
            "item_id": "paper-1",
            "ts": "2024-03-01T10:00:00Z",
        },
        {
            "event_id": "f2",
            "type": "browse",
            "user_id": "forgetful",
            "item_id": "pen-1",
            "ts": "2024-03-01T10:01:00Z",
        },
        {"event_id": "f3", "type": "forget", "user_id": "forgetful", "ts": "2024-03-01T10:02:00Z"},
        {
            "event_id": "k1",
            "type": "cart",
            "action": "add",
            "user_id": "keeper",
            "item_id": "paper-2",
            "ts": "2024-03-01T10:03:00Z",
        },
    ]
    deployment.feed_catalog(catalog)
    worker = WorkerProcess(deployment, "erasure").start()
    try:
        worker.wait_healthy()
        deployment.feed_events([json.dumps(line).encode() for line in lines])
        deployment.feed_sentinels("2024-03-02T00:00:00Z")
        actions = deployment.actions(at_least=1)
        assert [(a["kind"], a["user_id"]) for a in actions] == [("basket_recovery", "keeper")]
        changelog = deployment.topology.changelog("users")
        history = [r for r in deployment.read(changelog, at_least=2) if r.key == b"forgetful"]
        assert history, "the user's state was written before the forget"
        assert history[-1].value is None, "the last record of a forgotten user is a tombstone"
    finally:
        assert worker.stop() == 0


# --- crash recovery, scale-out -------------------------------------------------------------------


def test_kill_9_mid_stream_loses_and_duplicates_nothing(
    deployment: Deployment, catalog: Path
) -> None:
    expected = _waiting_stream(deployment, catalog, users=2000, events=20_000, seed=3)
    first = WorkerProcess(deployment, "killed").start()
    _wait_for_progress(first, records=6_000)
    first.kill()
    # Same data dir: RocksDB holds only committed changelog records, up to its checkpoint,
    # so the restart reads the changelogs' tails and wipes nothing.
    second = WorkerProcess(deployment, "killed").start()
    try:
        assert_same_actions(deployment, expected, second)
        assert "wiped" not in second.log_text()
    finally:
        assert second.stop() == 0


def test_events_fed_while_a_restarted_worker_recovers_are_processed(
    deployment: Deployment, catalog: Path
) -> None:
    """Found by the bench's restart run: events that arrived while a worker restarted after
    kill -9 recovered its tables were never processed (the agent's queue was emptied when
    Faust resumed the flow, and a batch fetched after the seek could be cut at it)."""
    expected = _waiting_stream(deployment, catalog, users=2000, events=20_000, seed=11)
    first = WorkerProcess(deployment, "restarted").start()
    assert_same_actions(deployment, expected, first)  # every partition's clock saved
    decisions = deployment.topology.decisions
    before = len(deployment.read(decisions, at_least=1))
    first.kill()
    probes = deployment.topology.one_user_per_partition("probe")
    second = WorkerProcess(deployment, "restarted").start()  # recovering while these arrive
    deployment.feed_events(
        json.dumps(
            {"event_id": f"probe-{user}", "type": "purchase", "user_id": user,
             "ts": "2024-03-01T00:00:00Z", "order_id": f"order-{user}",
             "items": [{"item_id": "pen-1", "quantity": 1}]}
        ).encode()
        for user in probes
    )  # fmt: skip
    try:
        found = deployment.read(decisions, at_least=before + len(probes), timeout_s=180)
        sources = {s for record in found for s in record.json()["source_event_ids"]}
        missing = {f"probe-{user}" for user in probes} - sources
        assert not missing, f"not processed: {sorted(missing)}; {second.health()}"
    finally:
        assert second.stop() == 0


# Marked as a known failure until 2026-11-22: the last 5 actions were missing in 2 of 5 runs.
# Not seen again since the seek fixes in suppressor.adapters.faust_internals.consumer (records
# handed on during
# Faust's seek were processed out of order, queued records dropped at the resume): 13 of 13
# runs passed, 2 or 3 at once on the 2 cores, 6 of them with a busy loop for part or all of it.
def test_second_worker_joins_mid_stream(deployment: Deployment, catalog: Path) -> None:
    expected = _waiting_stream(deployment, catalog, users=1000, events=12_000, seed=5)
    first = WorkerProcess(deployment, "first").start()
    second = WorkerProcess(deployment, "second")
    try:
        _wait_for_progress(first, records=3_000)
        second.start()
        assert_same_actions(deployment, expected, first, second)
        first.assert_alive()
        second.assert_alive()
        assert second.wait_healthy()["partitions"], "the second worker took over partitions"
    finally:
        assert first.stop() == 0
        if second.process is not None:
            assert second.stop() == 0


def _waiting_stream(
    deployment: Deployment, catalog: Path, users: int, events: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Synthetic events, the catalog and the sentinels put in the topics before any worker
    starts; replay's actions for them."""
    path = write_lines(
        deployment.workdir / "events.jsonl", shop_events(users=users, events=events, seed=seed)
    )
    expected, until = expected_and_until(deployment, path, catalog)
    deployment.feed_catalog(catalog)
    deployment.feed_events(path.read_bytes().splitlines())
    deployment.feed_sentinels(until)
    return expected


def _wait_for_progress(worker: WorkerProcess, records: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.assert_alive()
        health = worker.health() or {}
        if health.get("records_processed", 0) >= records:
            return
        time.sleep(0.2)
    raise AssertionError(
        f"worker {worker.name} did not process {records} records\n{worker.log_tail()}"
    )
