"""Issue 17 on a real broker: a closed web port, bounded state, no crash loop from any
record, hostile keys and headers, undecodable state, bounded stops, retention.

Each test has its own topics, app id and data dir and runs the worker as a subprocess
(``python -m suppressor.entrypoints.worker``, or ``tests.integration.faulty_worker`` with a fault).
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from suppressor.adapters.admin import ensure_topics, topic_config
from suppressor.adapters.feed import producer
from suppressor.adapters.pipeline import SOURCE, WATERMARK
from tests.integration.conftest import BROKER_DATA_DIRS
from tests.integration.worker_helpers import (
    Deployment,
    WorkerProcess,
    by_action_id,
    last_ts,
    replay_actions,
    rfc3339,
    shop_events,
    write_lines,
)

FAULTY = "tests.integration.faulty_worker"


def get(worker: WorkerProcess, path: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(check: Any, timeout_s: float = 120.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def event(event_id: str, user: str, ts: str, **fields: Any) -> bytes:
    return json.dumps({"event_id": event_id, "user_id": user, "ts": ts, **fields}).encode()


def dead_letters(deployment: Deployment, at_least: int) -> list[dict[str, Any]]:
    records = deployment.read(deployment.topology.dlq, at_least=at_least, settle_s=2)
    return [{**record.json(), "_key": record.key} for record in records]


# --- the web port ------------------------------------------------------------------------

FAUST_PAGES = [
    "/",
    "/table/",
    "/table/users/",
    "/router/",
    "/graph/",
    "/stats/",
    "/performance/",
    "/assignment/",
    "/tables",
]


def test_the_web_port_serves_metrics_and_health_and_nothing_else(
    deployment: Deployment, catalog: Path
) -> None:
    deployment.feed_catalog(catalog)
    worker = WorkerProcess(deployment, "web").start()
    try:
        worker.wait_healthy()
        deployment.feed_events([event("a1", "anna", "2024-03-01T08:00:00Z", type="cart",
                                      action="add", item_id="paper-1")])  # fmt: skip
        wait_for(lambda: worker.metric("suppressor_events_total") >= 1, what="anna's event")
        for path in ("/metrics", "/health", "/health/live"):
            assert get(worker, path)[0] == 200, path
        for path in [*FAUST_PAGES, "/table/users/anna/", "/router/users/anna/"]:
            status, body = get(worker, path)
            assert status == 404, (path, status, body[:200])
            assert b"anna" not in body and b"paper-1" not in body
        assert get(worker, "/metrics", method="POST")[0] in (404, 405)
    finally:
        assert worker.stop() == 0


# --- bounded state: the guest flood ---------------------------------------------------------


def flood_lines(start: str) -> list[bytes]:
    """The issue's flood: 40 valid purchases of 999 items each for one user id."""
    return [
        event(
            f"flood-{n}",
            "guest",
            start,
            type="purchase",
            order_id=f"o{n}",
            items=[{"item_id": f"g{n}-{k:03d}"} for k in range(999)],
        )
        for n in range(40)
    ]


def test_a_guest_flood_neither_crashes_the_worker_nor_delays_anyone(
    deployment: Deployment, catalog: Path
) -> None:
    good = shop_events(users=40, events=400)
    first = json.loads(good[0])["ts"]
    lines = [line.encode() for line in good[:200]] + flood_lines(first)
    lines += [line.encode() for line in good[200:]]
    events = write_lines(deployment.workdir / "events.jsonl", lines)
    until = rfc3339(last_ts(events) + timedelta(days=2))
    expected = replay_actions(events, catalog, deployment.policy_path, until, deployment.workdir)
    assert all(len(line) < 64 * 1024 for line in lines)
    deployment.feed_catalog(catalog)
    worker = WorkerProcess(deployment, "flood").start()
    try:
        worker.wait_healthy()
        deployment.feed_events(lines)
        deployment.feed_sentinels(until)
        actual = by_action_id(deployment.actions(at_least=len(expected), timeout_s=180))
        assert actual == expected
        assert worker.metric("suppressor_agent_crashes_total") == 0
        assert worker.metric("suppressor_processing_failures_total") == 0
        worker.assert_alive()
        assert "MessageSizeTooLarge" not in worker.log_text()
    finally:
        assert worker.stop() == 0
    changelog = deployment.topology.changelog("users")
    largest = max(len(r.value or b"") for r in deployment.read(changelog, settle_s=1))
    assert largest < 300_000, f"the guest's state record is {largest:,} bytes"


