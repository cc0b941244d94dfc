"""Factories for the unit tests: small, readable events, catalogs and policies.

Plain functions (importable as ``from tests.unit.conftest import event, ...``) so
that hypothesis strategies can use them too. Times are minutes after ``BASE``
(2025-01-01T00:00:00Z); the engine works in milliseconds since the epoch.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from suppressor.core.catalog import Catalog, Item
from suppressor.core.engine import Engine, Outcome
from suppressor.core.model import Action, Conversion, Decision, Event
from suppressor.core.policy import Policy, policy_from_mapping
from suppressor.core.processor import DictStore, Processor

BASE_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_ids = itertools.count(1)


MS = 1 / 60_000
"""One millisecond, in the minutes the factories take: "just after" a boundary."""


def at(minutes: float) -> int:
    """Event time `minutes` after BASE, in milliseconds."""
    return BASE_MS + round(minutes * MINUTE)


def iso(minutes: float) -> str:
    """The RFC 3339 form of at(minutes), as the wire and the outputs write it."""
    from suppressor.wire.timefmt import format_ms

    return format_ms(at(minutes))


def event(
    type: str,
    user: str = "u1",
    ts: float = 0,
    *,
    eid: str | None = None,
    items: Sequence[str] = (),
    **fields: Any,
) -> Event:
    """A domain Event; `ts` in minutes after BASE; ids e000001, e000002, ... unless given."""
    return Event(
        event_id=eid or f"e{next(_ids):06d}",
        type=type,  # type: ignore[arg-type]
        user_id=user,
        ts=at(ts),
        items=tuple(items),
        **fields,
    )


EVENT_FIELDS = (
    "event_id", "type", "user_id", "ts", "item_id", "action", "quantity", "order_id", "items",
    "rating", "basket_recovery", "similar_item", "max_actions_per_week",
)  # fmt: skip


def retime(ev: Event, minutes: float) -> Event:
    """The same event at another time."""
    fields = {name: getattr(ev, name) for name in EVENT_FIELDS}
    return Event(**{**fields, "ts": at(minutes)})


def browse(item: str, user: str = "u1", ts: float = 0, **kw: Any) -> Event:
    return event("browse", user, ts, item_id=item, **kw)


def add(item: str, user: str = "u1", ts: float = 0, **kw: Any) -> Event:
    return event("cart", user, ts, item_id=item, action="add", **kw)


def remove(item: str, user: str = "u1", ts: float = 0, **kw: Any) -> Event:
    return event("cart", user, ts, item_id=item, action="remove", **kw)


def purchase(*items: str, user: str = "u1", ts: float = 0, **kw: Any) -> Event:
    return event("purchase", user, ts, items=items, order_id=f"o-{user}-{ts}", **kw)


def review(item: str, rating: int, user: str = "u1", ts: float = 0, **kw: Any) -> Event:
    return event("review", user, ts, item_id=item, rating=rating, **kw)


def consent(user: str = "u1", ts: float = 0, **kw: Any) -> Event:
    return event("consent", user, ts, **kw)


def forget(user: str = "u1", ts: float = 0, **kw: Any) -> Event:
    return event("forget", user, ts, **kw)


def catalog_item(
    item_id: str,
    category: str = "misc",
    *,
    kind: str = "product",
    one_off: bool = False,
    tags: Iterable[str] = (),
    similar: Sequence[str] | None = None,
    available: bool = True,
) -> Item:
    return Item(
        item_id=item_id,
        category=category,
        kind=kind,  # type: ignore[arg-type]
        one_off=one_off,
        tags=frozenset(tags),
        similar=None if similar is None else tuple(similar),
        available=available,
    )


def catalog(*items: Item) -> Catalog:
    return Catalog(items)


def shop() -> Catalog:
    return Catalog(shop_items())


def shop_items() -> list[Item]:
    """A small shop that exercises every item rule.

    office: two one-off shredders and a (not one-off) bin, ranked by tags;
    fashion: a dress with a curated `similar` list (shoes, itself, an unavailable
    bag, an item missing from the catalog), two shoes;
    city: four destinations ranked by tags.
    """
    return [
        catalog_item("shredder-1", "office", one_off=True, tags={"office", "paper"}),
        catalog_item("shredder-2", "office", one_off=True, tags={"office", "paper", "xl"}),
        catalog_item("bin-1", "office", tags={"office", "paper"}),
        catalog_item("lamp-1", "office", tags={"light"}),
        catalog_item(
            "dress-1", "dress", tags={"summer"}, similar=["shoes-1", "dress-1", "bag-1", "ghost"]
        ),
        catalog_item("shoes-1", "shoes", tags={"summer"}),
        catalog_item("shoes-2", "shoes", tags={"summer", "beach"}),
        catalog_item("bag-1", "bag", tags={"summer"}, available=False),
        catalog_item("ams", "city", kind="destination", tags={"canals", "bikes", "museums"}),
        catalog_item("bru", "city", kind="destination", tags={"canals", "museums"}),
        catalog_item("cph", "city", kind="destination", tags={"bikes", "harbour"}),
        catalog_item("rom", "city", kind="destination", tags={"ruins"}),
    ]


def policy(**overrides: Any) -> Policy:
    """Policy defaults with overrides, e.g. policy(grace="0s", frequency_cap={"max_actions": 1}).

    Except that a similar item is due at once (`similar_after = "0s"`) unless a test says
    otherwise: most rules are easier to see on the purchase's own moment; the cool-off itself
    is tested in test_similar_items.py."""
    return policy_from_mapping({"similar_after": "0s", **overrides})


# --- running events through the processor ----------------------------------------------


@dataclass
class Run:
    """Everything a run produced, in order, plus the processor for state inspection."""

    processor: Processor
    decisions: list[Decision] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    late_events: int = 0
    erased: set[str] = field(default_factory=set)
    conversions: list[Conversion] = field(default_factory=list)
    stream_time: int | None = None

    def take(self, out: Outcome) -> Outcome:
        self.decisions += out.decisions
        self.actions += out.actions
        self.late_events += out.late_events
        self.erased |= out.erased
        self.conversions += out.conversions
        return out

    def feed(self, *events: Event) -> Run:
        """Read events in the given order; stream time is the largest ts read (as replay)."""
        for ev in events:
            self.stream_time = ev.ts if self.stream_time is None else max(self.stream_time, ev.ts)
            self.take(self.processor.on_event(ev, self.stream_time))
        return self

    def flush(self) -> Run:
        self.take(self.processor.flush())
        return self

    def advance(self, minutes: float) -> Run:
        self.take(self.processor.advance_to(at(minutes)))
        return self

    def state(self, user: str = "u1") -> Any:
        return self.processor.store.get(user)

    def decided(self, trigger: str | None = None, user: str | None = None) -> list[Decision]:
        return [
            d
            for d in self.decisions
            if (trigger is None or d.trigger == trigger) and (user is None or d.user_id == user)
        ]

    def reasons(self, trigger: str) -> list[str | None]:
        return [d.reason for d in self.decided(trigger)]


def start(policy_: Policy | None = None, catalog_: Catalog | None = None) -> Run:
    engine = Engine(policy_ or policy(), shop() if catalog_ is None else catalog_)
    return Run(Processor(engine, DictStore()))


def run(
    *events: Event,
    policy_: Policy | None = None,
    catalog_: Catalog | None = None,
    until: float | None = None,
) -> Run:
    """Events read in the given order, then end of input (flush), then `until` (minutes)."""
    result = start(policy_, catalog_).feed(*events).flush()
    return result if until is None else result.advance(until)


# --- wire lines (for replay and the CLI) ------------------------------------------------


def wire(ev: Event, **extra: Any) -> dict[str, Any]:
    """The JSON object of an Event as a producer would send it."""
    record: dict[str, Any] = {
        "event_id": ev.event_id,
        "type": ev.type,
        "user_id": ev.user_id,
        "ts": _format(ev.ts),
    }
    if ev.type in ("browse", "review", "cart"):
        record["item_id"] = ev.item_id
    if ev.type == "cart":
        record["action"] = ev.action
        record["quantity"] = ev.quantity
    if ev.type == "purchase":
        record["order_id"] = ev.order_id or "o"
        record["items"] = [{"item_id": item} for item in ev.items]
    if ev.type == "review":
        record["rating"] = ev.rating
    if ev.type == "consent":
        for key in ("basket_recovery", "similar_item", "max_actions_per_week"):
            if getattr(ev, key) is not None:
                record[key] = getattr(ev, key)
    record.update(extra)
    return record


def jsonl(records: Iterable[dict[str, Any] | Event]) -> str:
    lines = [json.dumps(r if isinstance(r, dict) else wire(r)) for r in records]
    return "".join(line + "\n" for line in lines)


def numbered(text: str | bytes) -> list[tuple[int, bytes]]:
    """Lines as `replay()` takes them: (line number, bytes), blank lines skipped."""
    data = text.encode() if isinstance(text, str) else text
    return [(n, line) for n, line in enumerate(data.splitlines(), start=1) if line.strip()]


def catalog_jsonl(items: Iterable[Item]) -> str:
    records = []
    for item in items:
        record: dict[str, Any] = {
            "item_id": item.item_id,
            "title": item.item_id.title(),
            "category": item.category,
            "kind": item.kind,
            "one_off": item.one_off,
            "tags": sorted(item.tags),
            "available": item.available,
        }
        if item.similar is not None:
            record["similar"] = list(item.similar)
        records.append(json.dumps(record))
    return "".join(line + "\n" for line in records)


def _format(ms: int) -> str:
    from suppressor.wire.timefmt import format_ms

    return format_ms(ms)
