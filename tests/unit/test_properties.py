"""Invariants of issue 3, checked with hypothesis on random per-user histories.

The histories run over the small shop of conftest (one-off shredders, a curated
dress list with an unavailable bag and a missing item, destinations). The
checks do not trust the engine's state: a recording engine logs, in processing
order, every event it applies and every action it emits, and an independent
model recomputes from that applied history what the user had bought, visited,
owned and ruled out when each action was decided.
"""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from suppressor.core.codec import action_record
from suppressor.core.engine import Engine, Outcome
from suppressor.core.model import Action, Event, UserState
from suppressor.core.policy import Policy
from suppressor.core.processor import DictStore, Processor
from suppressor.core.replay.run import FileSink, replay
from suppressor.core.rules import WEEK_MS
from suppressor.wire import outputs
from tests.unit.conftest import (
    BASE_MS,
    DAY,
    MINUTE,
    jsonl,
    numbered,
    policy,
    shop,
    shop_items,
    wire,
)

CATALOG = shop()
ITEMS = (*(item.item_id for item in shop_items()), "ghost")
KINDS = {"basket_recovery", "similar_item"}

POLICIES = [
    Policy(),
    policy(
        grace="2m",
        abandon_after="30m",
        session_gap="10m",
        max_basket_reminders=2,
        frequency_cap={"max_actions": 2, "per": "3h"},
        dedupe_window="2h",
        max_similar_items=2,
    ),
    policy(grace="1m", frequency_cap={"max_actions": 1, "per": "1d"}, max_basket_reminders=0),
    policy(max_data_dimensions=0),
    policy(grace="10m", default_consent={"basket_recovery": False, "similar_item": False}),
    policy(grace="0s", abandon_after="5m", frequency_cap={"max_actions": 5, "per": "1h"}),
]
NONZERO_GRACE = [p for p in POLICIES if p.grace > 0]

# minutes between a user's consecutive events: ties, grace, session gap and deadline edges
STEPS = [0, 0, 1, 2, 3, 5, 10, 29, 30, 31, 55, 59, 60, 61, 65, 120, 24 * 60]
TYPES = ["browse", "cart", "cart", "cart", "purchase", "purchase", "review", "consent", "forget"]

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
QUICK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def user_history(draw: st.DrawFn, user: str, max_size: int = 16) -> list[Event]:
    """One user's events in time order; event ids rise with time."""
    n = draw(st.integers(0, max_size))
    minutes = draw(st.integers(0, 90))
    # a few items the user keeps coming back to, so that adds, reviews and purchases meet
    focus = st.sampled_from(draw(st.lists(st.sampled_from(ITEMS), min_size=1, max_size=4)))
    pick = focus | focus | st.sampled_from(ITEMS)
    events = []
    for i in range(n):
        minutes += draw(st.sampled_from(STEPS))
        kind = draw(st.sampled_from(TYPES))
        base: dict[str, Any] = {
            "event_id": f"{user}-{i:03d}",
            "type": kind,
            "user_id": user,
            "ts": BASE_MS + minutes * MINUTE + draw(st.sampled_from([0, 0, 1, 999])),
        }
        item = draw(pick)
        if kind == "browse":
            base["item_id"] = item
        elif kind == "cart":
            base |= {"item_id": item, "action": draw(st.sampled_from(["add", "add", "remove"]))}
        elif kind == "purchase":
            bought = draw(st.lists(pick, min_size=1, max_size=3))
            base |= {"items": tuple(bought), "order_id": f"o{i}"}
        elif kind == "review":
            base |= {"item_id": item, "rating": draw(st.integers(1, 5))}
        elif kind == "consent":
            optional = st.none() | st.booleans()
            base |= {
                "basket_recovery": draw(optional),
                "similar_item": draw(optional),
                "max_actions_per_week": draw(st.none() | st.integers(0, 3)),
            }
        events.append(Event(**base))
    return events


@st.composite
def histories(draw: st.DrawFn, users: int = 3) -> list[list[Event]]:
    return [draw(user_history(f"u{i}")) for i in range(users)]


