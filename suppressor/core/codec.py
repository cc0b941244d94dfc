"""Between the wire and the engine: events and catalog items in, records out,
and user state to bytes and back for the changelog-backed table.

Only ids, timestamps and reason codes are ever written: the engine's values
carry nothing else, and the wire models have already dropped unknown fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, get_args

import msgspec

from suppressor.core.catalog import Item
from suppressor.core.engine import ADDS_KEPT_PER_LINE, Outcome
from suppressor.core.model import (
    Action,
    Basket,
    Conversion,
    Decision,
    Event,
    PendingSimilar,
    RuledOutWhy,
    Seed,
    Sent,
    UserState,
    Watch,
)
from suppressor.core.policy import Policy
from suppressor.wire import events as wire
from suppressor.wire.catalog import CatalogItem
from suppressor.wire.outputs import SCHEMA_VERSION, DeadLetter
from suppressor.wire.timefmt import format_ms


def event_from_wire(event: wire.Event) -> Event:
    match event:
        case wire.Browse():
            return Event(event.event_id, "browse", event.user_id, event.ts, item_id=event.item_id)
        case wire.Cart():
            return Event(
                event.event_id,
                "cart",
                event.user_id,
                event.ts,
                item_id=event.item_id,
                action=event.action,
                quantity=event.quantity,
            )
        case wire.Purchase():
            items = tuple(line.item_id for line in event.items)
            return Event(
                event.event_id, "purchase", event.user_id, event.ts, order_id=event.order_id,
                items=items,
            )  # fmt: skip
        case wire.Review():
            return Event(
                event.event_id, "review", event.user_id, event.ts, item_id=event.item_id,
                rating=event.rating,
            )  # fmt: skip
        case wire.Consent():
            return Event(
                event.event_id,
                "consent",
                event.user_id,
                event.ts,
                basket_recovery=event.basket_recovery,
                similar_item=event.similar_item,
                max_actions_per_week=event.max_actions_per_week,
            )
        case _:
            return Event(event.event_id, "forget", event.user_id, event.ts)


def event_record(event: Event) -> dict[str, Any]:
    """A domain event back in its wire form, with the fields the engine keeps (a purchase's
    quantities and prices, a browse's page are not kept)."""
    record: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type,
        "user_id": event.user_id,
        "ts": format_ms(event.ts),
    }
    if event.type in ("browse", "cart", "review"):
        record["item_id"] = event.item_id
    if event.type == "cart":
        record.update(action=event.action, quantity=event.quantity)
    elif event.type == "purchase":
        record.update(order_id=event.order_id, items=[{"item_id": i} for i in event.items])
    elif event.type == "review":
        record["rating"] = event.rating
    elif event.type == "consent":
        for name in ("basket_recovery", "similar_item", "max_actions_per_week"):
            if getattr(event, name) is not None:
                record[name] = getattr(event, name)
    return record


def item_from_wire(item: CatalogItem) -> Item:
    return Item(
        item_id=item.item_id,
        category=item.category,
        kind=item.kind,
        one_off=item.one_off,
        tags=frozenset(item.tags),
        similar=item.similar,
        available=item.available,
    )


def action_record(action: Action, policy_version: str) -> dict[str, Any]:
    return {
        "action_id": action.action_id,
        "kind": action.kind,
        "user_id": action.user_id,
        "ts": format_ms(action.ts),
        "items": list(action.items),
        "seed_item": action.seed_item,
        "seed_items": list(action.seed_items),
        "data_dimensions": list(action.data_dimensions),
        "source_event_ids": list(action.source_event_ids),
        "policy_version": policy_version,
        "schema_version": SCHEMA_VERSION,
    }


