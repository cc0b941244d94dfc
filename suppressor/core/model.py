"""Plain values the engine works on: events, per-user state, decisions, actions.

Times are integer milliseconds since the Unix epoch (event time). State fields
hold values that are never changed in place (tuples, frozen dataclasses, and the
ordered id sets below, which are replaced, never updated) except the reorder
buffer `pending`, so a shallow copy plus a copy of `pending` is a full copy:
cheap enough to keep the engine pure at 100k events a second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Literal, NamedTuple

EventType = Literal["browse", "cart", "purchase", "review", "consent", "forget"]
ActionKind = Literal["basket_recovery", "similar_item"]
Trigger = Literal["browse_nudge", "product_ad", "similar_item", "basket_recovery"]

Ids = Mapping[str, None]
"""Item ids (or categories) in the order they were last added, oldest first: a dict used
as an ordered set, so that a state limit can evict the oldest (see `Policy.state_limits`).
Replaced, never changed in place (`with_added`, `without`)."""


def with_added(ids: Ids, added: Iterable[str], limit: int) -> Ids:
    """`ids` with `added` moved to (or put at) the newest end, the oldest beyond `limit` out."""
    new = dict.fromkeys(ids)
    for item in added:
        new.pop(item, None)
        new[item] = None
    excess = len(new) - limit
    if excess > 0:
        for oldest in list(new)[:excess]:
            del new[oldest]
    return new


def without(ids: Ids, removed: Iterable[str]) -> Ids:
    """`ids` less `removed` (the same object when none of them is there)."""
    gone = [item for item in removed if item in ids]
    if not gone:
        return ids
    new = dict.fromkeys(ids)
    for item in gone:
        del new[item]
    return new


class Event(NamedTuple):
    """An input event as the engine needs it; built from the wire models by the shell."""

    event_id: str
    type: EventType
    user_id: str
    ts: int
    item_id: str | None = None
    action: Literal["add", "remove"] | None = None
    quantity: int = 1
    order_id: str | None = None
    items: tuple[str, ...] = ()
    rating: int | None = None
    basket_recovery: bool | None = None
    similar_item: bool | None = None
    max_actions_per_week: int | None = None

    @property
    def order_key(self) -> tuple[int, str]:
        return (self.ts, self.event_id)


def held_size(event: Event) -> int:
    """An upper bound of the bytes `event` takes in the state's encoding (UTF-8 strings, a
    few bytes of framing per value): what `state_limits.held_bytes` counts."""
    strings = [event.event_id, event.user_id, *event.items]
    for value in (event.item_id, event.order_id):
        if value is not None:
            strings.append(value)
    return EVENT_FRAMING + sum(len(text.encode()) + STRING_FRAMING for text in strings)


EVENT_FRAMING = 13 * 9 + 8
"""Bytes of an encoded event besides its strings: every field as a 9-byte number at most."""
STRING_FRAMING = 5
"""Bytes of framing around one encoded string (a msgpack str32 header at most)."""


@dataclass(frozen=True, slots=True)
class Basket:
    """The current basket episode: from the first add to an empty basket until it empties."""

    items: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (item_id, add event ids), in add order
    episode_items: tuple[str, ...] = ()  # every item added during the episode
    deadline: int | None = None  # armed reminder time (last add + abandon_after)
    reminders: int = 0  # reminders emitted in this episode
    bought_any: bool = False

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(item for item, _ in self.items)


class Seed(NamedTuple):
    """An item a similar-item message may start from, and the data dimension it uses."""

    item_id: str
    dimension: str  # purchase_history, travel_history or reviews


@dataclass(frozen=True, slots=True)
class PendingSimilar:
    """The user's one pending similar-item trigger (SPEC section 4): due `similar_after`
    after its first seed; later seeds join it until it fires at `due`."""

    due: int
    seeds: tuple[Seed, ...]  # in the order they joined, one per item
    source_event_ids: tuple[str, ...]  # the events that brought seeds, in that order


class Watch(NamedTuple):
    """An action (emitted or held out) whose attribution window is still open."""

    closes: int  # action ts + attribution_window
    action_id: str
    kind: ActionKind
    items: tuple[str, ...]
    ts: int
    held_out: bool
    converted_at: int | None = None


class Sent(NamedTuple):
    """An emitted action remembered for the frequency cap and dedupe (and, with its id, for
    `explain`: a state written before issue 22 has no id, "")."""

    ts: int
    kind: ActionKind
    items: tuple[str, ...]  # sorted
    action_id: str = ""
    held_out: bool = False


RuledOutWhy = Literal["removed_from_basket", "reviewed_badly"]
"""Why an item is ruled out (SPEC section 4): the person's last word on it."""


@dataclass(slots=True)
class UserState:
    user_id: str = ""
    customer: bool = False
    purchased: Ids = field(default_factory=dict)
    owned_one_off: Ids = field(default_factory=dict)  # categories of one-off items bought
    visited: Ids = field(default_factory=dict)  # destinations bought or reviewed
    ruled_out: Ids = field(default_factory=dict)
    # why each ruled-out item is (a subset of ruled_out: none for a state written before
    # issue 22); replaced, never changed in place
    ruled_out_why: Mapping[str, RuledOutWhy] = field(default_factory=dict)
    basket: Basket | None = None
    consent_basket: bool | None = None
    consent_similar: bool | None = None
    max_per_week: int | None = None
    opted_in_similar: bool = False  # ever sent consent with similar_item: true
    sent: tuple[Sent, ...] = ()
    last_browse: int | None = None
    watching: tuple[Watch, ...] = ()  # open attribution windows, by (closes, action_id)
    similar: PendingSimilar | None = None
    pending: list[Event] = field(default_factory=list)  # reorder buffer, by (ts, event_id)

    def copy(self) -> UserState:
        values = list(_STATE_FIELDS(self))
        values[_PENDING] = list(values[_PENDING])
        return UserState(*values)

    @property
    def deadline(self) -> int | None:
        return self.basket.deadline if self.basket else None


_STATE_FIELDS = attrgetter(*(field.name for field in fields(UserState)))
_PENDING = [field.name for field in fields(UserState)].index("pending")


class Action(NamedTuple):
    action_id: str
    kind: ActionKind
    user_id: str
    ts: int
    items: tuple[str, ...]
    seed_items: tuple[str, ...]  # a similar item's seeds in the order they joined
    data_dimensions: tuple[str, ...]
    source_event_ids: tuple[str, ...]

    @property
    def seed_item(self) -> str | None:
        return self.seed_items[0] if self.seed_items else None


class Conversion(NamedTuple):
    """An attribution window closed: did the action's items (or basket) get bought?"""

    conversion_id: str
    action_id: str
    kind: ActionKind
    user_id: str
    held_out: bool
    action_ts: int
    window_end: int
    converted_at: int | None


class Decision(NamedTuple):
    decision_id: str
    user_id: str
    ts: int
    trigger: Trigger
    reason: str | None  # None when emitted
    items: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]  # (item_id, reason), in candidate order
    action_id: str | None
    source_event_ids: tuple[str, ...]

    @property
    def outcome(self) -> Literal["emitted", "suppressed"]:
        return "emitted" if self.reason is None else "suppressed"


def stable_id(*parts: str | int | tuple[str, ...] | None) -> str:
    """A deterministic id: the same parts give the same id in every process and replay."""
    text = "\x1f".join(
        [
            "\x1e".join(part) if type(part) is tuple else ("" if part is None else str(part))
            for part in parts
        ]
    )
    return _blake2b(text.encode(), digest_size=16).hexdigest()


_blake2b = hashlib.blake2b
