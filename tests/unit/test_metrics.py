"""suppressor.adapters.metrics: the worker's Prometheus metrics agree with replay's Tally, and
no label ever carries a user id, an item id or free text."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from suppressor.adapters.metrics import (
    ACTION_KINDS,
    ADMIN_OUTCOMES,
    DLQ_CODES,
    EXCLUSION_REASONS,
    FAILURE_STAGES,
    OTHER,
    REASONS,
    SUPPRESSION_REASONS,
    TRANSACTION_OPERATIONS,
    TRIGGERS,
    Metrics,
    MetricsObserver,
    judge_health,
)
from suppressor.core.codec import event_from_wire
from suppressor.core.engine import Outcome
from suppressor.core.policy import load_policy
from suppressor.core.replay.files import load_catalog, numbered_lines
from suppressor.core.replay.run import replay
from suppressor.core.tally import Tally
from suppressor.wire.events import EVENT_TYPES, parse_event
from suppressor.wire.outputs import DeadLetter, SourcePosition
from suppressor.wire.timefmt import parse_to_ms

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
UNTIL = "2025-03-04T00:00:00Z"
OTHER_LABELS = {"le", "implementation", "major", "minor", "patchlevel", "version", "generation"}


class Clock:
    def __init__(self, wall: float = 1_750_000_000.0, mono: float = 100.0) -> None:
        self.wall, self.mono = wall, mono

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


def new_metrics(clock: Clock | None = None, **kw: Any) -> Metrics:
    clock = clock or Clock()
    return Metrics(CollectorRegistry(), wall=clock.time, monotonic=clock.monotonic, **kw)


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the text exposition: (name, sorted labels) -> value."""
    text = metrics.render().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def counter(metrics: Metrics, name: str, *labels: str) -> Counter[Any]:
    """A counter's non-zero values keyed like Tally's counters (one label: the value)."""
    found: Counter[Any] = Counter()
    for (sample, pairs), value in samples(metrics).items():
        if sample != name or not value:
            continue
        as_dict = dict(pairs)
        key = tuple(as_dict[label] for label in labels)
        found[key[0] if len(key) == 1 else key] += int(value)
    return found


@dataclass
class MetricsSink:
    """A replay sink that feeds the metrics, as the worker's shell does after sending."""

    metrics: Metrics

    def write(self, out: Outcome, policy_version: str) -> None:
        self.metrics.observe_output(out, started=self.metrics._monotonic())

    def dead_letter(self, dead: DeadLetter) -> None:
        self.metrics.observe_dead_letter(dead.error_code)


def demo_replay(metrics: Metrics) -> Tally:
    policy = load_policy(EXAMPLES / "policy.toml")
    catalog, bad = load_catalog(str(EXAMPLES / "catalog.jsonl"))
    assert not bad
    with open(EXAMPLES / "events.jsonl", "rb") as handle:
        lines = list(numbered_lines(handle))
    for number, raw in lines:  # the worker counts each good event as it reads it
        parsed = parse_event(raw, SourcePosition(file="events.jsonl", line=number))
        if not isinstance(parsed, DeadLetter):
            event = event_from_wire(parsed)
            metrics.observe_event(event.type, event.ts)
    return replay(
        lines,
        policy,
        catalog,
        MetricsSink(metrics),
        source_name="events.jsonl",
        until=parse_to_ms(UNTIL),
    )


def test_counts_after_the_demo_replay_equal_its_tally() -> None:
    metrics = new_metrics()
    tally = demo_replay(metrics)

    assert sum(tally.actions.values()) > 0 and sum(tally.dlq.values()) > 0  # a real check
    assert counter(metrics, "suppressor_events_total", "type") == tally.events
    assert counter(metrics, "suppressor_actions_total", "kind") == tally.actions
    assert counter(metrics, "suppressor_suppressed_total", "trigger", "reason") == tally.suppressed
    assert counter(metrics, "suppressor_exclusions_total", "reason") == tally.exclusions
    assert counter(metrics, "suppressor_dlq_total", "code") == tally.dlq
    found = samples(metrics)
    assert found["suppressor_late_events_total", ()] == tally.late_events
    assert found["suppressor_erasures_total", ()] == tally.erasures
    assert found["suppressor_decision_seconds_count", ()] > 0
    assert found["suppressor_event_lag_seconds_count", ()] == sum(tally.events.values())


