"""A fast path for admission: valid events decoded by msgspec, everything else left to
the pydantic models.

``fast_event(raw)`` returns the engine's Event for a record that msgspec decodes into the
Structs below, which have the wire models' limits (suppressor.wire.events): strict types
(no string-to-int coercion, no int for a bool), ids of 1-256 characters, 1-1000 order
lines, ratings 1-5, quantities >= 1, finite prices >= 0, a known ``type``, unknown fields
ignored, nesting far below pydantic's limit, and ``ts`` parsed by the same function
(``parse_rfc3339``). It returns None for anything it does not accept, and the caller
then runs the pydantic models (``parse_event``), so every dead letter keeps its code and
message: the fast path may only refuse more than pydantic, never accept more or
differently (tests/unit/test_fast_admission.py checks it on valid and hostile records
with hypothesis).

It decodes in 1-2 µs what pydantic validates in about 10 µs; replay admits every line of
its input, so that is about a sixth of a replay's time (BENCHMARKS.md).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import msgspec

from suppressor.core.model import Event
from suppressor.wire.events import MAX_EVENT_BYTES
from suppressor.wire.timefmt import parse_rfc3339, to_ms

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_Count = Annotated[int, msgspec.Meta(ge=1)]


class _Browse(msgspec.Struct, tag="browse", tag_field="type", frozen=True):
    event_id: _Id
    user_id: _Id
    ts: str
    item_id: _Id
    page: str | None = None


class _Cart(msgspec.Struct, tag="cart", tag_field="type", frozen=True):
    event_id: _Id
    user_id: _Id
    ts: str
    action: Literal["add", "remove"]
    item_id: _Id
    quantity: _Count = 1


class _Line(msgspec.Struct, frozen=True):
    item_id: _Id
    quantity: _Count = 1
    price: Annotated[float, msgspec.Meta(ge=0)] | None = None


class _Purchase(msgspec.Struct, tag="purchase", tag_field="type", frozen=True):
    event_id: _Id
    user_id: _Id
    ts: str
    order_id: _Id
    items: Annotated[tuple[_Line, ...], msgspec.Meta(min_length=1, max_length=1000)]


class _Review(msgspec.Struct, tag="review", tag_field="type", frozen=True):
    event_id: _Id
    user_id: _Id
    ts: str
    item_id: _Id
    rating: Annotated[int, msgspec.Meta(ge=1, le=5)]


class _Consent(msgspec.Struct, tag="consent", tag_field="type", frozen=True):
    event_id: _Id
    user_id: _Id
    ts: str
    basket_recovery: bool | None = None
    similar_item: bool | None = None
    max_actions_per_week: Annotated[int, msgspec.Meta(ge=0)] | None = None


class _Forget(msgspec.Struct, tag="forget", tag_field="type", frozen=True):
    event_id: _Id
    user_id: _Id
    ts: str


MAX_OPENINGS = 64
"""A record with more ``[`` and ``{`` than this goes to pydantic: its JSON parser refuses
nesting past a depth of about 200 (``not_json``) where msgspec would skip it in an unknown
field. Counting bytes, inside strings too, only sends more records the slow way."""

_Wire = _Browse | _Cart | _Purchase | _Review | _Consent | _Forget
_DECODE = msgspec.json.Decoder(_Wire).decode


def fast_event(raw: bytes) -> Event | None:
    """The event in ``raw`` when msgspec accepts it, else None (then ask ``parse_event``)."""
    if len(raw) > MAX_EVENT_BYTES or raw.count(b"[") + raw.count(b"{") > MAX_OPENINGS:
        return None
    try:
        wire = _DECODE(raw)
        ts = to_ms(parse_rfc3339(wire.ts))
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError):
        return None
    match wire:
        case _Browse():
            return Event(wire.event_id, "browse", wire.user_id, ts, item_id=wire.item_id)
        case _Cart():
            return Event(
                wire.event_id, "cart", wire.user_id, ts, item_id=wire.item_id,
                action=wire.action, quantity=wire.quantity,
            )  # fmt: skip
        case _Purchase():
            if any(line.price is not None and not math.isfinite(line.price) for line in wire.items):
                return None
            items = tuple(line.item_id for line in wire.items)
            return Event(
                wire.event_id, "purchase", wire.user_id, ts, order_id=wire.order_id, items=items
            )
        case _Review():
            return Event(
                wire.event_id, "review", wire.user_id, ts, item_id=wire.item_id,
                rating=wire.rating,
            )  # fmt: skip
        case _Consent():
            return Event(
                wire.event_id, "consent", wire.user_id, ts,
                basket_recovery=wire.basket_recovery, similar_item=wire.similar_item,
                max_actions_per_week=wire.max_actions_per_week,
            )  # fmt: skip
        case _:
            return Event(wire.event_id, "forget", wire.user_id, ts)
