"""Prometheus metrics of a worker, on a registry of their own, served at ``/metrics``.

Counting lives in the shell around the engine, never inside it: the worker calls
``Metrics`` with what the engine returned (an ``Outcome``), with the events it read,
and with the dead letters it wrote. The counters match ``suppressor.core.tally.Tally``
one for one, so a replay's summary line and the worker's metrics agree on the
same input (tests/unit/test_metrics.py checks it).

Privacy (SPEC section 8): no label ever holds a user id, an item id or free text.
Every label value comes from a fixed vocabulary (event types, action kinds,
triggers, reason codes, dead-letter codes, transaction operations), or is a
partition number or a configured topic name; anything else is counted as
``other`` and logged once.

Besides the counters, ``bind_app`` adds, on the same registry:

- faust's own sensor metrics (``faust.sensors.prometheus``), prefixed
  ``suppressor_faust_`` - messages in, events, commit latency, send latency,
  rebalances, table operations - registered once;
- values read from the app at scrape time: assigned partitions, consumer lag per
  topic partition, table recovery in progress and its remaining changelog records;
- ``suppressor_transaction_errors_total``, fed by faust's send-error sensor hook
  and by the warnings faust logs (and otherwise swallows) when a Kafka
  transaction cannot begin, commit or abort, or when its producer is fenced.

``health`` answers the worker's ``/health`` (readiness: assigned, recovered,
processing) and ``/health/live`` (liveness: not stalled) pages.

``suppressor.adapters.app.build_app`` creates one ``Metrics`` per app, binds it, feeds it
through ``MetricsObserver`` and serves it on the web port; the Faust-specific reading
(the sensor, log lines, app state) is in ``suppressor.adapters.faust_internals.sensors``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as CounterOf
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from suppressor.adapters.faust_internals.sensors import (
    TransactionErrorLog,
    consumer_lag,
    install_monitor,
    new_monitor,
    read_app,
)
from suppressor.core import rules
from suppressor.core.engine import Outcome
from suppressor.wire.events import EVENT_TYPES
from suppressor.wire.outputs import ActionKind, ReasonCode, Trigger

if TYPE_CHECKING:
    from suppressor.core.model import Event
    from suppressor.wire.outputs import DeadLetter

log = logging.getLogger(__name__)

NAMESPACE = "suppressor"
FAUST_PREFIX = "suppressor_faust"
OTHER = "other"

# --- the label vocabularies ------------------------------------------------------------

ACTION_KINDS: tuple[str, ...] = get_args(ActionKind)
TRIGGERS: tuple[str, ...] = get_args(Trigger)
REASONS: tuple[str, ...] = get_args(ReasonCode)


# What each trigger can be suppressed for (SPEC section 4). Every pair starts at 0 so
# that rate() and the dashboard see a series before the first occurrence; a pair not
# listed here is still counted when the engine produces it.
def _codes(table: Iterable[tuple[str, Any]]) -> tuple[str, ...]:
    return tuple(reason for reason, _ in table)


SUPPRESSION_REASONS: Mapping[str, tuple[str, ...]] = {
    "browse_nudge": ("browse_nudge",),
    "product_ad": ("product_ad", *_codes(rules.PRODUCT_AD_REASONS)),
    "similar_item": (*_codes(rules.SIMILAR_ITEM_GUARDS), "holdout"),
    "basket_recovery": (*_codes(rules.BASKET_RECOVERY_GUARDS), "holdout"),
}
EXCLUSION_REASONS: tuple[str, ...] = tuple(
    dict.fromkeys(("seed", *_codes(rules.CANDIDATE_EXCLUSIONS), *_codes(rules.BASKET_EXCLUSIONS)))
)
# DeadLetter.error_code values: suppressor.wire.events.parse_event (input events),
# suppressor.core.replay.files and suppressor.adapters.catalog_reader (catalog records).
DLQ_CODES: tuple[str, ...] = (
    "too_large",
    "not_utf8",
    "not_json",
    "not_object",
    "missing_type",
    "unknown_type",
    "missing_field",
    "bad_timestamp",
    "invalid_field",
    "future_timestamp",
    "bad_catalog_item",
    "invalid_catalog_item",
    "key_mismatch",
    "bad_internal_record",
    "key_too_large",
    "internal_error",
    "state_too_large",
)
# Processing failures the worker went on after (suppressor.adapters.pipeline): code and stage.
FAILURE_CODES: tuple[str, ...] = ("internal_error", "state_too_large")
FAILURE_STAGES: tuple[str, ...] = ("record", "event", "deadline")
# Kafka transaction / delivery failures (exactly-once); see TransactionErrorLog.
TRANSACTION_OPERATIONS: tuple[str, ...] = (
    "begin",  # a transaction could not begin
    "commit",  # a transaction (outputs + changelogs + input offsets) could not commit
    "abort",  # a transaction could not be aborted
    "fenced",  # another producer with our transactional id took over (zombie fencing)
    "send",  # a record could not be produced
    "offset_commit",  # a consumer offset commit failed (at-least-once)
)

# Requests to the admin path (suppressor.adapters.admin_path), by outcome; never by user.
ADMIN_OUTCOMES: tuple[str, ...] = (
    "ok",  # answered: the person's state
    "not_found",  # answered: no state held about that user id
    "unauthorized",  # no token, or a wrong one: 401
    "forwarded",  # passed on to the worker that owns the person's partition
    "unavailable",  # that worker unknown, unreachable or recovering: 503, retry
    "error",  # a bug: 500
)

# --- buckets -----------------------------------------------------------------------------

DECISION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
LAG_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    21600.0,
    86400.0,
)


def _checked(value: str, vocabulary: Iterable[str], what: str, warned: set[str]) -> str:
    if value in vocabulary:
        return value
    key = f"{what}:{value[:40]}"
    if key not in warned:
        warned.add(key)
        log.warning("metrics: %s %r is not in the fixed vocabulary; counted as %r",
                    what, value[:40], OTHER)  # fmt: skip
    return OTHER


# --- health --------------------------------------------------------------------------------

HealthStatus = Literal["ok", "starting", "rebalancing", "recovering", "stalled"]


@dataclass(frozen=True)
class Health:
    """What ``/health`` says. Ready only when ``ok``; alive unless ``stalled``."""

    status: HealthStatus
    assigned_partitions: tuple[int, ...]
    recovered: bool
    processing: bool
    seconds_since_progress: float | None

    @property
    def ready(self) -> bool:
        return self.status == "ok"

    @property
    def live(self) -> bool:
        return self.status != "stalled"

    @property
    def http_status(self) -> int:
        """For the readiness page ``/health``: 200 when ready, else 503."""
        return 200 if self.ready else 503

    @property
    def live_http_status(self) -> int:
        """For the liveness page ``/health/live``: 200 unless stalled, else 503."""
        return 200 if self.live else 503

    def body(self) -> dict[str, Any]:
        since = self.seconds_since_progress
        return {
            "status": self.status,
            "ready": self.ready,
            "assigned": bool(self.assigned_partitions),
            "assigned_partitions": list(self.assigned_partitions),
            "recovered": self.recovered,
            "processing": self.processing,
            "seconds_since_progress": None if since is None else round(since, 3),
        }


def judge_health(
    *,
    started: bool,
    rebalancing: bool,
    recovering: bool,
    assigned_partitions: Iterable[int],
    seconds_since_progress: float | None,
    stall_after: float,
) -> Health:
    """The health rules, pure.

    starting     the consumer has not finished its first rebalance yet
    recovering   tables are being restored from their changelogs
    rebalancing  partitions are moving between workers
    stalled      partitions are assigned and recovered, but no event or tick has been
                 processed for ``stall_after`` seconds (the agent is stuck): restart it
    ok           otherwise - also with no partition assigned (more workers than
                 partitions: nothing to do is not a fault)
    """
    partitions = tuple(sorted(set(assigned_partitions)))
    recovered = started and not recovering
    stalled = (
        recovered
        and not rebalancing
        and bool(partitions)
        and (seconds_since_progress is None or seconds_since_progress > stall_after)
    )
    status: HealthStatus
    if not started:
        status = "starting"
    elif recovering:
        status = "recovering"
    elif rebalancing:
        status = "rebalancing"
    elif stalled:
        status = "stalled"
    else:
        status = "ok"
    processing = status == "ok" or status == "rebalancing"
    return Health(status, partitions, recovered, processing, seconds_since_progress)


# --- the metrics ---------------------------------------------------------------------------


class Metrics:
    """The worker's metrics. One instance per process; thread-safe like prometheus-client.

    ``wall`` and ``monotonic`` are the clocks (replaceable in tests).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        process_metrics: bool = True,
        stall_after: float = 120.0,
        wall: Any = time.time,
        monotonic: Any = time.monotonic,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.stall_after = stall_after
        self._wall = wall
        self._monotonic = monotonic
        self._warned: set[str] = set()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._lock = threading.Lock()
        self._stream_time: dict[int, float] = {}
        self._state_counts: dict[int, tuple[int, int, int]] = {}
        self._last_progress: float | None = None
        self._app: Any = None
        self._topics: frozenset[str] | None = None
        self._monitor: Any = None
        self._error_log: TransactionErrorLog | None = None
        r = self.registry

        self.events = Counter(
            "suppressor_events", "Good input events read, by event type", ["type"], registry=r
        )
        self.actions = Counter(
            "suppressor_actions", "Actions emitted to the actions topic, by kind", ["kind"],
            registry=r,
        )  # fmt: skip
        self.suppressed = Counter(
            "suppressor_suppressed",
            "Triggers considered and suppressed, by trigger and reason code",
            ["trigger", "reason"],
            registry=r,
        )
        self.exclusions = Counter(
            "suppressor_exclusions",
            "Candidate items filtered out of an action, by reason code",
            ["reason"],
            registry=r,
        )
        self.dlq = Counter(
            "suppressor_dlq", "Records sent to the dead-letter topic, by error code", ["code"],
            registry=r,
        )  # fmt: skip
        self.late = Counter(
            "suppressor_late_events",
            "Events older than stream time minus grace when read (state updated, no retraction)",
            registry=r,
        )
        self.erasures = Counter(
            "suppressor_erasures", "Users whose state a forget event erased", registry=r
        )
        self.transaction_errors = Counter(
            "suppressor_transaction_errors",
            "Kafka transaction / delivery failures (exactly-once), by operation",
            ["operation"],
            registry=r,
        )
        self.failures = Counter(
            "suppressor_processing_failures",
            "Records or users' steps whose processing failed and was skipped (the worker "
            "went on), by code and stage: record, event (its event went to the DLQ) or "
            "deadline (another user's due deadlines: they wait for the user's next event)",
            ["code", "stage"],
            registry=r,
        )
        self.agent_crashes = Counter(
            "suppressor_agent_crashes",
            "Times the agent stopped on an error and Faust restarted it",
            registry=r,
        )
        self.unreadable_states = Counter(
            "suppressor_unreadable_states",
            "Stored user states that could not be decoded (the user started again as new)",
            registry=r,
        )
        self.measured_actions = Counter(
            "suppressor_measured_actions",
            "Actions that passed every guard, by kind and group: treated (sent) or holdout "
            "(held back for measurement); the denominators of the conversion rates",
            ["kind", "group"],
            registry=r,
        )
        self.conversions = Counter(
            "suppressor_conversions",
            "Attribution windows closed, by kind, group and whether an offered item was bought",
            ["kind", "group", "converted"],
            registry=r,
        )
        self.admin_requests = Counter(
            "suppressor_admin_requests",
            "Requests to the admin path /admin/users/ID (a person's state), by outcome: ok, "
            "not_found, unauthorized, forwarded (to the worker that owns the person), "
            "unavailable, error",
            ["outcome"],
            registry=r,
        )
        self.decision_seconds = Histogram(
            "suppressor_decision_seconds",
            "Wall time from taking an event (or tick) in hand to its decisions being sent",
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.send_latency = Histogram(
            "suppressor_send_latency_seconds",
            "Seconds from a record's send to its delivery (acked by the broker), one send "
            "in 64 timed",
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.event_lag = Histogram(
            "suppressor_event_lag_seconds",
            "Wall clock minus event time of each good event when read",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.users = Gauge(
            "suppressor_users", "Users with state on this worker's partitions", registry=r
        )
        self.open_baskets = Gauge(
            "suppressor_open_baskets",
            "Baskets with a pending recovery deadline on this worker's partitions",
            registry=r,
        )
        self.pending_similar = Gauge(
            "suppressor_pending_similar_items",
            "Users with a similar-item message pending (due similar_after after its first "
            "seed) on this worker's partitions",
            registry=r,
        )
        self.last_progress = Gauge(
            "suppressor_last_progress_timestamp_seconds",
            "Unix time the worker last processed an event or a tick",
            registry=r,
        )
        r.register(_ScrapeTimeCollector(self))
        if process_metrics:  # process_* (memory, cpu, start time), python_info, gc
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self._initialise_series()

    def _labelled(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once: prometheus-client checks and hashes
        the label values on every ``labels`` call, which the worker made several times per
        record. The label values come from fixed vocabularies, so this stays small."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def _initialise_series(self) -> None:
        for event_type in EVENT_TYPES:
            self.events.labels(event_type)
        for kind in ACTION_KINDS:
            self.actions.labels(kind)
        for trigger, reasons in SUPPRESSION_REASONS.items():
            for reason in reasons:
                self.suppressed.labels(trigger, reason)
        for reason in EXCLUSION_REASONS:
            self.exclusions.labels(reason)
        for code in DLQ_CODES:
            self.dlq.labels(code)
        for operation in TRANSACTION_OPERATIONS:
            self.transaction_errors.labels(operation)
        for code in FAILURE_CODES:
            for stage in FAILURE_STAGES:
                self.failures.labels(code, stage)
        for outcome in ADMIN_OUTCOMES:
            self.admin_requests.labels(outcome)
        for kind in ACTION_KINDS:
            for group in ("treated", "holdout"):
                self.measured_actions.labels(kind, group)
                for converted in ("true", "false"):
                    self.conversions.labels(kind, group, converted)

    # --- what the worker calls ---------------------------------------------------------

    def observe_event(self, event_type: str, event_ts_ms: int, now: float | None = None) -> None:
        """A good event was read; ``now`` is the wall clock in seconds (default: time.time())."""
        checked = _checked(event_type, EVENT_TYPES, "event type", self._warned)
        self._labelled(self.events, checked).inc()
        wall = self._wall() if now is None else now
        self.event_lag.observe(max(0.0, wall - event_ts_ms / 1000))

    def observe_output(self, output: Outcome, started: float | None = None) -> None:
        """What the engine returned for one event or tick (or a batch of them, merged),
        once it has been sent. Counts are gathered first and each labelled counter is
        incremented once.

        ``started``: ``time.monotonic()`` when the worker took the event in hand; the
        decision latency is observed when the output holds decisions.
        """
        warned = self._warned
        counts: CounterOf[tuple[int, tuple[str, ...]]] = CounterOf()
        actions, suppressed, exclusions = id(self.actions), id(self.suppressed), id(self.exclusions)
        measured, conversions = id(self.measured_actions), id(self.conversions)
        for action in output.actions:
            counts[actions, (action.kind,)] += 1
        for decision in output.decisions:
            if decision.reason is not None:
                counts[suppressed, (decision.trigger, decision.reason)] += 1
            for _, reason in decision.excluded:
                counts[exclusions, (reason,)] += 1
            if decision.action_id is not None:  # emitted, or held out
                group = "holdout" if decision.reason == "holdout" else "treated"
                counts[measured, (decision.trigger, group)] += 1
        for conversion in output.conversions:
            group = "holdout" if conversion.held_out else "treated"
            converted = "true" if conversion.converted_at is not None else "false"
            counts[conversions, (conversion.kind, group, converted)] += 1
        vocabularies = {
            actions: (self.actions, ((ACTION_KINDS, "action kind"),)),
            suppressed: (self.suppressed, ((TRIGGERS, "trigger"), (REASONS, "reason"))),
            exclusions: (self.exclusions, ((REASONS, "exclusion"),)),
            measured: (
                self.measured_actions,
                ((ACTION_KINDS, "action kind"), (("treated", "holdout"), "group")),
            ),
            conversions: (
                self.conversions,
                ((ACTION_KINDS, "action kind"), (("treated", "holdout"), "group"),
                 (("true", "false"), "converted")),
            ),
        }  # fmt: skip
        for (metric_id, values), n in counts.items():
            metric, checks = vocabularies[metric_id]
            labels = tuple(
                _checked(value, vocabulary, what, warned)
                for value, (vocabulary, what) in zip(values, checks, strict=True)
            )
            self._labelled(metric, *labels).inc(n)
        if output.late_events:
            self.late.inc(output.late_events)
        if output.erased:
            self.erasures.inc(len(output.erased))
        if started is not None and output.decisions:
            self.decision_seconds.observe(max(0.0, self._monotonic() - started))
        self.mark_progress()

    def observe_dead_letter(self, code: str) -> None:
        self._labelled(self.dlq, _checked(code, DLQ_CODES, "dead-letter code", self._warned)).inc()

    def observe_failure(self, code: str, stage: str) -> None:
        warned = self._warned
        checked = (
            _checked(code, FAILURE_CODES, "failure code", warned),
            _checked(stage, FAILURE_STAGES, "failure stage", warned),
        )
        self._labelled(self.failures, *checked).inc()

    def observe_admin_request(self, outcome: str) -> None:
        checked = _checked(outcome, ADMIN_OUTCOMES, "admin outcome", self._warned)
        self._labelled(self.admin_requests, checked).inc()

    def observe_transaction_error(self, operation: str) -> None:
        self.transaction_errors.labels(
            _checked(operation, TRANSACTION_OPERATIONS, "transaction operation", self._warned)
        ).inc()

    def set_stream_time(self, partition: int, ms: int) -> None:
        """Stream time of a partition (epoch ms); values <= 0 mean "not known yet"."""
        if ms > 0:
            with self._lock:
                self._stream_time[int(partition)] = ms / 1000

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Revoked partitions: their per-partition series go (another worker owns them)."""
        with self._lock:
            for partition in partitions:
                self._stream_time.pop(int(partition), None)
                self._state_counts.pop(int(partition), None)
            self._publish_state_counts()

    def set_partition_state(
        self, partition: int, users: int, open_baskets: int, pending_similar: int = 0
    ) -> None:
        """A partition's users, armed basket reminders and pending similar items; the gauges
        show this worker's sum."""
        with self._lock:
            self._state_counts[int(partition)] = (users, open_baskets, pending_similar)
            self._publish_state_counts()

    def _publish_state_counts(self) -> None:
        counts = self._state_counts.values()
        self.users.set(sum(users for users, _, _ in counts))
        self.open_baskets.set(sum(baskets for _, baskets, _ in counts))
        self.pending_similar.set(sum(similar for _, _, similar in counts))

    def set_users(self, n: int) -> None:
        self.users.set(n)

    def set_open_baskets(self, n: int) -> None:
        self.open_baskets.set(n)

    def mark_progress(self, now: float | None = None) -> None:
        """An event or a tick was processed (``observe_output`` calls this)."""
        self._last_progress = self._monotonic() if now is None else now
        self.last_progress.set(self._wall())

    # --- faust ---------------------------------------------------------------------------

    def faust_monitor(self) -> Any:
        """faust's Prometheus sensor on this registry (created once): ``app.monitor = ...``."""
        if self._monitor is None:
            self._monitor = new_monitor(self.registry, FAUST_PREFIX, self)
        return self._monitor

    def bind_app(self, app: Any, topics: Iterable[str] | None = None) -> None:
        """Attach to a faust app before it starts (idempotent).

        Installs the faust sensor as ``app.monitor``, starts counting the transaction
        failures faust logs, and reads assignment, lag and recovery from ``app`` at
        scrape time. ``topics``: the data topics whose partitions count as "assigned"
        for health (default: every assigned topic).
        """
        self._app = app
        self._topics = frozenset(topics) if topics is not None else None
        install_monitor(app, self.faust_monitor())
        if self._error_log is None:
            self._error_log = TransactionErrorLog(self)
            logging.getLogger("faust").addHandler(self._error_log)

    def unbind(self) -> None:
        """Undo ``bind_app``'s logging hook (tests, or a process that builds several apps)."""
        if self._error_log is not None:
            logging.getLogger("faust").removeHandler(self._error_log)
            self._error_log = None
        self._app = None

    def health(self, now: float | None = None) -> Health:
        """Health of the bound app. "Progress" is an event or tick processed, or the end of
        the last rebalance: a worker gets ``stall_after`` seconds after each assignment."""
        now = self._monotonic() if now is None else now
        moments = (self._last_progress, getattr(self._monitor, "rebalance_ended_at", None))
        known = [moment for moment in moments if moment is not None]
        since = max(0.0, now - max(known)) if known else None
        app_state = read_app(self._app, self._topics, self._monitor)
        return judge_health(
            started=app_state.started,
            rebalancing=app_state.rebalancing,
            recovering=app_state.recovering,
            assigned_partitions=app_state.partitions,
            seconds_since_progress=since,
            stall_after=self.stall_after,
        )

    # --- exposition ------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition format (content type ``Metrics.content_type``)."""
        return generate_latest(self.registry)

    def stream_times(self) -> dict[int, float]:
        with self._lock:
            return dict(self._stream_time)


class _ScrapeTimeCollector(Collector):
    """Series computed when scraped: stream time, assignment, lag, recovery."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Any]:
        return []  # unchecked names: collect() decides what exists

    def collect(self) -> Iterable[Any]:
        metrics = self._metrics
        state = read_app(metrics._app, metrics._topics, metrics._monitor)
        stream = GaugeMetricFamily(
            "suppressor_stream_time_seconds",
            "Stream time (event time, hybrid clock) of each partition this worker owns",
            labels=["partition"],
        )
        owned = set(state.partitions) if metrics._app is not None and state.started else None
        for partition, seconds in sorted(metrics.stream_times().items()):
            if owned is None or partition in owned:
                stream.add_metric([str(partition)], seconds)
        yield stream
        yield GaugeMetricFamily(
            "suppressor_assigned_partitions",
            "Partitions of the data topics assigned to this worker",
            value=len(state.partitions),
        )
        yield GaugeMetricFamily(
            "suppressor_rebalancing",
            "1 while a consumer-group rebalance (and the recovery after it) is in progress",
            value=1 if state.rebalancing else 0,
        )
        yield GaugeMetricFamily(
            "suppressor_recovery_in_progress",
            "1 while tables are being restored from their changelog topics",
            value=1 if state.recovering else 0,
        )
        yield GaugeMetricFamily(
            "suppressor_recovery_remaining_records",
            "Changelog records still to restore for active partitions (0 when recovered)",
            value=state.recovery_remaining or 0,
        )
        lag = GaugeMetricFamily(
            "suppressor_consumer_lag",
            "Records between the consumer's position and the end of each assigned partition",
            labels=["topic", "partition"],
        )
        if metrics._app is not None and state.started:
            try:
                for tp, behind in sorted(
                    consumer_lag(metrics._app, state.assignment, metrics._monitor),
                    key=lambda pair: (pair[0].topic, pair[0].partition),
                ):
                    lag.add_metric([tp.topic, str(tp.partition)], behind)
            except Exception:  # never break a scrape over faust internals
                log.debug("metrics: consumer lag unavailable", exc_info=True)
        yield lag


# --- an adapter for the worker's observer hooks ------------------------------------------


class MetricsObserver:
    """``suppressor.adapters.observe.WorkerObserver`` feeding ``Metrics``: pass it to
    ``build_app``. What a chunk of records caused is gathered and counted at its end
    (``on_chunk_done``): one increment per labelled counter, not one per record; the
    decision latency is observed per record (from when it was taken in hand), the
    partitions' stream time and state counts set once per chunk."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._events: CounterOf[str] = CounterOf()
        self._outcome = Outcome()
        self._partitions: dict[int, tuple[Any, int]] = {}  # partition: (runtime, stream time)

    def on_event(self, partition: int, event: Event, appended_at: float | None) -> None:
        self._events[event.type] += 1
        metrics = self.metrics
        metrics.event_lag.observe(max(0.0, metrics._wall() - event.ts / 1000))

    def on_work(self, runtime: Any, work: Any, started: float) -> None:
        outcome = work.outcome
        if outcome.decisions:
            self.metrics.decision_seconds.observe(max(0.0, self.metrics._monotonic() - started))
        self._outcome.merge(outcome)
        if work.unreadable:
            self.metrics.unreadable_states.inc(work.unreadable)
        self._partitions[runtime.partition] = (runtime, work.stream_time)

    def on_chunk_done(self) -> None:
        metrics = self.metrics
        warned = metrics._warned
        for event_type, n in self._events.items():
            checked = _checked(event_type, EVENT_TYPES, "event type", warned)
            metrics._labelled(metrics.events, checked).inc(n)
        self._events.clear()
        metrics.observe_output(self._outcome)
        self._outcome = Outcome()
        for partition, (runtime, stream_time) in self._partitions.items():
            metrics.set_stream_time(partition, stream_time)
            processor = runtime.processor
            metrics.set_partition_state(
                partition, processor.users, processor.open_baskets, processor.pending_similar
            )
        self._partitions.clear()

    def on_dead_letter(self, dead: DeadLetter) -> None:
        self.metrics.observe_dead_letter(dead.error_code)

    def on_failure(self, code: str, stage: str) -> None:
        self.metrics.observe_failure(code, stage)