def decision_record(decision: Decision, policy_version: str) -> dict[str, Any]:
    return {
        "decision_id": decision.decision_id,
        "user_id": decision.user_id,
        "ts": format_ms(decision.ts),
        "trigger": decision.trigger,
        "outcome": decision.outcome,
        "reason": decision.reason,
        "items": list(decision.items),
        "excluded": dict(decision.excluded),
        "action_id": decision.action_id,
        "source_event_ids": list(decision.source_event_ids),
        "policy_version": policy_version,
        "schema_version": SCHEMA_VERSION,
    }


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def conversion_record(conversion: Conversion, policy_version: str) -> dict[str, Any]:
    converted_at = conversion.converted_at
    return {
        "conversion_id": conversion.conversion_id,
        "action_id": conversion.action_id,
        "kind": conversion.kind,
        "user_id": conversion.user_id,
        "group": "holdout" if conversion.held_out else "treated",
        "action_ts": format_ms(conversion.action_ts),
        "window_end": format_ms(conversion.window_end),
        "converted": converted_at is not None,
        "converted_at": None if converted_at is None else format_ms(converted_at),
        "seconds_to_convert": None
        if converted_at is None
        else (converted_at - conversion.action_ts) / 1000,
        "policy_version": policy_version,
        "schema_version": SCHEMA_VERSION,
    }


_LINE_BREAKS = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def dumps(record: dict[str, Any]) -> str:
    """Compact JSON, field order as built: byte-identical for identical input. UTF-8 as it
    is, except the characters that some line readers take for a line break (U+0085,
    U+2028, U+2029), escaped: one record is always one line of a JSON Lines file."""
    text = _ENCODER.encode(record)
    if "\u0085" in text or "\u2028" in text or "\u2029" in text:
        for char, escaped in _LINE_BREAKS.items():
            text = text.replace(char, escaped)
    return text


_FAST_ENCODE = msgspec.json.Encoder().encode


_LINE_BREAK_BYTES = tuple(char.encode() for char in _LINE_BREAKS)


def json_bytes(record: dict[str, Any]) -> bytes:
    """``dumps(record).encode()``, by msgspec: the same bytes for records of strings, ints,
    bools, None, lists and dicts (it escapes strings as ``json`` does with
    ``ensure_ascii=False``; tests/unit/test_fast_admission.py checks it), about 5 times
    faster. Not for floats (msgspec writes ``1e16`` where ``json`` writes ``1e+16``).
    Anything msgspec refuses, and any record with a character ``dumps`` escapes as a line
    break, takes the ``json`` way, to the same result or error."""
    try:
        data = _FAST_ENCODE(record)
    except (msgspec.EncodeError, TypeError, UnicodeEncodeError, OverflowError):
        return dumps(record).encode()
    if any(char in data for char in _LINE_BREAK_BYTES):
        return dumps(record).encode()
    return data


ACTIONS, DECISIONS, CONVERSIONS = "actions", "decisions", "conversions"
"""The kinds of output record ``output_records`` yields."""


def output_records(outcome: Outcome, policy_version: str) -> Iterator[tuple[str, bytes, bytes]]:
    """The engine's outcome as records: (kind, key = user id, JSON value), actions first.
    The worker sends these bytes and replay writes them, one per line: the same bytes."""
    for action in outcome.actions:
        value = json_bytes(action_record(action, policy_version))
        yield ACTIONS, action.user_id.encode(), value
    for decision in outcome.decisions:
        value = json_bytes(decision_record(decision, policy_version))
        yield DECISIONS, decision.user_id.encode(), value
    for conversion in outcome.conversions:  # seconds_to_convert is a float: json writes it
        value = dumps(conversion_record(conversion, policy_version)).encode()
        yield CONVERSIONS, conversion.user_id.encode(), value


def dead_letter_bytes(dead: DeadLetter) -> bytes:
    """A dead letter as the worker sends it and replay writes it: compact JSON, absent
    positions left out."""
    return json_bytes(dead.model_dump(mode="json", exclude_none=True))


def event_bytes(event: Event) -> bytes:
    """An event in its wire form (the fields the engine keeps): what the worker forwards to
    the partition that owns the user, so nothing else a producer added is copied."""
    return dumps(event_record(event)).encode()


# --- user state <-> bytes (the table's value) -------------------------------------
#
# Version 2 (msgpack, written since issue 17): one array, the version first, the
# at-least-once origins (see suppressor.adapters.state) inside it. Version 1 (JSON, written before):
# an object with "v": 1, and the origins as JSON on a second line; still read, and
# written again as version 2 the next time the user changes.

STATE_VERSION = 2

Origins = dict[str, int]
"""Per input partition (``"<input index>.<partition>"``), the offset of the last event
applied to the state (at-least-once redelivery, see suppressor.adapters.state)."""