def test_no_label_holds_a_user_id_an_item_id_or_free_text() -> None:
    metrics = new_metrics()
    demo_replay(metrics)
    metrics.set_stream_time(3, parse_to_ms(UNTIL))
    personal: set[str] = set()
    for path in ("events.jsonl", "catalog.jsonl"):
        for line in (EXAMPLES / path).read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                for key in ("user_id", "item_id", "event_id", "order_id", "title"):
                    if isinstance(record.get(key), str):
                        personal.add(record[key])
    assert len(personal) > 20

    allowed = {
        "type": {*EVENT_TYPES, OTHER},
        "kind": {*ACTION_KINDS, OTHER},
        "trigger": {*TRIGGERS, OTHER},
        "reason": {*REASONS, OTHER},
        "code": {*DLQ_CODES, OTHER},
        "stage": {*FAILURE_STAGES, OTHER},
        "operation": {*TRANSACTION_OPERATIONS, OTHER},
        "outcome": {*ADMIN_OUTCOMES, OTHER},
        "group": {"treated", "holdout"},
        "converted": {"true", "false"},
    }
    for (name, labels), _ in samples(metrics).items():
        for label, value in labels:
            assert value not in personal, (name, label, value)
            if label in allowed:
                assert value in allowed[label], (name, label, value)
            elif label == "partition":
                assert value.isdigit()
            else:  # histogram buckets, python_info, gc generation
                assert label in OTHER_LABELS, (name, label)


def test_every_series_starts_at_zero_so_rates_exist_before_the_first_occurrence() -> None:
    found = samples(new_metrics())
    for event_type in EVENT_TYPES:
        assert found["suppressor_events_total", (("type", event_type),)] == 0
    for kind in ACTION_KINDS:
        assert found["suppressor_actions_total", (("kind", kind),)] == 0
    for trigger, reasons in SUPPRESSION_REASONS.items():
        for reason in reasons:
            assert reason in REASONS
            key = ("suppressor_suppressed_total", (("reason", reason), ("trigger", trigger)))
            assert found[key] == 0
    for reason in EXCLUSION_REASONS:
        assert reason in REASONS
        assert found["suppressor_exclusions_total", (("reason", reason),)] == 0
    for code in DLQ_CODES:
        assert found["suppressor_dlq_total", (("code", code),)] == 0
    assert found["suppressor_late_events_total", ()] == 0
    assert found["suppressor_users", ()] == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",
        b"not json",
        b"[1, 2]",
        b'{"event_id": "e", "user_id": "u", "ts": "2025-01-01T00:00:00Z"}',
        b'{"event_id": "e", "type": "teleport", "user_id": "u", "ts": "2025-01-01T00:00:00Z"}',
        b'{"event_id": "e", "type": "browse", "user_id": "u", "ts": "yesterday", "item_id": "i"}',
        b'{"event_id": "e", "type": "browse", "user_id": "u", "ts": "2025-01-01T00:00:00Z"}',
        b'{"event_id": "e", "type": "review", "user_id": "u", "ts": "2025-01-01T00:00:00Z",'
        b' "item_id": "i", "rating": 9}',
        b"x" * 2_000_000,
    ],
)
def test_every_code_the_parser_gives_is_in_the_dead_letter_vocabulary(raw: bytes) -> None:
    parsed = parse_event(raw, SourcePosition(topic="events.browse", partition=0, offset=1))
    assert isinstance(parsed, DeadLetter)
    assert parsed.error_code in DLQ_CODES


