"""Admission of a parsed event before it may move stream time: the far-future check.

A producer with a broken clock (or a hostile one) could send an event dated next year.
Taken as it is, it would move stream time forward and fire every pending deadline at
once. So an event further ahead than `max_future_skew` of a reference time is refused
to the dead-letter output with the code `future_timestamp`.

The reference is the wall clock when the event is read, in the worker and in replay
alike: an event dated after "now + max_future_skew" is bogus in any history. (Stream
time is no reference: a quiet night, or a month between two files, is a legitimate
jump.) Replay of past data therefore stays deterministic; `replay(now_ms=...)` pins
the reference for tests and for reproducing a run.
"""

from __future__ import annotations

from schemas.outputs import DeadLetter, SourcePosition
from schemas.timefmt import format_ms
from suppressor.domain.model import Event
from suppressor.domain.policy import format_duration

FUTURE_TIMESTAMP = "future_timestamp"


def too_far_ahead(event: Event, reference_ms: int | None, max_skew_ms: int) -> bool:
    return reference_ms is not None and event.ts > reference_ms + max_skew_ms


def future_dead_letter(
    raw: bytes, source: SourcePosition, event: Event, reference_ms: int, max_skew_ms: int
) -> DeadLetter:
    message = (
        f"ts {format_ms(event.ts)} is more than {format_duration(max_skew_ms)} "
        f"(max_future_skew) ahead of {format_ms(reference_ms)}"
    )
    return DeadLetter.of(raw, source, FUTURE_TIMESTAMP, message)
