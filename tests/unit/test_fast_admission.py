"""The msgspec fast path of admission accepts nothing the pydantic models refuse, and
decodes what it accepts to the same event: `admit` gives the same Event or the same
DeadLetter (code and message) as the pydantic models alone would."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faults.hostile import hostile_record
from suppressor.core.admission import admit
from suppressor.core.codec import dumps, event_from_wire, json_bytes
from suppressor.core.fast_admission import fast_event
from suppressor.core.model import Event
from suppressor.wire.events import parse_event
from suppressor.wire.outputs import DeadLetter, SourcePosition

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WHERE = SourcePosition(file="events.jsonl", line=7)
MANY = settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))


def pydantic_only(raw: bytes) -> Event | DeadLetter:
    parsed = parse_event(raw, WHERE)
    return parsed if isinstance(parsed, DeadLetter) else event_from_wire(parsed)


def assert_same(raw: bytes) -> None:
    fast = fast_event(raw)
    slow = pydantic_only(raw)
    if fast is not None:
        assert slow == fast, raw
    assert admit(raw, WHERE, None, 0) == slow


def x(raw: bytes) -> bytes:
    return raw.replace(b"TS", b'"ts":"2019-10-01T00:00:00Z"')


_text = st.text(max_size=8) | st.text(min_size=250, max_size=260)
_value: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | _text
    | st.sampled_from(["add", "remove", "2019-10-01T00:00:00Z", "2019-10-01T02:00:00.123+02:00"])
    | st.lists(
        st.fixed_dictionaries(
            {"item_id": _text},
            optional={"quantity": st.integers(-1, 3) | st.floats(), "price": st.floats()},
        ),
        max_size=3,
    )
)
_FIELDS = [
    "event_id", "user_id", "ts", "item_id", "page", "action", "quantity", "order_id", "items",
    "rating", "basket_recovery", "similar_item", "max_actions_per_week", "extra",
]  # fmt: skip
TYPES = ["browse", "cart", "purchase", "review", "consent", "forget", "other"]


@st.composite
def mutated_event(draw: st.DrawFn) -> bytes:
    """A plausible event with random values in random fields: mostly invalid, some valid."""
    record: dict[str, Any] = {
        "event_id": "e1",
        "user_id": "u1",
        "ts": "2019-10-01T00:00:00Z",
        "type": draw(st.sampled_from(TYPES)),
        "item_id": "i1",
        "action": "add",
        "order_id": "o1",
        "items": [{"item_id": "i1"}],
        "rating": 5,
    }
    for name in draw(st.lists(st.sampled_from(_FIELDS), max_size=3)):
        if draw(st.booleans()):
            record.pop(name, None)
        else:
            record[name] = draw(_value)
    return json.dumps(record, allow_nan=True).encode()


@MANY
@given(hostile_record(NOW))
def test_hostile_records_get_the_same_dead_letter_or_event(record: tuple[str, bytes]) -> None:
    assert_same(record[1])


@MANY
@given(mutated_event())
def test_mutated_events_get_the_same_dead_letter_or_event(raw: bytes) -> None:
    assert_same(raw)


@pytest.mark.parametrize(
    "raw",
    [
        x(b'{"event_id":"a","type":"browse","user_id":"u","user_id":"v",TS,"item_id":"x"}'),
        x(
            b'{"type":"browse","type":"cart","event_id":"a","action":"add","user_id":"u",TS,"item_id":"x"}'
        ),
        x(
            b'{"event_id":"a","type":"cart","action":"add","user_id":"u",TS,"item_id":"x","quantity":1.0}'
        ),
        x(
            b'{"event_id":"a","type":"browse","user_id":"\\ud800","ts":"2019-10-01T00:00:00Z","item_id":"x"}'
        ),
        x(
            b'{"event_id":"a","type":"purchase","order_id":"o","items":[{"item_id":"i","price":1e400}],"user_id":"u",TS}'
        ),
        x(b'{"event_id":"a","type":"review","rating":true,"user_id":"u",TS,"item_id":"x"}'),
        x(
            b'{"event_id":"a","type":"consent","max_actions_per_week":18446744073709551616,"user_id":"u",TS}'
        ),
        x(b' {"event_id":"a","type":"forget","user_id":"u","ts":"2019-10-01T00:00:00+14:00"} '),
        x(
            b'{"event_id":"a\\u0000","type":"browse","user_id":"u","ts":"2019-10-01t00:00:00.1234567z","item_id":"x"}'
        ),
        x(
            b'{"event_id":"a","type":"browse","user_id":"u","ts":"0001-01-01T00:00:00+01:00","item_id":"x"}'
        ),
        x(b'{"event_id":"a","type":"browse","user_id":"u",TS,"item_id":"x"} x'),
        x(b'{"event_id":"a","type":"browse","user_id":"u",TS,"item_id":"x","page":NaN}'),
    ],
)
def test_edge_cases_get_the_same_dead_letter_or_event(raw: bytes) -> None:
    assert_same(raw)


def test_a_valid_event_takes_the_fast_path() -> None:
    raw = x(b'{"event_id":"a","type":"browse","user_id":"u",TS,"item_id":"x"}')
    assert fast_event(raw) == Event("a", "browse", "u", 1569888000000, item_id="x")


_tricky = st.sampled_from(["\u0085", "\u2028", "\u2029", "\n", "\x00", '"', "\\", "\x7f"])
_str = st.text(st.characters(codec="utf-8") | _tricky)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _str,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_str, inner, max_size=3),
    max_leaves=12,
)


@MANY
@given(st.dictionaries(_str, _json_value, max_size=6))
def test_the_fast_encoder_writes_the_bytes_json_writes(record: dict[str, Any]) -> None:
    try:
        expected = dumps(record).encode()
    except UnicodeEncodeError:  # a lone surrogate: neither can write it
        with pytest.raises(UnicodeEncodeError):
            json_bytes(record)
        return
    assert json_bytes(record) == expected