class UnreadableState(ValueError):
    """A stored user state this code cannot decode (corrupt, or an unknown version)."""


class _Basket(msgspec.Struct, array_like=True, frozen=True):
    items: tuple[tuple[str, tuple[str, ...]], ...]
    episode_items: tuple[str, ...]
    deadline: int | None
    reminders: int
    bought_any: bool


class _Similar(msgspec.Struct, array_like=True, frozen=True):
    due: int
    seeds: tuple[Seed, ...]
    source_event_ids: tuple[str, ...]


class _StateV2(msgspec.Struct, array_like=True):
    """The encoded state. New fields go at the end with a default: older records then
    decode with that default and the version stays."""

    version: int
    user_id: str
    customer: bool
    purchased: list[str]
    owned_one_off: list[str]
    visited: list[str]
    ruled_out: list[str]
    basket: _Basket | None
    consent_basket: bool | None
    consent_similar: bool | None
    max_per_week: int | None
    opted_in_similar: bool
    sent: tuple[Sent, ...]
    last_browse: int | None
    watching: tuple[Watch, ...]
    pending: list[Event]
    origins: Origins = {}
    similar: _Similar | None = None  # contract version 2 (issue 19)
    ruled_out_why: dict[str, RuledOutWhy] = {}  # issue 22 (`explain`)


_ENCODE = msgspec.msgpack.Encoder().encode
_DECODE = msgspec.msgpack.Decoder(_StateV2).decode


def state_to_bytes(state: UserState, origins: Origins | None = None) -> bytes:
    basket = state.basket
    return _ENCODE(
        _StateV2(
            STATE_VERSION,
            state.user_id,
            state.customer,
            list(state.purchased),
            list(state.owned_one_off),
            list(state.visited),
            list(state.ruled_out),
            None
            if basket is None
            else _Basket(
                basket.items,
                basket.episode_items,
                basket.deadline,
                basket.reminders,
                basket.bought_any,
            ),
            state.consent_basket,
            state.consent_similar,
            state.max_per_week,
            state.opted_in_similar,
            state.sent,
            state.last_browse,
            state.watching,
            state.pending,
            origins or {},
            None
            if state.similar is None
            else _Similar(state.similar.due, state.similar.seeds, state.similar.source_event_ids),
            dict(state.ruled_out_why),
        )
    )