def merged(per_user: list[list[Event]], keys: list[int]) -> list[Event]:
    """Every user's events in global ts order; `keys` break ties between users."""
    flat = [e for events in per_user for e in events]
    order = sorted(range(len(flat)), key=lambda i: (flat[i].ts, keys[i % len(keys)] if keys else 0))
    return [flat[i] for i in order]


def arrival_order(events: list[Event], delays: list[int]) -> list[Event]:
    """Events in the order they would be read if each were delayed by its delay (ms)."""
    keyed = sorted(range(len(events)), key=lambda i: (events[i].ts + delays[i % len(delays)], i))
    return [events[i] for i in keyed]


# --- a recording engine and an independent model of what the user did --------------------


class RecordingEngine(Engine):
    """Logs, in processing order, every applied event and every emitted action."""

    def __init__(self, policy_: Policy) -> None:
        super().__init__(policy_, CATALOG)
        self.log: list[tuple[str, Any]] = []

    def _apply(self, state: UserState, event: Event, out: Outcome) -> UserState:
        self.log.append(("event", event))
        return super()._apply(state, event, out)

    def _decide(self, state: UserState, out: Outcome, *args: Any, **kwargs: Any) -> bool:
        emitted = super()._decide(state, out, *args, **kwargs)
        if emitted:
            self.log.append(("action", out.actions[-1]))
        return emitted


@dataclass
class Known:
    """What a user did, from the applied history since their last forget."""

    epoch: int = 0
    bought: set[str] = field(default_factory=set)
    visited: set[str] = field(default_factory=set)
    owned: set[str] = field(default_factory=set)
    ruled_out: set[str] = field(default_factory=set)
    event_ids: set[str] = field(default_factory=set)
    consent: dict[str, bool | None] = field(default_factory=dict)
    opted_in: bool = False
    own_cap: int | None = None
    sent: list[int] = field(default_factory=list)

    def apply(self, event: Event) -> None:
        self.event_ids.add(event.event_id)
        item = CATALOG.get(event.item_id or "")
        if event.type == "purchase":
            for item_id in event.items:
                self.bought.add(item_id)
                bought = CATALOG.get(item_id)
                if bought is not None and bought.kind == "destination":
                    self.visited.add(item_id)
                if bought is not None and bought.one_off:
                    self.owned.add(bought.category)
        elif event.type == "review":
            if item is not None and item.kind == "destination":
                self.visited.add(item.item_id)
            if (event.rating or 3) <= 2:
                self.ruled_out.add(event.item_id or "")
        elif event.type == "cart":
            if event.action == "remove":
                self.ruled_out.add(event.item_id or "")
            else:
                self.ruled_out.discard(event.item_id or "")
        elif event.type == "consent":
            for kind in KINDS:
                if getattr(event, kind) is not None:
                    self.consent[kind] = getattr(event, kind)
            self.opted_in = self.opted_in or bool(event.similar_item)
            if event.max_actions_per_week is not None:
                self.own_cap = event.max_actions_per_week

    def offends(self, item_id: str) -> str | None:
        item = CATALOG.get(item_id)
        if item_id in self.bought:
            return "bought"
        if item_id in self.visited:
            return "visited"
        if item_id in self.ruled_out:
            return "ruled out"
        if item is not None and item.one_off and item.category in self.owned:
            return "one-off kind owned"
        return None


