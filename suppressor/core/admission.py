"""Admission: from raw input bytes to an event the engine may take, or a dead letter.

One function for the worker and replay (``admit``): parse and validate against the wire
contract (suppressor.wire.events; valid events through the msgspec fast path of
suppressor.core.fast_admission first), then refuse an event too far in the future, and, for a
Kafka record, a key longer than any user id. The dead letters for events whose processing
failed later (``failure_dead_letter``) are built here too.

The far-future check.

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

import hashlib
import traceback

from suppressor.core.codec import dumps, event_from_wire, event_record
from suppressor.core.engine import Failure
from suppressor.core.fast_admission import fast_event
from suppressor.core.model import Event
from suppressor.core.policy import format_duration
from suppressor.wire.events import parse_event
from suppressor.wire.outputs import DeadLetter, SourcePosition
from suppressor.wire.timefmt import format_ms

FUTURE_TIMESTAMP = "future_timestamp"


def admit(
    raw: bytes,
    source: SourcePosition,
    reference_ms: int | None,
    max_skew_ms: int,
    key: bytes | None = None,
) -> Event | DeadLetter:
    """The event in ``raw``, or why it cannot be used. ``reference_ms``: the wall clock
    (None: no far-future check, for an event another partition admitted already);
    ``key``: the Kafka record's key, when there is one."""
    if key is not None and len(key) > MAX_KEY_BYTES:
        return key_too_large_dead_letter(raw, source, len(key))
    event = fast_event(raw)
    if event is None:  # msgspec refused it: the pydantic models decide, and say why
        parsed = parse_event(raw, source)
        if isinstance(parsed, DeadLetter):
            return parsed
        event = event_from_wire(parsed)
    if too_far_ahead(event, reference_ms, max_skew_ms):
        assert reference_ms is not None
        return future_dead_letter(raw, source, event, reference_ms, max_skew_ms)
    return event


def admit_fast(raw: bytes, reference_ms: int | None, max_skew_ms: int) -> Event | None:
    """The event in ``raw`` when the msgspec fast path takes it and it is not too far
    ahead; None: ask ``admit`` (with the record's position), which says why. For input
    without a key (files): replay builds no position for a good line."""
    event = fast_event(raw)
    if event is None or too_far_ahead(event, reference_ms, max_skew_ms):
        return None
    return event


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


INTERNAL_ERROR = "internal_error"
"""Dead-letter code: processing the record raised (a bug); the worker went on."""
STATE_TOO_LARGE = "state_too_large"
"""Dead-letter code: the user's state after the event would not fit its changelog record."""
KEY_TOO_LARGE = "key_too_large"
"""Dead-letter code: the record's key is longer than any user id can be."""

MAX_KEY_BYTES = 1024
"""The longest key an input record may have: a user id (256 characters of at most 4 UTF-8
bytes each). A longer one is refused, and never copied to the dead-letter topic."""


def key_too_large_dead_letter(raw: bytes, source: SourcePosition, size: int) -> DeadLetter:
    message = (
        f"the record's key is {size:,} bytes, more than the {MAX_KEY_BYTES:,} a user id can "
        "take; the key is not copied here"
    )
    return DeadLetter.of(raw, source, KEY_TOO_LARGE, message)


def describe(error: BaseException) -> str:
    """An error in words for a dead letter: its class and message, cut to 500 characters."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 500 else text[:497] + "..."


def traceback_without_values(error: BaseException) -> str:
    """Where an error happened, for the log: the stack and the error's class, never its
    message (it may quote a user id or an item, and logs hold no personal data)."""
    frames = "".join(traceback.format_tb(error.__traceback__))
    return f"{frames}{type(error).__module__}.{type(error).__qualname__}"


def user_hash(user_id: str) -> str:
    """How logs name a user: a short keyed hash, never the id (SPEC section 8)."""
    return hashlib.blake2b(user_id.encode(), digest_size=6, person=b"rs-log-user").hexdigest()


def failure_dead_letter(
    failure: Failure, raw: bytes | None, source: SourcePosition, current_event_id: str | None
) -> DeadLetter | None:
    """The dead letter for an event whose processing failed (see `Processor`): the record
    in hand when it is that event, else the event as the engine held it (an event held in
    the reorder buffer since an earlier record; known fields only, no position). None for
    a failure firing deadlines: no input is at fault."""
    event = failure.event
    if event is None:
        return None
    message = describe(failure.error)
    if raw is not None and event.event_id == current_event_id:
        return DeadLetter.of(raw, source, failure.code, message)
    held = dumps(event_record(event)).encode()
    note = " (an event held since an earlier record; shown with the fields the engine keeps)"
    return DeadLetter.of(held, SourcePosition(), failure.code, message + note)
