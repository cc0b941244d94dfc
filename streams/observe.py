"""Hooks for what the worker does, for metrics (a later issue adds Prometheus here).

``build_app(settings, observer=...)`` calls these from the agent, synchronously:
keep them cheap and never raise. Nothing but ids, times and codes passes through
them; labels built from them must leave user ids out (SPEC section 8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from schemas.outputs import DeadLetter
from suppressor.domain.model import Event

if TYPE_CHECKING:
    from streams.partition import PartitionRuntime, Work


class WorkerObserver(Protocol):
    def on_event(self, partition: int, event: Event, appended_at: float | None) -> None:
        """A good event is about to be processed; ``appended_at``: its Kafka timestamp (s)."""

    def on_work(self, runtime: PartitionRuntime, work: Work) -> None:
        """An event or a tick was processed: decisions, actions, late events, stream time."""

    def on_dead_letter(self, dead: DeadLetter) -> None:
        """A record went to the dead-letter topic."""


class NullObserver:
    def on_event(self, partition: int, event: Event, appended_at: float | None) -> None:
        pass

    def on_work(self, runtime: PartitionRuntime, work: Work) -> None:
        pass

    def on_dead_letter(self, dead: DeadLetter) -> None:
        pass