def check_invariants(engine: RecordingEngine, actions: list[Action]) -> None:
    pol = engine.policy
    known: dict[str, Known] = defaultdict(Known)
    by_epoch: dict[tuple[str, int], list[int]] = defaultdict(list)
    logged = []
    for what, value in engine.log:
        if what == "event" and value.type == "forget":
            known[value.user_id] = Known(epoch=known[value.user_id].epoch + 1)
            continue
        if what == "event":
            known[value.user_id].apply(value)
            continue
        action: Action = value
        logged.append(action)
        user = known[action.user_id]
        assert action.kind in KINDS
        assert action.items, action
        for item_id in action.items:
            assert user.offends(item_id) is None, (action, item_id, user.offends(item_id))
        if action.kind == "similar_item":
            assert not set(action.seed_items) & set(action.items), "a seed offered again"
            assert action.seed_item == action.seed_items[0]
            for item_id in action.items:
                item = CATALOG.get(item_id)
                assert item is not None and item.available, (action, item_id)
            assert user.bought or user.opted_in, "a prospect got a similar item"
        assert len(action.data_dimensions) <= pol.max_data_dimensions
        default = getattr(pol.default_consent, action.kind)
        assert user.consent.get(action.kind, default) is not False, "sent without consent"
        assert set(action.source_event_ids) <= user.event_ids, "fired for a forgotten event"
        if user.own_cap is not None:
            recent = [ts for ts in user.sent if ts > action.ts - WEEK_MS]
            assert len(recent) < user.own_cap, "the user's own weekly cap was exceeded"
        user.sent.append(action.ts)
        by_epoch[action.user_id, user.epoch].append(action.ts)
    assert logged == actions  # the log saw every action, in order
    cap = pol.frequency_cap
    for times in by_epoch.values():
        for start_ts in times:
            in_window = [ts for ts in times if start_ts <= ts < start_ts + cap.per]
            assert len(in_window) <= cap.max_actions, (times, cap)
    similar = [a for a in actions if a.kind == "similar_item"]
    reserve = min(cap.reserve_for_basket, max(0, cap.max_actions - 1))
    for index, action in enumerate(actions):  # the reserved slots stay free of similar items
        if action.kind != "similar_item":
            continue
        # Only the actions sent before it: a late cart event can arm a basket deadline that
        # is already past, whose reminder then goes out after this similar item with an
        # earlier ts, and takes the reserved slot as it may.
        in_window = [
            a
            for a in actions[:index]
            if a.user_id == action.user_id and action.ts - cap.per < a.ts < action.ts
        ]
        assert len(in_window) < cap.max_actions - reserve or _forgotten_between(
            engine, action.user_id, in_window, action
        ), (action, in_window)
    orders = Counter(e for a in similar for e in a.source_event_ids)
    assert all(n == 1 for n in orders.values()), "an event seeded two similar-item messages"


def _forgotten_between(
    engine: RecordingEngine, user: str, earlier: list[Action], action: Action
) -> bool:
    """Whether the user was forgotten after the first of `earlier` was sent and before
    `action` was: the cap counts only what the state remembers. By the order things
    happened (the engine's log), not by ts: a late `forget` erases actions with later ts."""
    if not earlier:
        return False
    sent = [value for what, value in engine.log if what != "event"]
    first = min(sent.index(a) for a in earlier)
    position = 0  # actions sent so far, walking the log
    for what, value in engine.log:
        if what == "event":
            if value.type == "forget" and value.user_id == user and position > first:
                return True
            continue
        if value == action:
            return False
        position += 1
    return False


def process(engine: Engine, events: list[Event], until: int) -> list[Action]:
    processor = Processor(engine, DictStore())
    actions: list[Action] = []
    stream_time: int | None = None
    for ev in events:
        stream_time = ev.ts if stream_time is None else max(stream_time, ev.ts)
        actions += processor.on_event(ev, stream_time).actions
    actions += processor.flush().actions
    actions += processor.advance_to(until).actions
    return actions


def until_after(events: list[Event]) -> int:
    return max((e.ts for e in events), default=BASE_MS) + 3 * DAY


# --- the invariants -------------------------------------------------------------------------


