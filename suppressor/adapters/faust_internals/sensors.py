"""What the metrics read from Faust beyond its public API. See README.md in this folder.

- ``read_app``/``consumer_lag``: assignment, rebalancing, recovery and lag of a running
  app, at scrape time (``App._monitor``, ``Consumer._committed_offset``: no public
  accessor); never raises.
- ``TransactionErrorLog``: the transaction failures Faust only logs, counted by matching
  its log messages (0.15.3's wording).
- ``suppressor_monitor_class``: Faust's PrometheusMonitor with its per-record label
  lookups done once, rebalance completions known (health), and ``on_batch_in`` for the
  records the batch path hands on without faust's per-record hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


def new_monitor(registry: Any, prefix: str, counts: Counts) -> Any:
    """Faust's Prometheus sensor (metrics prefixed ``prefix``) on ``registry``, ours."""
    from faust.sensors.prometheus import FaustMetrics

    return suppressor_monitor_class()(FaustMetrics.create(registry, prefix), counts)


def tables_recovered(app: Any) -> bool:
    """Whether the app's table recovery has completed (Faust's TableManager)."""
    return bool(app.tables.recovery.completed.is_set())


def install_monitor(app: Any, monitor: Any) -> None:
    """``app.monitor = monitor`` unless it is already (reading ``app.monitor`` makes one)."""
    if getattr(app, "_monitor", None) is not monitor:
        app.monitor = monitor


class Counts(Protocol):
    """What the sensors report to (``suppressor.adapters.metrics.Metrics``)."""

    def observe_transaction_error(self, operation: str) -> None: ...

    def _monotonic(self) -> float: ...


@dataclass(frozen=True)
class AppState:
    started: bool = False
    rebalancing: bool = False
    recovering: bool = False
    partitions: tuple[int, ...] = ()
    assignment: frozenset[Any] = frozenset()
    recovery_remaining: int | None = None


def read_app(app: Any, topics: frozenset[str] | None, monitor: Any) -> AppState:
    """Assignment, rebalancing and recovery of a faust app; never raises."""
    if app is None:
        return AppState()
    try:
        assignment = frozenset(app.consumer.assignment())
    except Exception:  # consumer not started yet
        return AppState()
    completed = getattr(monitor, "rebalances_completed", 1) if monitor is not None else 1
    recovery = getattr(getattr(app, "tables", None), "recovery", None)
    recovering = bool(getattr(app, "in_recovery", False))
    remaining: int | None = None
    if recovering and recovery is not None:
        try:
            remaining = int(recovery.active_remaining_total())
        except Exception:
            remaining = None
    partitions = tuple(
        sorted({tp.partition for tp in assignment if topics is None or tp.topic in topics})
    )
    return AppState(
        started=completed > 0,
        rebalancing=bool(getattr(app, "rebalancing", False)),
        recovering=recovering,
        partitions=partitions,
        assignment=assignment,
        recovery_remaining=remaining,
    )


def consumer_lag(app: Any, assignment: Iterable[Any], monitor: Any) -> Iterator[tuple[Any, int]]:
    """(tp, records behind the partition's end) for each assigned tp where both are known."""
    consumer = app.consumer
    read = getattr(monitor, "tp_read_offsets", None) or {}
    committed = getattr(consumer, "_committed_offset", None) or {}
    for tp in assignment:
        try:
            end = consumer.highwater(tp)
        except Exception:
            continue
        if end is None or end < 0:
            continue
        last_read = read.get(tp)
        position = last_read + 1 if last_read is not None else committed.get(tp)
        if position is None:
            continue
        yield tp, max(0, int(end) - int(position))


class TransactionErrorLog(logging.Handler):
    """Counts the transaction failures faust logs and does not raise.

    faust's aiokafka driver catches exceptions in begin/commit/abort_transaction and
    logs a warning; a fenced producer is logged too, and a failed offset commit is
    logged before the consumer crashes. Matching those messages is how they become
    ``suppressor_transaction_errors_total{operation}``. faust logs a fenced producer
    at INFO: with ``--log-level warning`` those are not counted (the crash that follows
    a fencing still restarts the worker, which ``process_start_time_seconds`` shows).
    """

    PATTERNS: tuple[tuple[str, str], ...] = (
        ("Exception in begin_transaction", "begin"),
        ("Exception in commit_transaction", "commit"),
        ("Commit invoked for unknown transaction", "commit"),
        ("Exception in abort_transaction", "abort"),
        ("fenced", "fenced"),
        ("ProducerFenced", "fenced"),
        ("Committing raised exception", "offset_commit"),
    )

    def __init__(self, metrics: Counts) -> None:
        super().__init__(level=logging.INFO)
        self._metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            return
        for needle, operation in self.PATTERNS:
            if needle in message:
                self._metrics.observe_transaction_error(operation)
                return


