"""Input events (SPEC section 3) and the parse step that never raises.

Models are strict about what they accept (no string-to-int coercion, an offset
on every timestamp, ratings 1-5, non-empty purchases) and drop unknown extra
fields, so nothing a producer adds (a name, an e-mail address) can reach an
output.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from suppressor.wire.outputs import DeadLetter, SourcePosition
from suppressor.wire.timefmt import parse_rfc3339, to_ms

MAX_EVENT_BYTES = 64 * 1024
"""Records larger than this go to the dead-letter output as `too_large`."""

Id = Annotated[StrictStr, Field(min_length=1, max_length=256)]


def _timestamp_ms(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError(
            "expected an RFC 3339 timestamp string with a timezone offset, "
            f"got {type(value).__name__}"
        )
    return to_ms(parse_rfc3339(value))


TimestampMs = Annotated[int, BeforeValidator(_timestamp_ms)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id
    user_id: Id
    ts: TimestampMs = Field(description="event time, RFC 3339 with an offset; ms since epoch")


class Browse(_Event):
    type: Literal["browse"]
    item_id: Id
    page: StrictStr | None = None


class Cart(_Event):
    type: Literal["cart"]
    action: Literal["add", "remove"]
    item_id: Id
    quantity: StrictInt = Field(default=1, ge=1)


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    item_id: Id
    quantity: StrictInt = Field(default=1, ge=1)
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False, strict=True)


class Purchase(_Event):
    type: Literal["purchase"]
    order_id: Id
    items: tuple[OrderLine, ...] = Field(min_length=1, max_length=1000)


class Review(_Event):
    type: Literal["review"]
    item_id: Id
    rating: StrictInt = Field(ge=1, le=5)


class Consent(_Event):
    type: Literal["consent"]
    basket_recovery: StrictBool | None = None
    similar_item: StrictBool | None = None
    max_actions_per_week: StrictInt | None = Field(default=None, ge=0)


class Forget(_Event):
    type: Literal["forget"]


Event = Browse | Cart | Purchase | Review | Consent | Forget
EVENT_TYPES = ("browse", "cart", "purchase", "review", "consent", "forget")

_EVENT = TypeAdapter[Event](Annotated[Event, Field(discriminator="type")])


def _error_code(error: ValidationError) -> tuple[str, str]:
    first = error.errors(include_url=False)[0]
    kind, loc = first["type"], first["loc"]
    where = ".".join(str(part) for part in loc[1:]) or "record"
    if kind == "json_invalid":
        return "not_json", f"not valid JSON: {first['msg']}"
    if kind in {"model_attributes_type", "model_type", "dict_type"} and len(loc) <= 1:
        return "not_object", "an event must be a JSON object"
    if kind == "union_tag_not_found":
        return "missing_type", "the event has no 'type' field"
    if kind == "union_tag_invalid":
        return "unknown_type", (
            f"unknown event type {first['input'].get('type')!r}; "
            f"expected one of {', '.join(EVENT_TYPES)}"
            if isinstance(first["input"], dict)
            else "unknown event type"
        )
    if loc[-1:] == ("ts",):
        if kind == "missing":
            return "missing_field", "field 'ts' is required"
        return "bad_timestamp", f"field 'ts': {first['msg']}"
    if kind == "missing":
        return "missing_field", f"field {where!r} is required"
    return "invalid_field", f"field {where!r}: {first['msg']}"


def parse_event(raw: bytes, source: SourcePosition) -> Event | DeadLetter:
    """Raw bytes to an event, or to a dead-letter record with a short code.

    Never raises: any failure, however strange the input, becomes a DeadLetter.
    """
    if len(raw) > MAX_EVENT_BYTES:
        message = f"{len(raw)} bytes; the limit is {MAX_EVENT_BYTES}"
        return DeadLetter.of(raw, source, "too_large", message)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        message = f"not UTF-8 text: {error.reason} at byte {error.start}"
        return DeadLetter.of(raw, source, "not_utf8", message)
    try:
        return _EVENT.validate_json(raw)
    except ValidationError as error:
        code, message = _error_code(error)
        return DeadLetter.of(raw, source, code, message)
    except (ValueError, RecursionError) as error:  # e.g. absurd nesting
        return DeadLetter.of(raw, source, "not_json", f"not usable JSON: {type(error).__name__}")