@FAST
@given(
    per_user=histories(),
    pol=st.sampled_from(POLICIES),
    delays=st.lists(st.tuples(st.integers(0, 10**9), st.booleans()), min_size=1, max_size=40),
    allow_late=st.booleans(),
)
def test_no_action_breaks_a_rule_whatever_the_arrival_order(
    per_user: list[list[Event]], pol: Policy, delays: list[tuple[int, bool]], allow_late: bool
) -> None:
    """Only the two kinds; never a bought, visited, ruled-out or owned-kind item; within
    the data-dimension budget and the frequency cap; nothing for forgotten events.
    Events arrive up to `grace` late, and with `allow_late` some up to 6 hours late."""
    events = merged(per_user, [])
    bounded = [
        d % (6 * 60 * MINUTE) if allow_late and late else d % (pol.grace + 1) for d, late in delays
    ]
    engine = RecordingEngine(pol)
    actions = process(engine, arrival_order(events, bounded), until_after(events))
    check_invariants(engine, actions)


@FAST
@given(per_user=histories(users=1), pol=st.sampled_from(POLICIES))
def test_the_invariants_hold_for_a_single_user_in_time_order(
    per_user: list[list[Event]], pol: Policy
) -> None:
    events = per_user[0]
    engine = RecordingEngine(pol)
    check_invariants(engine, process(engine, events, until_after(events)))


@QUICK
@given(per_user=histories(), pol=st.sampled_from(POLICIES))
def test_after_forget_nothing_fires_for_what_came_before(
    per_user: list[list[Event]], pol: Policy
) -> None:
    events = merged(per_user, [])
    assume(any(e.type == "forget" for e in events))
    engine = RecordingEngine(pol)
    actions = process(engine, events, until_after(events))
    for user_events in per_user:
        forgets = [e for e in user_events if e.type == "forget"]
        if not forgets:
            continue
        last = max(forgets, key=lambda e: (e.ts, e.event_id))
        before = {e.event_id for e in user_events if (e.ts, e.event_id) < (last.ts, last.event_id)}
        for action in actions:
            if action.user_id == last.user_id:
                fired_for_old = set(action.source_event_ids) & before
                assert not fired_for_old or action.ts <= last.ts, action
    check_invariants(engine, actions)


# --- determinism and order independence (through replay, JSON in and out) -------------------


def replay_text(events: list[Event], pol: Policy, until: int | None = None) -> tuple[str, str]:
    actions, decisions = io.BytesIO(), io.BytesIO()
    replay(numbered(jsonl(events)), pol, CATALOG, FileSink(actions, decisions), until=until)
    return actions.getvalue().decode(), decisions.getvalue().decode()


def by_user(text: str) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for line in text.splitlines():
        grouped[json.loads(line)["user_id"]].append(line)
    return dict(grouped)


@QUICK
@given(per_user=histories(), pol=st.sampled_from(POLICIES))
def test_replay_is_deterministic(per_user: list[list[Event]], pol: Policy) -> None:
    events = merged(per_user, [])
    until = until_after(events)
    assert replay_text(events, pol, until) == replay_text(events, pol, until)


@FAST
@given(
    per_user=histories(),
    pol=st.sampled_from(NONZERO_GRACE),
    keys_a=st.lists(st.integers(), min_size=1, max_size=50),
    keys_b=st.lists(st.integers(), min_size=1, max_size=50),
)
def test_replay_does_not_depend_on_how_other_users_events_are_interleaved(
    per_user: list[list[Event]], pol: Policy, keys_a: list[int], keys_b: list[int]
) -> None:
    """Two merges in non-decreasing ts order (nothing late): each user's outputs match."""
    until = until_after(merged(per_user, []))
    actions_a, decisions_a = replay_text(merged(per_user, keys_a), pol, until)
    actions_b, decisions_b = replay_text(merged(per_user, keys_b), pol, until)
    assert by_user(actions_a) == by_user(actions_b)
    assert by_user(decisions_a) == by_user(decisions_b)


@FAST
@given(
    per_user=histories(),
    pol=st.sampled_from(NONZERO_GRACE),
    delays=st.lists(st.integers(0, 10**9), min_size=1, max_size=60),
    with_until=st.booleans(),
)
def test_a_shuffle_within_grace_gives_the_same_actions(
    per_user: list[list[Event]], pol: Policy, delays: list[int], with_until: bool
) -> None:
    """Each event read up to (strictly less than) `grace` later than in ts order: nothing
    is late, and the set of actions and decisions is the same."""
    events = merged(per_user, [])
    shuffled = arrival_order(events, [d % pol.grace for d in delays])
    until = until_after(events) if with_until else None
    actions_a, decisions_a = replay_text(events, pol, until)
    actions_b, decisions_b = replay_text(shuffled, pol, until)
    assert sorted(actions_a.splitlines()) == sorted(actions_b.splitlines())
    assert sorted(decisions_a.splitlines()) == sorted(decisions_b.splitlines())