_MONITOR_CLASS: type | None = None


def suppressor_monitor_class() -> type:
    """faust's PrometheusMonitor, plus: send errors counted, rebalances completed known."""
    global _MONITOR_CLASS
    if _MONITOR_CLASS is None:
        from faust.sensors.monitor import Monitor
        from faust.sensors.prometheus import PrometheusMonitor

        class SuppressorMonitor(PrometheusMonitor):
            """The per-record hooks are faust's, with the labelled children looked up once
            (faust builds and checks the labels, and normalises the stream's name with a
            regular expression, for every record); faust removes the per-partition series
            at each rebalance, and then the children are looked up again."""

            rebalances_completed = 0
            rebalance_ended_at: float | None = None

            def __init__(self, faust_metrics: Any, metrics: Counts, **kwargs: Any) -> None:
                super().__init__(metrics=faust_metrics, **kwargs)
                self._suppressor = metrics
                self._tp_children: dict[Any, tuple[Any, Any]] = {}
                self._end_children: dict[Any, Any] = {}
                self._stream_children: dict[Any, Any] = {}

            def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
                Monitor.on_message_in(self, tp, offset, message)
                faust_metrics = self._metrics
                faust_metrics.messages_received.inc()
                faust_metrics.active_messages.inc()
                children = self._received_children(tp)
                children[0].inc()
                children[1].set(offset)

            def on_batch_in(self, tp: Any, count: int, offset: int) -> None:
                """A chunk of ``count`` records of ``tp`` up to ``offset`` handled by the
                batch path, which passes no record through faust's on_message_in: the same
                counters, once per chunk (``active_messages`` stays as it is: a chunk is
                done when this is called)."""
                self.messages_received_total += count
                self.messages_received_by_topic[tp.topic] += count
                self.tp_read_offsets[tp] = offset
                self._metrics.messages_received.inc(count)
                children = self._received_children(tp)
                children[0].inc(count)
                children[1].set(offset)

            def _received_children(self, tp: Any) -> tuple[Any, Any]:
                children = self._tp_children.get(tp)
                if children is None:
                    faust_metrics = self._metrics
                    children = self._tp_children[tp] = (
                        faust_metrics.messages_received_per_topics.labels(topic=tp.topic),
                        faust_metrics.messages_received_per_topics_partition.labels(
                            topic=tp.topic, partition=tp.partition
                        ),
                    )
                return children

            def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> Any:
                state = Monitor.on_stream_event_in(self, tp, offset, stream, event)
                faust_metrics = self._metrics
                faust_metrics.total_events.inc()
                faust_metrics.total_active_events.inc()
                child = self._stream_children.get(stream)
                if child is None:
                    label = f"stream.{self._stream_label(stream)}.events"
                    child = faust_metrics.total_events_per_stream.labels(stream=label)
                    self._stream_children[stream] = child
                child.inc()
                return state

            def track_tp_end_offset(self, tp: Any, offset: int) -> None:
                Monitor.track_tp_end_offset(self, tp, offset)
                child = self._end_children.get(tp)
                if child is None:
                    child = self._end_children[tp] = (
                        self._metrics.topic_partition_end_offset.labels(
                            topic=tp.topic, partition=tp.partition
                        )
                    )
                child.set(offset)

            def _clear_partition_related_metrics(self) -> None:
                super()._clear_partition_related_metrics()
                self._tp_children.clear()
                self._end_children.clear()

            def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
                super().on_send_error(producer, exc, state)
                self._suppressor.observe_transaction_error("send")

            def on_rebalance_end(self, app: Any, state: Any) -> None:
                super().on_rebalance_end(app, state)
                self.rebalances_completed += 1
                self.rebalance_ended_at = self._suppressor._monotonic()

        _MONITOR_CLASS = SuppressorMonitor
    return _MONITOR_CLASS
