"""One partition number's share of the work: its processor, its clock, its state writes.

Everything here is synchronous and Kafka-free: the agent feeds it records and
sends what it returns (``RecordOutcome``), in the transaction of the record that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from suppressor.adapters.state import (
    UNLIMITED,
    ClockStore,
    Origin,
    PartitionKV,
    UserStateStore,
    Write,
)
from suppressor.core.clock import PartitionClock
from suppressor.core.engine import Engine, Outcome
from suppressor.core.model import Event
from suppressor.core.processor import Processor


class Idle(Enum):
    IDLE = "idle"


IDLE = Idle.IDLE


@dataclass(slots=True)
class RecordOutcome:
    """What one record caused: the engine's outcome, and the partition's stream time."""

    outcome: Outcome
    stream_time: int
    redelivered: bool = False
    """The event was in the user's state already (read again after a crash): skipped."""
    unreadable: int = 0
    """Stored states found undecodable since the last RecordOutcome (their users start as new)."""


class PartitionRuntime:
    def __init__(
        self,
        engine: Engine,
        users: PartitionKV,
        clocks: PartitionKV,
        clock: PartitionClock,
        now: float,
        track_origins: bool = False,
        max_state_bytes: int = UNLIMITED,
    ) -> None:
        self.partition = users.partition
        self.users = users
        self.clocks = clocks
        self.clock = clock
        self.clock_store = ClockStore(clocks)
        self.store = UserStateStore(users, track_origins, max_bytes=max_state_bytes)
        self.processor = Processor(engine, self.store)
        snapshot = self.clock_store.load()
        if snapshot is not None:
            clock.restore(snapshot, now)
            self.store.erased = dict(snapshot.get("erased", {}))
        self._saved_snapshot = snapshot
        self.tracked_users = self.processor.rebuild_index()

    def on_event(
        self, topic: str, event: Event, now: float, origin: Origin | None = None
    ) -> RecordOutcome:
        """An event read from input ``topic`` at ``origin`` (see UserStateStore)."""
        self.clock.observe(topic, event.ts, now)
        return self._process(event, now, origin)

    def on_forwarded(
        self, source: str, event: Event, now: float, origin: Origin | None = None
    ) -> RecordOutcome:
        """An event another partition forwarded: only that partition's watermarks say how
        far its forwarding has got (it merges several topics), so the ts is not observed."""
        self.clock.touch(source, now)
        return self._process(event, now, origin)

    def on_watermark(
        self, source: str, watermark: int | None, now: float, fresh: bool = False
    ) -> RecordOutcome:
        """Everything ``source`` will still forward here has ts >= watermark (give or take
        the inputs' disorder); None: it is alive but does not know yet. ``fresh``: the
        source is live, not catching up (``Pipeline._fresh``); then its watermark keeps it in
        this partition's stream time only while it forwards events here
        (``PartitionClock.promise``), as a quiet input topic is left out after
        ``idle_timeout``."""
        if watermark is None:
            self.clock.touch(source, now)
        elif fresh:
            self.clock.promise(source, watermark, now)
        else:
            self.clock.observe(source, watermark, now)
        return self.on_tick(now)

    def on_tick(self, now: float) -> RecordOutcome:
        """Advance stream time by the wall clock (and whatever the clock learnt)."""
        stream_time = self.clock.advance(now)
        return self._work(self._advance(stream_time), stream_time)

    def watermark(self, inputs: tuple[str, ...], now: float) -> int | Idle | None:
        """How far this partition's inputs have got, what it tells the partitions it may
        forward events to: event time, None while it does not know, IDLE when its
        inputs are all idle (it holds nobody back then)."""
        if self.clock.all_idle(now, inputs):
            return IDLE
        return self.clock.event_time(now, inputs)

    def _process(self, event: Event, now: float, origin: Origin | None) -> RecordOutcome:
        stream_time = self.clock.advance(now)
        store = self.store
        if origin is not None and store.track_origins and not store.claim(event.user_id, origin):
            work = self._work(self._advance(stream_time), stream_time)
            work.redelivered = True
            return work
        with store.changing():
            output = self.processor.on_event(event, stream_time)
        return self._work(output, stream_time)

    def _advance(self, stream_time: int) -> Outcome:
        with self.store.changing():
            return self.processor.advance_to(stream_time)

    def flush_users(self) -> list[Write]:
        """The users' writes held since the last commit, at once to RocksDB, and their
        changelog records (tools and tests; the worker takes and applies them around its
        commits, see ``PartitionKV``)."""
        return self.users.flush()

    def save_clock(self) -> list[Write]:
        """The clock's changelog records when it moved since the last save.

        Called just before each commit (see suppressor.adapters.faust_internals.consumer):
        the saved clock is the one that goes with the committed offsets, so a restart or
        a rebalance resumes exactly there.
        """
        snapshot = self.clock.snapshot()
        if self.store.erased:  # this commit's erasures (see UserStateStore.delete)
            snapshot["erased"] = self.store.erased
            self.store.erased = {}
        if snapshot != self._saved_snapshot:
            self.clock_store.save(snapshot)
            self._saved_snapshot = snapshot
        return self.clocks.take()

    def observe_only(self, topic: str, ts: int, now: float) -> None:
        """An event read here that belongs to another partition still shows the topic's progress."""
        self.clock.observe(topic, ts, now)

    def _work(self, output: Outcome, stream_time: int) -> RecordOutcome:
        store = self.store
        unreadable, store.unreadable = store.unreadable, 0
        return RecordOutcome(output, stream_time, unreadable=unreadable)