@QUICK
@given(per_user=histories(), pol=st.sampled_from(POLICIES))
def test_every_action_record_validates_against_the_contract(
    per_user: list[list[Event]], pol: Policy
) -> None:
    events = merged(per_user, [])
    actions = process(Engine(pol, CATALOG), events, until_after(events))
    for action in actions:
        outputs.Action.model_validate(action_record(action, pol.version))


# --- no input line can crash the replay -------------------------------------------------------

OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
TIMESTAMPS = st.one_of(
    st.datetimes(timezones=OFFSETS).map(lambda d: d.isoformat()),  # years 0001 to 9999
    st.datetimes(datetime(2024, 12, 31), datetime(2025, 1, 3)).map(
        lambda d: d.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
    ),
    st.text(max_size=30),
    st.integers(),
    st.none(),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_VALUES = st.one_of(JSON, st.sampled_from(ITEMS), st.sampled_from(["add", "remove"]))


@st.composite
def near_events(draw: st.DrawFn) -> dict[str, Any]:
    """Objects that look like events, with any field possibly wrong, missing or extra."""
    record: dict[str, Any] = {
        "event_id": draw(st.sampled_from(["e1", "e2", "", "e3"]) | FIELD_VALUES),
        "type": draw(
            st.sampled_from(["browse", "cart", "purchase", "review", "consent", "forget"])
            | FIELD_VALUES
        ),
        "user_id": draw(st.sampled_from(["u1", "u2"]) | FIELD_VALUES),
        "ts": draw(TIMESTAMPS),
    }
    for key in ["item_id", "action", "quantity", "order_id", "rating", "similar_item",
                "basket_recovery", "max_actions_per_week", "name", "email"]:  # fmt: skip
        if draw(st.booleans()):
            record[key] = draw(FIELD_VALUES | st.integers(-2, 7))
    if draw(st.booleans()):
        record["items"] = draw(
            st.lists(st.fixed_dictionaries({"item_id": FIELD_VALUES}) | FIELD_VALUES, max_size=3)
        )
    for key in draw(st.lists(st.sampled_from(list(record)), max_size=2, unique=True)):
        del record[key]
    return record


LINES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    JSON.map(lambda v: json.dumps(v).encode()),
    near_events().map(lambda r: json.dumps(r).encode()),
    near_events().map(lambda r: json.dumps(r).encode()[: len(json.dumps(r)) // 2]),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(LINES, max_size=12),
    good=histories(users=2),
    pol=st.sampled_from(POLICIES),
)
def test_no_input_line_can_crash_the_replay(
    lines: list[bytes], good: list[list[Event]], pol: Policy
) -> None:
    valid = [json.dumps(wire(e)).encode() for e in merged(good, [])]
    numbered_lines = list(enumerate(valid + lines, start=1))
    actions, decisions, dlq = io.BytesIO(), io.BytesIO(), io.BytesIO()
    tally = replay(
        numbered_lines,
        pol,
        CATALOG,
        FileSink(actions, decisions, dlq),
        source_name="fuzz.jsonl",
        until=BASE_MS + 30 * DAY,
    )
    assert sum(tally.events.values()) + sum(tally.dlq.values()) == len(numbered_lines)
    assert sum(tally.events.values()) >= len(valid)
    for line in dlq.getvalue().decode().splitlines():
        outputs.DeadLetter.model_validate_json(line)
    for line in actions.getvalue().decode().splitlines():
        outputs.Action.model_validate_json(line)
    for line in decisions.getvalue().decode().splitlines():
        outputs.Decision.model_validate_json(line)