def decode_state(raw: bytes) -> tuple[UserState, Origins]:
    """A stored state (version 2, or version 1 JSON) and its origins; UnreadableState when
    it is neither."""
    if raw[:1] == b"{":
        return _decode_v1(raw)
    try:
        data = _DECODE(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise UnreadableState(f"not a user state: {error}") from None
    if data.version != STATE_VERSION:
        raise UnreadableState(f"unknown user state version {data.version!r}")
    b = data.basket
    basket = (
        None
        if b is None
        else Basket(b.items, b.episode_items, b.deadline, b.reminders, b.bought_any)
    )
    state = UserState(
        user_id=data.user_id,
        customer=data.customer,
        purchased=dict.fromkeys(data.purchased),
        owned_one_off=dict.fromkeys(data.owned_one_off),
        visited=dict.fromkeys(data.visited),
        ruled_out=dict.fromkeys(data.ruled_out),
        ruled_out_why=data.ruled_out_why,
        basket=basket,
        consent_basket=data.consent_basket,
        consent_similar=data.consent_similar,
        max_per_week=data.max_per_week,
        opted_in_similar=data.opted_in_similar,
        sent=data.sent,
        last_browse=data.last_browse,
        watching=data.watching,
        pending=data.pending,
        similar=None
        if data.similar is None
        else PendingSimilar(data.similar.due, data.similar.seeds, data.similar.source_event_ids),
    )
    return state, data.origins


def state_from_bytes(raw: bytes) -> UserState:
    return decode_state(raw)[0]


def _decode_v1(raw: bytes) -> tuple[UserState, Origins]:
    text, _, origins = raw.partition(b"\n")
    try:
        data = json.loads(text)
        if data.get("v") != 1:
            raise UnreadableState(f"unknown user state version {data.get('v')!r}")
        return _state_v1(data), dict(json.loads(origins)) if origins else {}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        if isinstance(error, UnreadableState):
            raise
        raise UnreadableState(f"not a version 1 user state: {error!r}") from None


def _state_v1(data: dict[str, Any]) -> UserState:
    b = data["b"]
    basket = (
        None
        if b is None
        else Basket(
            items=tuple((item, tuple(adds)) for item, adds in b[0]),
            episode_items=tuple(b[1]),
            deadline=b[2],
            reminders=b[3],
            bought_any=b[4],
        )
    )
    return UserState(
        user_id=data["u"],
        customer=data["c"],
        purchased=dict.fromkeys(data["p"]),
        owned_one_off=dict.fromkeys(data["o"]),
        visited=dict.fromkeys(data["d"]),
        ruled_out=dict.fromkeys(data["r"]),
        basket=basket,
        consent_basket=data["cb"],
        consent_similar=data["cs"],
        max_per_week=data["mw"],
        opted_in_similar=data["oi"],
        sent=tuple(Sent(ts, kind, tuple(items)) for ts, kind, items in data["s"]),
        last_browse=data["lb"],
        watching=tuple(
            Watch(closes, action_id, kind, tuple(items), ts, held_out, converted_at)
            for closes, action_id, kind, items, ts, held_out, converted_at in data.get("w", ())
        ),
        pending=[_event_v1(row) for row in data["q"]],
    )


def _event_v1(row: list[Any]) -> Event:
    values: list[Any] = [tuple(v) if isinstance(v, list) else v for v in row]
    return Event(*values)


# --- the largest state the limits allow ------------------------------------------------

ID_BYTES = 256 * 4 + 3
"""The most an id takes encoded: 256 characters (the wire schemas' limit) of 4 UTF-8 bytes,
and a msgpack str header."""
NUMBER_BYTES = 9
"""The most a number, a bool or None takes (a 64-bit int and its marker)."""
HEADER_BYTES = 5
"""A msgpack array or map header at most."""


def worst_case_state_bytes(policy: Policy, input_partitions: int) -> int:
    """An upper bound of the encoded size of any state ``policy``'s ``state_limits`` allow,
    with every id at its longest, origins for ``input_partitions`` input partitions
    (every input topic's partitions, plus the repartition topic's). The worker refuses to
    start when the changelog cannot take that much (suppressor.adapters.app)."""
    limits = policy.state_limits
    action_items = max(policy.max_similar_items, limits.basket_items)
    # ts, kind, items, action id, held out
    sent = HEADER_BYTES * 2 + 2 * NUMBER_BYTES + 2 * ID_BYTES + action_items * ID_BYTES
    watch = HEADER_BYTES * 2 + 4 * NUMBER_BYTES + 2 * ID_BYTES + action_items * ID_BYTES
    line = HEADER_BYTES * 2 + ID_BYTES + ADDS_KEPT_PER_LINE * ID_BYTES
    basket = HEADER_BYTES * 3 + 4 * NUMBER_BYTES + limits.basket_items * (line + ID_BYTES)
    origin = 2 * ID_BYTES // 4 + NUMBER_BYTES  # "<index>.<partition>": short digits
    id_sets = (
        limits.purchased_items
        + limits.ruled_out_items
        + limits.visited_destinations
        + limits.owned_one_off_categories
    )
    return (
        HEADER_BYTES * 8
        + 10 * NUMBER_BYTES
        + ID_BYTES  # user id
        + id_sets * ID_BYTES
        + basket
        + limits.recent_actions * (sent + watch)
        + limits.held_bytes
        + input_partitions * origin
        + HEADER_BYTES * 3
        + NUMBER_BYTES
        + limits.similar_seeds * (HEADER_BYTES + ID_BYTES + 20)  # item and dimension
        + (limits.similar_seeds + 1) * ID_BYTES  # the events that brought them
        + HEADER_BYTES
        + limits.ruled_out_items * (ID_BYTES + WHY_BYTES)  # why each item is ruled out
    )


WHY_BYTES = 1 + max(len(why) for why in get_args(RuledOutWhy))
"""The most a ruled-out item's reason takes encoded (a short msgpack str)."""