# --- an error on one record -----------------------------------------------------------------


def test_a_bug_on_one_record_sends_it_to_the_dlq_and_the_worker_goes_on(
    deployment: Deployment, catalog: Path
) -> None:
    good = shop_events(users=30, events=300)
    poisoned = json.loads(good[100])["event_id"]
    events = write_lines(deployment.workdir / "events.jsonl", good)
    deployment.feed_catalog(catalog)
    worker = WorkerProcess(deployment, "bug", FAULTY, FAULTY_BUG_EVENT_ID=poisoned).start()
    try:
        worker.wait_healthy()
        deployment.feed_events(events.read_bytes().splitlines())
        letters = dead_letters(deployment, 1)
        assert [(d["error_code"], json.loads(d["original"])["event_id"]) for d in letters] == [
            ("internal_error", poisoned)
        ]
        assert "RuntimeError: injected bug" in letters[0]["error"]
        until = rfc3339(last_ts(events) + timedelta(days=2))
        deployment.feed_sentinels(until)
        wait_for(lambda: worker.metric("suppressor_events_total") >= len(good) - 1,
                 what="the events after the bad one")  # fmt: skip
        assert worker.metric("suppressor_agent_crashes_total") == 0
        assert worker.metric("suppressor_processing_failures_total") == 1
        log = worker.log_text()
        assert f"injected bug on {poisoned}" not in log  # the message: in the DLQ only
        assert "builtins.RuntimeError" in log  # the stack and the class: in the log
        worker.assert_alive()
    finally:
        assert worker.stop() == 0


