"""The wire contract (SPEC section 3): what parse_event accepts, the dead-letter code of
every class of bad input, and JSON Schema files that match the models."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest

from suppressor.core.admission import admit
from suppressor.core.codec import event_bytes, event_from_wire
from suppressor.core.policy import Policy
from suppressor.core.replay.run import FileSink, replay
from suppressor.wire import events as wire_events
from suppressor.wire.events import MAX_EVENT_BYTES, parse_event
from suppressor.wire.jsonschema import JSON_DIR, render_all
from suppressor.wire.outputs import MAX_ORIGINAL_BYTES, DeadLetter, SourcePosition
from suppressor.wire.timefmt import format_ms, parse_to_ms
from tests.unit.conftest import BASE_MS, numbered, shop

REPO_EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

WHERE = SourcePosition(file="events.jsonl", line=7)
TS = "2025-01-01T00:00:00Z"


def encode(record: Any) -> bytes:
    return json.dumps(record).encode()


def good(type_: str = "browse", **fields: Any) -> dict[str, Any]:
    defaults: dict[str, dict[str, Any]] = {
        "browse": {"item_id": "a"},
        "cart": {"action": "add", "item_id": "a"},
        "purchase": {"order_id": "o1", "items": [{"item_id": "a"}]},
        "review": {"item_id": "a", "rating": 5},
        "consent": {},
        "forget": {},
    }
    record = {"event_id": "e1", "type": type_, "user_id": "u1", "ts": TS, **defaults[type_]}
    record.update(fields)
    return {key: value for key, value in record.items() if value is not DROP}


DROP = object()


def dead(raw: bytes) -> DeadLetter:
    result = parse_event(raw, WHERE)
    assert isinstance(result, DeadLetter), result
    return result


def parsed(raw: bytes) -> wire_events.Event:
    result = parse_event(raw, WHERE)
    assert not isinstance(result, DeadLetter), result.error
    return result


# --- good input -----------------------------------------------------------------------------


@pytest.mark.parametrize("type_", ["browse", "cart", "purchase", "review", "consent", "forget"])
def test_every_event_type_parses(type_: str) -> None:
    event = parsed(encode(good(type_)))
    assert event.type == type_
    assert event.ts == BASE_MS
    assert event_from_wire(event).type == type_


def test_timestamps_with_any_offset_are_the_same_instant() -> None:
    for ts in ["2025-01-01T00:00:00Z", "2025-01-01T02:00:00+02:00", "2024-12-31T19:00:00-05:00"]:
        assert parsed(encode(good(ts=ts))).ts == BASE_MS
    assert parsed(encode(good(ts="2025-01-01T00:00:00.250Z"))).ts == BASE_MS + 250


def test_optional_fields_take_their_defaults() -> None:
    cart = parsed(encode(good("cart")))
    assert isinstance(cart, wire_events.Cart) and cart.quantity == 1
    consent = parsed(encode(good("consent", similar_item=False)))
    assert isinstance(consent, wire_events.Consent)
    assert (consent.basket_recovery, consent.similar_item, consent.max_actions_per_week) == (
        None,
        False,
        None,
    )
    browse = parsed(encode(good("browse", page="reviews")))
    assert isinstance(browse, wire_events.Browse) and browse.page == "reviews"


def test_purchase_lines_may_carry_quantity_and_price() -> None:
    line = {"item_id": "a", "quantity": 2, "price": 9.99}
    event = parsed(encode(good("purchase", items=[line, {"item_id": "b"}])))
    assert event_from_wire(event).items == ("a", "b")


# --- bad input: one dead-letter code per class ----------------------------------------------

BAD: list[tuple[str, bytes, str]] = [
    ("latin-1 bytes", "caf\xe9".encode("latin-1"), "not_utf8"),
    ("binary", b"\xff\xfe\x00\x01", "not_utf8"),
    ("not json", b"not json", "not_json"),
    ("cut json", encode(good())[:20], "not_json"),
    ("array", b"[1, 2]", "not_object"),
    ("string", b'"browse"', "not_object"),
    ("number", b"42", "not_object"),
    ("null", b"null", "not_object"),
    ("no type", encode(good(type=DROP)), "missing_type"),
    ("unknown type", encode(good(type="click")), "unknown_type"),
    ("type not a string", encode(good(type=1)), "unknown_type"),
    ("no ts", encode(good(ts=DROP)), "missing_field"),
    ("ts without offset", encode(good(ts="2025-01-01T00:00:00")), "bad_timestamp"),
    ("ts as a date", encode(good(ts="2025-01-01")), "bad_timestamp"),
    ("ts in words", encode(good(ts="yesterday")), "bad_timestamp"),
    ("ts as epoch ms", encode(good(ts=1735689600000)), "bad_timestamp"),
    ("ts not a day", encode(good(ts="2025-02-30T00:00:00Z")), "bad_timestamp"),
    ("no event_id", encode(good(event_id=DROP)), "missing_field"),
    ("no user_id", encode(good(user_id=DROP)), "missing_field"),
    ("browse without item", encode(good(item_id=DROP)), "missing_field"),
    ("purchase without items", encode(good("purchase", items=DROP)), "missing_field"),
    ("review without rating", encode(good("review", rating=DROP)), "missing_field"),
    ("cart without action", encode(good("cart", action=DROP)), "missing_field"),
    ("empty event_id", encode(good(event_id="")), "invalid_field"),
    ("user_id as int", encode(good(user_id=5)), "invalid_field"),
    ("item_id as int", encode(good(item_id=5)), "invalid_field"),
    ("rating 0", encode(good("review", rating=0)), "invalid_field"),
    ("rating 6", encode(good("review", rating=6)), "invalid_field"),
    ("rating as text", encode(good("review", rating="5")), "invalid_field"),
    ("rating as float", encode(good("review", rating=4.5)), "invalid_field"),
    ("empty purchase", encode(good("purchase", items=[])), "invalid_field"),
    ("purchase line without item", encode(good("purchase", items=[{"q": 1}])), "missing_field"),
    ("negative price", encode(good("purchase", items=[{"item_id": "a", "price": -1}])),
     "invalid_field"),
    ("cart toggle", encode(good("cart", action="toggle")), "invalid_field"),
    ("quantity 0", encode(good("cart", quantity=0)), "invalid_field"),
    ("quantity as text", encode(good("cart", quantity="2")), "invalid_field"),
    ("consent as text", encode(good("consent", similar_item="yes")), "invalid_field"),
    ("consent as int", encode(good("consent", basket_recovery=1)), "invalid_field"),
    ("negative weekly cap", encode(good("consent", max_actions_per_week=-1)), "invalid_field"),
    ("too large", encode(good(note="x" * MAX_EVENT_BYTES)), "too_large"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "code"), [(raw, code) for _, raw, code in BAD], ids=[n for n, _, _ in BAD]
)
def test_bad_input_becomes_a_dead_letter_with_its_code(raw: bytes, code: str) -> None:
    letter = dead(raw)
    assert letter.error_code == code
    assert letter.error  # in words
    assert letter.source == WHERE
    original = (
        base64.b64decode(letter.original)
        if letter.encoding == "base64"
        else letter.original.encode()
    )
    assert original == raw


def test_the_error_names_the_field() -> None:
    assert "rating" in dead(encode(good("review", rating=9))).error
    assert "item_id" in dead(encode(good(item_id=DROP))).error
    assert "offset" in dead(encode(good(ts="2025-01-01T00:00:00"))).error


def test_undecodable_bytes_are_kept_as_base64() -> None:
    letter = dead(b"\xff\x00bad")
    assert letter.encoding == "base64"
    assert base64.b64decode(letter.original) == b"\xff\x00bad"
    assert dead(b"plain").encoding == "text"


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b"[" * 20_000 + b"]" * 20_000,
        b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
        encode(good())[:-1] + b',"x":' + b"[" * 5_000 + b"]" * 5_000 + b"}",
        b"{" * 60_000,
    ],
    ids=["open", "balanced", "objects", "inside-an-event", "braces"],
)
def test_deep_nesting_is_a_dead_letter_not_a_crash(raw: bytes) -> None:
    assert dead(raw).error_code in {"not_json", "too_large", "missing_type"}


def test_strings_are_not_coerced_from_numbers() -> None:
    for field in ("event_id", "user_id", "item_id"):
        assert dead(encode({**good(), field: 12})).error_code == "invalid_field"
    assert dead(encode(good("purchase", order_id=7))).error_code == "invalid_field"
    assert dead(encode(good("purchase", items=[{"item_id": 3}]))).error_code == "invalid_field"


# --- personal data never reaches an output --------------------------------------------------

PERSONAL = {"name": "Alice Example", "email": "alice@example.com", "phone": "+31 6 1234"}


def test_extra_fields_are_dropped_by_the_models() -> None:
    event = parsed(encode(good(**PERSONAL)))
    dumped = json.dumps(event.model_dump())
    assert "Alice" not in dumped and "alice@example.com" not in dumped
    line = {"item_id": "a", "email": "alice@example.com"}
    purchase = parsed(encode(good("purchase", items=[line], **PERSONAL)))
    assert "alice" not in json.dumps(purchase.model_dump())


def test_personal_fields_never_reach_actions_or_decisions() -> None:
    records = [
        good("purchase", event_id="p", items=[{"item_id": "bin-1", "email": "x@y"}], **PERSONAL),
        good("cart", event_id="c", item_id="lamp-1", ts="2025-01-01T00:01:00Z", **PERSONAL),
        good("browse", event_id="b", item_id="rom", ts="2025-01-01T00:02:00Z", **PERSONAL),
    ]
    text = "".join(json.dumps(r) + "\n" for r in records)
    actions, decisions = io.BytesIO(), io.BytesIO()
    replay(
        numbered(text),
        Policy(),
        shop(),
        FileSink(actions, decisions),
        until=BASE_MS + 10**8,
    )
    written = actions.getvalue().decode() + decisions.getvalue().decode()
    assert actions.getvalue().decode().count("\n") == 2  # a similar item and a basket reminder
    for value in ("Alice", "alice@example.com", "x@y", "+31", "name", "email", "phone"):
        assert value not in written


# --- JSON Schema files ------------------------------------------------------------------------


def test_the_committed_json_schemas_match_the_models() -> None:
    rendered = render_all()
    on_disk = {path.name: path.read_text(encoding="utf-8") for path in JSON_DIR.glob("*.json")}
    stale = sorted(
        name for name in rendered.keys() | on_disk.keys() if rendered.get(name) != on_disk.get(name)
    )
    assert not stale, f"the JSON Schemas are stale ({', '.join(stale)}): run `suppressor schemas`"


def test_the_json_schemas_describe_the_contract() -> None:
    schemas = {name: json.loads(text) for name, text in render_all().items()}
    action = schemas["action.json"]
    assert set(action["required"]) >= {"action_id", "kind", "user_id", "ts", "items"}
    assert action["additionalProperties"] is True  # consumers ignore fields they do not know
    assert {schema["$schema"] for schema in schemas.values()} == {
        "https://json-schema.org/draft/2020-12/schema"
    }
    assert action["properties"]["schema_version"]["const"] == 2
    assert action["properties"]["ts"]["format"] == "date-time"
    assert "seed_items" in action["required"]
    assert schemas["event.json"].get("additionalProperties") is not True  # inputs are strict
    kinds = json.dumps(action["properties"]["kind"])
    assert "basket_recovery" in kinds and "similar_item" in kinds
    assert schemas["event.browse.json"]["properties"]["ts"]["format"] == "date-time"


def test_a_huge_record_keeps_only_its_head_in_the_dead_letter() -> None:
    raw = encode(good(note="é" * 600_000))  # 1.2 MB: over the broker's default record size
    letter = dead(raw)
    assert letter.error_code == "too_large"
    assert letter.truncated_from == len(raw)
    assert letter.encoding == "text"  # the cut does not split the two-byte 'é'
    assert raw.startswith(letter.original.encode())
    assert MAX_ORIGINAL_BYTES - 3 <= len(letter.original.encode()) <= MAX_ORIGINAL_BYTES
    assert len(json.dumps(letter.model_dump(mode="json"))) < 1_000_000
    assert dead(b"{not json").truncated_from is None


def test_a_huge_binary_record_keeps_its_head_as_base64() -> None:
    raw = b"\xff" * 2_000_000
    letter = dead(raw)
    assert letter.encoding == "base64"
    assert base64.b64decode(letter.original) == raw[:MAX_ORIGINAL_BYTES]
    assert letter.truncated_from == 2_000_000


def test_timestamps_before_year_1000_are_formatted_with_four_digits() -> None:
    assert format_ms(parse_to_ms("0001-01-01T00:00:00Z")) == "0001-01-01T00:00:00Z"
    assert format_ms(parse_to_ms("0999-12-31T23:59:59.5Z")) == "0999-12-31T23:59:59.500Z"
    assert format_ms(parse_to_ms("9999-12-31T23:59:59Z")) == "9999-12-31T23:59:59Z"


def test_event_bytes_read_back_equal_without_unknown_fields() -> None:
    """What the worker forwards to the repartition topic: the admitted event, not the bytes."""
    where = SourcePosition(topic="t", partition=0, offset=0)
    lines = (REPO_EXAMPLES / "events.jsonl").read_bytes().splitlines()
    parsed = [parse_event(line, where) for line in lines if line.strip()]
    good = [event for event in parsed if not isinstance(event, DeadLetter)]
    assert len(good) > 20
    for event in map(event_from_wire, good):
        assert admit(event_bytes(event), where, None, 0) == event
    raw = json.dumps(
        {
            "event_id": "e1",
            "type": "browse",
            "user_id": "u1",
            "item_id": "pen-1",
            "ts": "2025-03-01T10:00:00.250+02:00",
            "email": "jane@example.com",
            "name": "Jane Doe",
        }
    ).encode()
    event = admit(raw, where, None, 0)
    assert not isinstance(event, DeadLetter)
    encoded = event_bytes(event)
    assert b"jane" not in encoded.lower() and b"Doe" not in encoded
    assert admit(encoded, where, None, 0) == event