def test_values_outside_the_vocabularies_are_counted_as_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = new_metrics()
    with caplog.at_level(logging.WARNING, logger="suppressor.adapters.metrics"):
        metrics.observe_dead_letter("user-42 sent garbage")
        metrics.observe_dead_letter("user-42 sent garbage")
        metrics.observe_event("teleport", 0)
        metrics.observe_transaction_error("exploded")
    found = samples(metrics)
    assert found["suppressor_dlq_total", (("code", OTHER),)] == 2
    assert found["suppressor_events_total", (("type", OTHER),)] == 1
    assert found["suppressor_transaction_errors_total", (("operation", OTHER),)] == 1
    assert not any("user-42" in str(labels) for _, labels in found)
    assert len([r for r in caplog.records if "user-42" in r.getMessage()]) == 1  # warned once


def test_event_lag_and_decision_latency() -> None:
    clock = Clock(wall=1_000.0, mono=50.0)
    metrics = new_metrics(clock)
    metrics.observe_event("browse", 990_000)  # event time 10 s before the wall clock
    metrics.observe_event("browse", 2_000_000)  # from the future: lag 0, not negative
    started = clock.mono
    clock.mono += 0.003
    from tests.unit.conftest import browse, run

    out = Outcome(decisions=run(browse("ams")).decisions)
    metrics.observe_output(out, started)
    metrics.observe_output(Outcome(), started)  # no decisions: no latency sample
    found = samples(metrics)
    assert found["suppressor_event_lag_seconds_count", ()] == 2
    assert found["suppressor_event_lag_seconds_sum", ()] == pytest.approx(10.0)
    assert found["suppressor_event_lag_seconds_bucket", (("le", "10.0"),)] == 2
    assert found["suppressor_decision_seconds_count", ()] == 1
    assert found["suppressor_decision_seconds_sum", ()] == pytest.approx(0.003)
    assert found["suppressor_decision_seconds_bucket", (("le", "0.005"),)] == 1


def test_stream_time_per_partition_gauges_and_revoked_partitions() -> None:
    metrics = new_metrics()
    metrics.set_stream_time(0, 1_740_000_000_000)
    metrics.set_stream_time(5, 1_740_000_060_000)
    metrics.set_stream_time(7, -(2**62))  # nothing known yet: no series
    found = samples(metrics)
    assert found["suppressor_stream_time_seconds", (("partition", "0"),)] == 1_740_000_000
    assert found["suppressor_stream_time_seconds", (("partition", "5"),)] == 1_740_000_060
    assert ("suppressor_stream_time_seconds", (("partition", "7"),)) not in found
    metrics.forget_partitions({5})
    found = samples(metrics)
    assert ("suppressor_stream_time_seconds", (("partition", "5"),)) not in found
    metrics.set_users(12)
    metrics.set_open_baskets(3)
    found = samples(metrics)
    assert found["suppressor_users", ()] == 12
    assert found["suppressor_open_baskets", ()] == 3


def test_worker_observer_adapter() -> None:
    from tests.unit.conftest import add, purchase, run

    clock = Clock(wall=1_735_700_000.0)
    metrics = new_metrics(clock)
    observer = MetricsObserver(metrics)
    events = [add("shredder-1", ts=0), purchase("shredder-1", ts=5)]
    result = run(*events, until=120)

    @dataclass
    class Runtime:
        partition: int
        processor: Any

    @dataclass
    class RecordOutcome:
        outcome: Outcome
        stream_time: int
        unreadable: int = 0

    for event in events:
        observer.on_event(2, event, None)
    runtime = Runtime(2, result.processor)
    started = metrics._monotonic() - 0.003  # the record taken in hand 3 ms ago
    observer.on_work(
        runtime, RecordOutcome(Outcome(result.decisions, result.actions), events[-1].ts), started
    )
    observer.on_chunk_done()  # counted once per chunk
    assert samples(metrics)["suppressor_decision_seconds_count", ()] == 1
    assert samples(metrics)["suppressor_decision_seconds_sum", ()] >= 0.003
    assert samples(metrics)["suppressor_users", ()] == result.processor.users == 1
    observer.on_dead_letter(
        DeadLetter(
            original="x",
            encoding="text",
            source=SourcePosition(),
            error_code="not_json",
            error="not valid JSON",
        )
    )
    found = samples(metrics)
    assert found["suppressor_events_total", (("type", "cart"),)] == 1
    assert found["suppressor_events_total", (("type", "purchase"),)] == 1
    assert found["suppressor_actions_total", (("kind", "similar_item"),)] == len(result.actions)
    assert found["suppressor_dlq_total", (("code", "not_json"),)] == 1
    assert found["suppressor_stream_time_seconds", (("partition", "2"),)] == events[-1].ts / 1000
    assert found["suppressor_decision_seconds_count", ()] == 1
    assert found["suppressor_last_progress_timestamp_seconds", ()] == clock.wall