def test_a_kafka_error_while_processing_stops_the_worker_and_a_restart_resumes(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Some of the record's sends may be out: the worker stops (exit 1, the cause logged)
    rather than send them twice, and a restart resumes from the committed offsets."""
    crash = tmp_path / "crash-now"
    worker = WorkerProcess(deployment, "crash", FAULTY, FAULTY_CRASH_FILE=str(crash)).start()
    try:
        worker.wait_healthy()
        crash.touch()
        deployment.feed_events([event("k1", "kim", "2024-03-01T08:00:00Z", type="consent")])
        assert worker.process is not None
        assert worker.process.wait(timeout=60) == 1
        assert "stopping the worker: KafkaError" in worker.log_text()
    finally:
        if worker.process is not None and worker.process.poll() is None:
            worker.kill()
    crash.unlink()
    again = WorkerProcess(deployment, "crash", FAULTY, FAULTY_CRASH_FILE=str(crash)).start()
    try:
        again.wait_healthy()
        wait_for(lambda: again.metric("suppressor_events_total") >= 1, what="kim's consent")
    finally:
        assert again.stop() == 0


def test_a_stuck_agent_with_input_waiting_turns_health_503(
    deployment: Deployment,
) -> None:
    worker = WorkerProcess(
        deployment, "stuck", FAULTY, FAULTY_HANG_EVENT_ID="hang-me", SUPPRESSOR_STALL_TIMEOUT="6"
    ).start()
    try:
        worker.wait_healthy()
        deployment.feed_events([event("hang-me", "u", "2024-03-01T08:00:00Z", type="consent")])
        wait_for(lambda: get(worker, "/health")[0] == 503, 60, "/health 503 when stuck")
        assert json.loads(get(worker, "/health")[1])["status"] == "stalled"
    finally:
        worker.kill()


# --- hostile keys, headers and state ----------------------------------------------------------


def test_a_key_longer_than_any_user_id_is_refused_and_not_copied(
    deployment: Deployment,
) -> None:
    worker = WorkerProcess(deployment, "key").start()
    try:
        worker.wait_healthy()
        kafka: KafkaProducer = producer(deployment.bootstrap)
        value = event("k1", "ken", "2024-03-01T08:00:00Z", type="consent")
        kafka.send(deployment.topology.inputs[0], value, key=b"k" * 5000)
        kafka.send(deployment.topology.inputs[0], event("k2", "ken", "2024-03-01T08:00:01Z",
                                                        type="consent"), key=b"ken")  # fmt: skip
        kafka.flush()
        kafka.close()
        (letter,) = dead_letters(deployment, 1)
        assert letter["error_code"] == "key_too_large" and letter["_key"] is None
        wait_for(lambda: worker.metric("suppressor_events_total") >= 1, what="the good one")
    finally:
        assert worker.stop() == 0


def test_a_forged_watermark_far_ahead_is_refused(deployment: Deployment) -> None:
    worker = WorkerProcess(deployment, "mark").start()
    try:
        worker.wait_healthy()
        kafka: KafkaProducer = producer(deployment.bootstrap)
        future = str(int(time.time() * 1000) + 10 * 365 * 86_400_000).encode()
        kafka.send(
            deployment.topology.repartition,
            b"",
            partition=0,
            headers=[(SOURCE, b"1"), (WATERMARK, future)],
        )
        kafka.flush()
        kafka.close()
        (letter,) = dead_letters(deployment, 1)
        assert letter["error_code"] == "bad_internal_record"
        assert "max_future_skew" in letter["error"]
        stream_time = (worker.health() or {}).get("stream_time", {}).get("0")
        assert stream_time is None or stream_time < "2030"
    finally:
        assert worker.stop() == 0


def test_an_undecodable_changelog_value_starts_the_user_again(deployment: Deployment) -> None:
    topology = deployment.topology
    ensure_topics(deployment.bootstrap, topology.internal_topic_specs())
    user = topology.one_user_per_partition("mangled")[0]
    kafka: KafkaProducer = producer(deployment.bootstrap)
    kafka.send(topology.changelog("users"), b"\xff\x00 not a state", key=user.encode(),
               partition=topology.partition_for(user))  # fmt: skip
    kafka.flush()
    kafka.close()
    worker = WorkerProcess(deployment, "mangled").start()
    try:
        worker.wait_healthy()
        deployment.feed_events([event("m1", user, "2024-03-01T08:00:00Z", type="cart",
                                      action="add", item_id="paper-1")])  # fmt: skip
        wait_for(lambda: worker.metric("suppressor_events_total") >= 1, what="the event")
        wait_for(lambda: worker.metric("suppressor_unreadable_states_total") >= 1,
                 what="the unreadable state counted")  # fmt: skip
        assert worker.metric("suppressor_agent_crashes_total") == 0
        assert user not in worker.log_text()
        worker.assert_alive()
    finally:
        assert worker.stop() == 0


# --- stopping --------------------------------------------------------------------------------


def _broker_pid() -> int | None:
    """The local test broker's pid, when this session started it (not an external one)."""
    for data_dir in BROKER_DATA_DIRS:
        pid_file = data_dir / "kafka.pid"
        if pid_file.exists():
            return int(pid_file.read_text().strip())
    return None


def test_a_stop_ends_within_the_bound_while_the_broker_hangs(
    deployment: Deployment,
) -> None:
    pid = _broker_pid()
    if pid is None:
        pytest.skip("needs the session's own local broker (it is paused for a few seconds)")
    worker = WorkerProcess(deployment, "bounded", SUPPRESSOR_SHUTDOWN_TIMEOUT="5").start()
    try:
        worker.wait_healthy()
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            assert worker.process is not None
            worker.process.send_signal(signal.SIGTERM)
            worker.process.wait(timeout=30)
            took = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        assert took < 5 + 5, f"the stop took {took:.1f} s with shutdown_timeout 5 s"
    finally:
        if worker.process is not None and worker.process.poll() is None:
            worker.kill()


# --- topics: retention and erasure on disk ---------------------------------------------------


def test_topics_get_their_retention_and_the_changelogs_a_compaction_lag(
    kafka_bootstrap: str, unique_topic_prefix: str, tmp_path: Path
) -> None:
    deployment = Deployment(
        kafka_bootstrap, unique_topic_prefix, tmp_path,
        extra={"dlq_retention": "3d", "decisions_retention": "10d",
               "changelog_compaction_lag": "2d"},
    )  # fmt: skip
    topology = deployment.topology
    day = 86_400_000
    assert topic_config(kafka_bootstrap, topology.dlq)["retention.ms"] == str(3 * day)
    assert topic_config(kafka_bootstrap, topology.decisions)["retention.ms"] == str(10 * day)
    worker = WorkerProcess(deployment, "topics").start()
    try:
        worker.wait_healthy()
        changelog = topic_config(kafka_bootstrap, topology.changelog("users"))
        assert changelog["max.compaction.lag.ms"] == str(2 * day)
        assert changelog["cleanup.policy"] == "compact"
    finally:
        assert worker.stop() == 0
