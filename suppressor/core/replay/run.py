"""One replay: events in file order, stream time = the largest ts read (pure event time).

At the end of input every held event is applied, then `until` advances stream
time so that due deadlines fire. The same input gives byte-identical output.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from suppressor.core.admission import admit, admit_fast, failure_dead_letter
from suppressor.core.catalog import Catalog
from suppressor.core.codec import (
    ACTIONS,
    CONVERSIONS,
    DECISIONS,
    dead_letter_bytes,
    output_records,
)
from suppressor.core.engine import Engine, Outcome
from suppressor.core.model import Event
from suppressor.core.policy import Policy
from suppressor.core.processor import DictStore, Processor, StateStore
from suppressor.core.tally import Tally
from suppressor.wire.outputs import DeadLetter, SourcePosition


class Sink(Protocol):
    def write(self, out: Outcome, policy_version: str) -> None: ...
    def dead_letter(self, dead: DeadLetter) -> None: ...


@dataclass
class FileSink:
    """Writes actions, decisions, conversions and dead letters as JSON lines, the bytes the
    worker sends to its topics (``output_records``); any of the files may be None."""

    actions: BinaryIO | None
    decisions: BinaryIO | None = None
    dlq: BinaryIO | None = None
    conversions: BinaryIO | None = None

    def write(self, out: Outcome, policy_version: str) -> None:
        files = {ACTIONS: self.actions, DECISIONS: self.decisions, CONVERSIONS: self.conversions}
        for kind, _, value in output_records(out, policy_version):
            target = files[kind]
            if target is not None:
                target.write(value)
                target.write(b"\n")

    def dead_letter(self, dead: DeadLetter) -> None:
        if self.dlq is not None:
            self.dlq.write(dead_letter_bytes(dead) + b"\n")


@dataclass
class CollectingSink:
    """Keeps the engine's values in memory (what-if comparisons, tests)."""

    outputs: list[Outcome] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def write(self, out: Outcome, policy_version: str) -> None:
        self.outputs.append(out)

    def dead_letter(self, dead: DeadLetter) -> None:
        self.dead_letters.append(dead)


class Meter(Protocol):
    """Where a long run reports how far it got (a progress bar on a terminal, see
    suppressor.entrypoints.progress); ``advance`` takes units done since the last call:
    input bytes for a file, records for a Kafka range."""

    def advance(self, units: int) -> None: ...


METER_EVERY = 4096
"""Lines between two reports to a Meter: a report costs far more than a line."""


def replay(
    lines: Iterable[tuple[int | SourcePosition, bytes]],
    policy: Policy,
    catalog: Catalog,
    sink: Sink,
    *,
    source_name: str = "-",
    until: int | None = None,
    progress: Meter | None = None,
    now_ms: int | None = None,
    store: StateStore | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> Tally:
    """`now_ms`: the reference for refusing far-future events (default: the wall clock).

    Each item of `lines` is (line number in `source_name`, raw bytes), or (the record's own
    SourcePosition, raw bytes) for input that is not a file (a Kafka topic range).
    `progress` hears of the input bytes read (each line and its newline).
    `store` keeps the users' states (default: a dict of its own); `on_event` sees every
    good event as it is read (`suppressor explain` keeps one person's).
    """
    reference = int(time.time() * 1000) if now_ms is None else now_ms
    engine = Engine(policy, catalog)
    processor = Processor(engine, DictStore() if store is None else store)
    version = engine.policy_version
    tally = Tally()
    skew = policy.max_future_skew
    stream_time: int | None = None
    done_bytes = lines_read = 0
    for number, raw in lines:
        if progress is not None:
            done_bytes += len(raw) + 1
            lines_read += 1
            if lines_read == METER_EVERY:
                progress.advance(done_bytes)
                done_bytes = lines_read = 0
        admitted = admit_fast(raw, reference, skew)  # no SourcePosition built for a good line
        event = admitted or admit(raw, _position(number, source_name), reference, skew)
        if isinstance(event, DeadLetter):
            tally.dlq[event.error_code] += 1
            sink.dead_letter(event)
            continue
        tally.events[event.type] += 1
        if on_event is not None:
            on_event(event)
        stream_time = event.ts if stream_time is None else max(stream_time, event.ts)
        out = processor.on_event(event, stream_time)
        if out.failures:
            _emit(out, sink, tally, version, (raw, _position(number, source_name), event.event_id))
        else:
            _emit(out, sink, tally, version)
    if progress is not None and done_bytes:
        progress.advance(done_bytes)
    _emit(processor.flush(), sink, tally, version)
    if until is not None:
        _emit(processor.advance_to(until), sink, tally, version)
    return tally


def _position(number: int | SourcePosition, source_name: str) -> SourcePosition:
    if isinstance(number, SourcePosition):
        return number
    return SourcePosition(file=source_name, line=number)


def _emit(
    out: Outcome,
    sink: Sink,
    tally: Tally,
    version: str,
    record: tuple[bytes, SourcePosition, str] | None = None,
) -> None:
    if out.decisions or out.late_events or out.erased or out.conversions:
        tally.count_output(out)
        sink.write(out, version)
    raw, where, current = record if record is not None else (None, SourcePosition(), None)
    for failure in out.failures:  # as the worker: the event to the DLQ, the rest goes on
        tally.failures[failure.code] += 1
        dead = failure_dead_letter(failure, raw, where, current)
        if dead is not None:
            tally.dlq[dead.error_code] += 1
            sink.dead_letter(dead)