# --- faust: its sensor metrics on the same registry, transaction errors, health ------------


def test_faust_sensor_metrics_share_the_registry_without_duplicates() -> None:
    faust = pytest.importorskip("faust")
    metrics = new_metrics()
    app = faust.App("metrics-test", broker="kafka://localhost:1", web_enabled=False)
    try:
        metrics.bind_app(app)
        metrics.bind_app(app)  # idempotent: no "Duplicated timeseries" error
        assert app.monitor is metrics.faust_monitor()
        text = metrics.render().decode()
        assert "suppressor_faust_messages_received_total" in text
        assert "suppressor_faust_consumer_commit_latency" in text
        assert "suppressor_events_total" in text
        assert "suppressor_consumer_lag" in text
        assert "suppressor_recovery_in_progress 0.0" in text
        # not started yet: starting, not ready, but alive
        health = metrics.health()
        assert (health.status, health.ready, health.live) == ("starting", False, True)
        assert health.http_status == 503 and health.live_http_status == 200
    finally:
        metrics.unbind()


def test_transaction_failures_faust_logs_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    metrics = new_metrics()
    app = type("App", (), {"monitor": None})()
    metrics.bind_app(app)
    caplog.set_level(logging.INFO, logger="faust")  # the worker's default log level is info
    try:
        driver = logging.getLogger("faust.transport.drivers.aiokafka")
        driver.warning("Exception in commit_transaction for transaction t-1 exception boom")
        driver.warning("Exception in begin_transaction for transaction t-1 exception boom")
        driver.info("Current Producer for transaction t-1 fenced")
        logging.getLogger("faust.transport.consumer").warning("ProducerFenced boom")
        driver.error("Committing raised exception: %r", RuntimeError("x"))
        driver.warning("an unrelated warning")
        metrics.faust_monitor().on_send_error(None, RuntimeError("x"), 0.0)
    finally:
        metrics.unbind()
    logging.getLogger("faust.transport.drivers.aiokafka").warning("Exception in commit_transaction")
    found = samples(metrics)

    def errors(operation: str) -> float:
        return found["suppressor_transaction_errors_total", (("operation", operation),)]

    assert errors("commit") == 1  # the one after unbind() is not counted
    assert errors("begin") == 1
    assert errors("fenced") == 2
    assert errors("offset_commit") == 1
    assert errors("send") == 1
    assert errors("abort") == 0
    assert found["suppressor_faust_total_error_messages_sent_total", ()] == 1


@pytest.mark.parametrize(
    ("kw", "status", "ready", "live"),
    [
        (dict(started=False), "starting", False, True),
        (dict(recovering=True), "recovering", False, True),
        (dict(rebalancing=True), "rebalancing", False, True),
        (dict(), "ok", True, True),
        (dict(seconds_since_progress=500.0), "stalled", False, False),
        (dict(seconds_since_progress=None), "stalled", False, False),
        (dict(seconds_since_progress=500.0, recovering=True), "recovering", False, True),
        (dict(seconds_since_progress=None, assigned_partitions=()), "ok", True, True),
    ],
)
def test_health_rules(kw: dict[str, Any], status: str, ready: bool, live: bool) -> None:
    args: dict[str, Any] = dict(
        started=True,
        rebalancing=False,
        recovering=False,
        assigned_partitions=(3, 1),
        seconds_since_progress=1.0,
        stall_after=120.0,
    )
    args.update(kw)
    health = judge_health(**args)
    assert (health.status, health.ready, health.live) == (status, ready, live)
    body = health.body()
    assert body["status"] == status
    assert body["assigned"] == bool(args["assigned_partitions"])
    assert body["recovered"] == (kw.get("started", True) and not kw.get("recovering", False))
    json.dumps(body)


