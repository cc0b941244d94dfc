"""Hooks for what the worker does: its Prometheus metrics (suppressor.adapters.metrics), and tests.

``build_app(settings, observer=...)`` calls these from the agent, synchronously:
keep them cheap and never raise. Nothing but ids, times and codes passes through
them; labels built from them must leave user ids out (SPEC section 8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from suppressor.core.model import Event
from suppressor.wire.outputs import DeadLetter

if TYPE_CHECKING:
    from suppressor.adapters.partition import PartitionRuntime, RecordOutcome


class WorkerObserver(Protocol):
    def on_event(self, partition: int, event: Event, appended_at: float | None) -> None:
        """A good event was processed (counted once, not when read again after a crash);
        ``appended_at``: its Kafka timestamp (s)."""

    def on_work(self, runtime: PartitionRuntime, work: RecordOutcome, started: float) -> None:
        """A record (an event or a tick) was processed and what it caused sent: decisions,
        actions, late events, stream time. ``started``: monotonic seconds when the record
        was taken in hand, before the engine ran."""

    def on_chunk_done(self) -> None:
        """A chunk of records (see ``Pipeline.handle_batch``) is done: count what it caused."""

    def on_dead_letter(self, dead: DeadLetter) -> None:
        """A record went to the dead-letter topic."""

    def on_failure(self, code: str, stage: str) -> None:
        """Processing failed and the worker went on: ``code`` internal_error or
        state_too_large; ``stage`` record (outside the processor), event (applying an
        event to its user) or deadline (firing another user's due deadlines)."""


class BothObservers:
    """Two observers, called in order (the metrics, then a test's)."""

    def __init__(self, first: WorkerObserver, second: WorkerObserver) -> None:
        self.first, self.second = first, second

    def on_event(self, partition: int, event: Event, appended_at: float | None) -> None:
        self.first.on_event(partition, event, appended_at)
        self.second.on_event(partition, event, appended_at)

    def on_work(self, runtime: PartitionRuntime, work: RecordOutcome, started: float) -> None:
        self.first.on_work(runtime, work, started)
        self.second.on_work(runtime, work, started)

    def on_chunk_done(self) -> None:
        self.first.on_chunk_done()
        self.second.on_chunk_done()

    def on_dead_letter(self, dead: DeadLetter) -> None:
        self.first.on_dead_letter(dead)
        self.second.on_dead_letter(dead)

    def on_failure(self, code: str, stage: str) -> None:
        self.first.on_failure(code, stage)
        self.second.on_failure(code, stage)
