"""Between the wire and the engine: events and catalog items in, records out,
and user state to bytes and back for the changelog-backed table.

Only ids, timestamps and reason codes are ever written: the engine's values
carry nothing else, and the wire models have already dropped unknown fields.
"""

from __future__ import annotations

import json
from typing import Any

from schemas import events as wire
from schemas.catalog import CatalogItem
from schemas.outputs import SCHEMA_VERSION
from schemas.timefmt import format_ms
from suppressor.domain.catalog import Item
from suppressor.domain.model import (
    Action,
    Basket,
    Conversion,
    Decision,
    Event,
    Sent,
    UserState,
    Watch,
)


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


def dumps(record: dict[str, Any]) -> str:
    """Compact JSON, field order as built: byte-identical for identical input."""
    return _ENCODER.encode(record)


# --- user state <-> bytes (the table's value) -------------------------------------

_STATE_VERSION = 1


def state_to_bytes(state: UserState) -> bytes:
    basket = state.basket
    data = {
        "v": _STATE_VERSION,
        "u": state.user_id,
        "c": state.customer,
        "p": sorted(state.purchased),
        "o": sorted(state.owned_one_off),
        "d": sorted(state.visited),
        "r": sorted(state.ruled_out),
        "b": None
        if basket is None
        else [
            [[item, list(adds)] for item, adds in basket.items],
            list(basket.episode_items),
            basket.deadline,
            basket.reminders,
            basket.bought_any,
        ],
        "cb": state.consent_basket,
        "cs": state.consent_similar,
        "mw": state.max_per_week,
        "oi": state.opted_in_similar,
        "s": [[s.ts, s.kind, list(s.items)] for s in state.sent],
        "lb": state.last_browse,
        "w": [[*watch[:3], list(watch.items), *watch[4:]] for watch in state.watching],
        "q": [_event_to_list(event) for event in state.pending],
    }
    return json.dumps(data, separators=(",", ":")).encode()


def state_from_bytes(raw: bytes) -> UserState:
    data = json.loads(raw)
    if data.get("v") != _STATE_VERSION:
        raise ValueError(f"unknown user state version {data.get('v')!r}")
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
        purchased=frozenset(data["p"]),
        owned_one_off=frozenset(data["o"]),
        visited=frozenset(data["d"]),
        ruled_out=frozenset(data["r"]),
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
        pending=[_event_from_list(row) for row in data["q"]],
    )


def _event_to_list(event: Event) -> list[Any]:
    return [list(v) if isinstance(v, tuple) else v for v in event]


def _event_from_list(row: list[Any]) -> Event:
    values: list[Any] = [tuple(v) if isinstance(v, list) else v for v in row]
    return Event(*values)