def test_health_of_a_bound_app_reads_assignment_recovery_and_progress() -> None:
    clock = Clock(mono=1_000.0)
    metrics = new_metrics(clock, stall_after=60.0)

    @dataclass(frozen=True)
    class TP:
        topic: str
        partition: int

    class Consumer:
        def assignment(self) -> set[TP]:
            return {TP("events.cart", 1), TP("events.browse", 1), TP("catalog", 0)}

        def highwater(self, tp: TP) -> int:
            return 100

    class Recovery:
        def active_remaining_total(self) -> int:
            return 42

    class App:
        consumer = Consumer()
        tables = type("Tables", (), {"recovery": Recovery()})()
        in_recovery = True
        rebalancing = False
        monitor: Any = None

    app = App()
    metrics.bind_app(app, topics={"events.cart", "events.browse"})
    try:
        metrics.faust_monitor().rebalances_completed = 1
        metrics.faust_monitor().tp_read_offsets[TP("events.cart", 1)] = 89
        assert metrics.health().status == "recovering"
        found = samples(metrics)
        assert found["suppressor_recovery_in_progress", ()] == 1
        assert found["suppressor_recovery_remaining_records", ()] == 42
        assert found["suppressor_assigned_partitions", ()] == 1
        lag = ("suppressor_consumer_lag", (("partition", "1"), ("topic", "events.cart")))
        assert found[lag] == 10

        app.in_recovery = False
        metrics.set_stream_time(1, 1_740_000_000_000)
        metrics.set_stream_time(4, 1_740_000_000_000)  # not assigned here (any more)
        found = samples(metrics)
        assert ("suppressor_stream_time_seconds", (("partition", "1"),)) in found
        assert ("suppressor_stream_time_seconds", (("partition", "4"),)) not in found
        assert metrics.health().status == "stalled"  # assigned, recovered, nothing processed
        metrics.faust_monitor().rebalance_ended_at = clock.mono  # just assigned: grace
        assert metrics.health().status == "ok"
        clock.mono += 61
        assert metrics.health().status == "stalled"
        metrics.observe_output(Outcome())
        health = metrics.health()
        assert (health.status, health.assigned_partitions, health.processing) == ("ok", (1,), True)
        clock.mono += 61
        assert metrics.health().status == "stalled"
    finally:
        metrics.unbind()


def test_treated_and_holdout_actions_and_conversions_are_counted_for_the_lift() -> None:
    from pathlib import Path

    from prometheus_client.parser import text_string_to_metric_families

    from suppressor.core.policy import load_policy
    from suppressor.core.replay.files import load_catalog, numbered_lines
    from suppressor.core.replay.run import CollectingSink, replay

    repo = Path(__file__).resolve().parents[2]
    catalog, _ = load_catalog(str(repo / "examples" / "catalog.jsonl"))
    policy = load_policy(repo / "examples" / "policy-holdout.toml")
    sink = CollectingSink()
    with (repo / "examples" / "events.jsonl").open("rb") as handle:
        tally = replay(numbered_lines(handle), policy, catalog, sink, until=1_900_000_000_000)
    metrics = Metrics(process_metrics=False)
    for out in sink.outputs:
        metrics.observe_output(out)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }
    for (kind, group, converted), n in tally.conversions.items():
        labels = (("converted", str(converted).lower()), ("group", group), ("kind", kind))
        assert samples["suppressor_conversions_total", labels] == n
    held = samples[
        "suppressor_measured_actions_total", (("group", "holdout"), ("kind", "similar_item"))
    ]
    assert held == tally.suppressed["similar_item", "holdout"]
