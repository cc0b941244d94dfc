"""Bounded state (SPEC section 8): every per-user collection has a limit, the oldest go
first, one user's failure costs that user's step only, and the largest state the limits
allow is known before the worker starts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suppressor.core.codec import (
    UnreadableState,
    decode_state,
    state_to_bytes,
    worst_case_state_bytes,
)
from suppressor.core.engine import ADDS_KEPT_PER_LINE, Engine
from suppressor.core.errors import ConfigError
from suppressor.core.model import Basket, Event, Sent, UserState, Watch, held_size
from suppressor.core.policy import Policy
from suppressor.core.processor import DictStore, Processor, StateTooLarge
from suppressor.wire.outputs import DeadLetter
from tests.unit.conftest import (
    DAY,
    add,
    at,
    browse,
    catalog,
    catalog_item,
    consent,
    policy,
    purchase,
    remove,
    review,
    shop,
    start,
)

LIMITS = {
    "purchased_items": 3,
    "ruled_out_items": 2,
    "visited_destinations": 2,
    "owned_one_off_categories": 2,
    "recent_actions": 3,
    "basket_items": 2,
    "held_events": 3,
}


def limited(**overrides: object) -> Policy:
    return policy(grace="0s", state_limits={**LIMITS, **overrides})


def test_purchases_keep_the_newest_items_and_an_evicted_one_may_be_offered_again() -> None:
    run = start(limited(), shop()).feed(
        purchase("a", ts=0), purchase("b", ts=1), purchase("c", ts=2), purchase("d", ts=3)
    )
    run.flush()
    assert list(run.state().purchased) == ["b", "c", "d"]
    run.feed(purchase("b", ts=4)).flush()  # bought again: the newest now
    assert list(run.state().purchased) == ["c", "d", "b"]
    run.feed(browse("a", ts=5)).flush()
    assert run.decisions[-1].reason == "product_ad"  # no longer known as bought


def test_ruled_out_visited_and_one_off_keep_the_newest() -> None:
    shop_ = catalog(
        *(catalog_item(f"city-{n}", "city", kind="destination") for n in range(3)),
        *(catalog_item(f"one-{n}", f"kind-{n}", one_off=True) for n in range(3)),
    )
    run = start(limited(), shop_).feed(
        remove("x", ts=0),
        review("y", 1, ts=1),
        remove("z", ts=2),
        purchase("city-0", "one-0", ts=3),
        purchase("city-1", "one-1", ts=4),
        review("city-2", 5, ts=5),
        purchase("one-2", ts=6),
    )
    state = run.flush().state()
    assert list(state.ruled_out) == ["y", "z"]
    assert list(state.visited) == ["city-1", "city-2"]
    assert list(state.owned_one_off) == ["kind-1", "kind-2"]


def test_the_basket_keeps_its_newest_lines() -> None:
    run = start(limited(), shop()).feed(add("a", ts=0), add("b", ts=1), add("c", ts=2))
    basket = run.flush().state().basket
    assert basket is not None
    assert basket.item_ids == ("b", "c")
    assert basket.episode_items == ("b", "c")


def test_a_basket_line_remembers_its_latest_adds() -> None:
    adds = [add("a", ts=n) for n in range(ADDS_KEPT_PER_LINE + 5)]
    run = start(limited(), shop()).feed(*adds)
    basket = run.flush().state().basket
    assert basket is not None
    assert basket.items[0][1] == tuple(a.event_id for a in adds[-ADDS_KEPT_PER_LINE:])


def test_recent_actions_and_open_windows_keep_the_newest() -> None:
    many = policy(
        grace="0s",
        abandon_after="1m",
        max_basket_reminders=100,
        frequency_cap={"max_actions": 100},
        state_limits={**LIMITS, "recent_actions": 100},
    )
    few = policy(
        grace="0s",
        abandon_after="1m",
        max_basket_reminders=100,
        frequency_cap={"max_actions": 3},
        state_limits={**LIMITS, "recent_actions": 3},
    )
    events = [e for n in range(6) for e in (add(f"i{n}", ts=10 * n), browse("z", ts=10 * n + 5))]
    assert len(start(many, shop()).feed(*events).flush().state().sent) == 6
    state = start(few, shop()).feed(*events).flush().state()
    assert len(state.sent) == 3 and len(state.watching) == 3
    assert [s.ts for s in state.sent] == sorted(s.ts for s in state.sent)[-3:]


def test_held_events_over_the_count_are_applied_oldest_first() -> None:
    run = start(policy(grace="1h", state_limits=LIMITS), shop())
    run.feed(*(browse(f"i{n}", ts=n) for n in range(5)))
    state = run.state()
    assert [e.item_id for e in state.pending] == ["i2", "i3", "i4"]
    assert [d.items for d in run.decisions if d.trigger == "product_ad"] == [("i0",), ("i1",)]


def test_held_events_over_the_bytes_are_applied_oldest_first() -> None:
    big = [purchase(*(f"item-{n}-{k:04d}" for k in range(200)), ts=n) for n in range(4)]
    budget = held_size(big[0]) * 2 + 10
    run = start(
        policy(grace="1h", state_limits={"held_events": 100, "held_bytes": budget}),
        shop(),
    ).feed(*big)
    held = run.state().pending
    assert [e.event_id for e in held] == [e.event_id for e in big[-2:]]
    assert sum(map(held_size, held)) <= budget


def test_one_event_larger_than_the_held_bytes_is_applied_at_once() -> None:
    huge = purchase(*(f"item-{k:04d}" for k in range(1000)), ts=0)
    run = start(policy(grace="1h", state_limits={"held_bytes": 1024}), shop()).feed(huge)
    assert run.state().pending == []
    assert run.state().customer


def test_a_held_forget_applied_early_still_erases() -> None:
    run = start(policy(grace="1h", state_limits={"held_events": 1}), shop())
    run.feed(add("a", ts=0), browse("b", ts=1))
    run.feed(consent(ts=2, similar_item=True))
    from tests.unit.conftest import forget

    run.feed(forget(ts=3), browse("c", ts=4))
    assert "u1" in run.erased


def test_the_guest_flood_stays_bounded() -> None:
    """The issue's flood: 40 purchases of 999 items for one user id."""
    flood = [
        purchase(*(f"g{n}-{k:03d}" for k in range(999)), user="guest", ts=n) for n in range(40)
    ]
    run = start(Policy(), shop()).feed(*flood)
    run.flush()
    raw = state_to_bytes(run.state("guest"))
    assert len(raw) < worst_case_state_bytes(Policy(), 48)
    assert len(raw) < 300_000
    assert len(run.state("guest").purchased) == Policy().state_limits.purchased_items


def test_recent_actions_must_cover_the_frequency_cap() -> None:
    with pytest.raises(ConfigError, match=r"state_limits\.recent_actions must be at least"):
        policy(frequency_cap={"max_actions": 30}, state_limits={"recent_actions": 10})


# --- one user's failure ---------------------------------------------------------------


class Boom(Engine):
    """An engine with a bug that hits one event."""

    def _apply(self, state: UserState, event: Event, out: object) -> UserState:  # type: ignore[override]
        if event.event_id == "boom":
            raise RuntimeError("injected")
        return super()._apply(state, event, out)  # type: ignore[arg-type]


def test_a_bug_on_one_event_leaves_that_event_out_and_nothing_else() -> None:
    processor = Processor(Boom(policy(grace="0s"), shop()), DictStore())
    processor.on_event(add("a", ts=0), at(1))
    out = processor.on_event(add("b", ts=1, eid="boom"), at(2))
    out.merge(processor.on_event(add("c", ts=2), at(3)))
    assert [(f.code, f.event and f.event.event_id) for f in out.failures] == [
        ("internal_error", "boom")
    ]
    state = processor.store.get("u1")
    assert state.basket.item_ids == ("a", "c") and state.pending == []
    later = processor.on_event(add("d", user="u2", ts=3), at(4))
    assert later.failures == [] and processor.store.get("u2") is not None
    assert processor.users == 2


def test_a_bug_in_a_users_step_keeps_the_state_they_had() -> None:
    class BoomOnHold(Engine):
        def _bound_held(self, state: UserState, out: object) -> UserState | None:  # type: ignore[override]
            raise RuntimeError("injected")

    processor = Processor(BoomOnHold(policy(grace="0s"), shop()), DictStore())
    out = processor.on_event(add("a", ts=0), at(0))  # held: the limits are checked
    assert [(f.code, f.event and f.event.type) for f in out.failures] == [
        ("internal_error", "cart")
    ]
    assert processor.store.get("u1") is None and processor.users == 0


def test_a_bug_while_firing_a_deadline_drops_that_deadline_only() -> None:
    class BoomOnDeadline(Engine):
        def _fire_basket(self, state: UserState, deadline: int, out: object) -> None:  # type: ignore[override]
            raise RuntimeError("injected")

    processor = Processor(BoomOnDeadline(policy(grace="0s"), shop()), DictStore())
    processor.on_event(add("a", ts=0), at(1))
    out = processor.advance_to(at(0) + 2 * DAY)
    assert [(f.code, f.event) for f in out.failures] == [("internal_error", None)]
    state = processor.store.get("u1")
    assert state.basket.item_ids == ("a",) and state.basket.deadline is None
    assert processor.advance_to(at(0) + 3 * DAY).failures == []  # not retried every record


class Refusing(DictStore):
    def put(self, user_id: str, state: UserState) -> None:
        if len(state.purchased) > 1:
            raise StateTooLarge(2_000_000, 1_000_000)
        super().put(user_id, state)


def test_a_state_the_store_refuses_is_reported_and_the_old_one_stays() -> None:
    processor = Processor(Engine(policy(grace="0s"), shop()), Refusing())
    processor.on_event(purchase("a", ts=0), at(1))
    out = processor.on_event(purchase("b", ts=1), at(2))
    assert [f.code for f in out.failures] == ["state_too_large"]
    state = processor.store.get("u1")
    assert state is not None and list(state.purchased) == ["a"]


# --- the codec and the largest state ------------------------------------------------


def test_a_version_1_json_state_is_read() -> None:
    raw = (
        b'{"v":1,"u":"u1","c":true,"p":["a","b"],"o":["office"],"d":[],"r":["x"],'
        b'"b":[[["c",["e3"]]],["c"],1000,0,false],"cb":null,"cs":null,"mw":2,"oi":false,'
        b'"s":[[5,"similar_item",["p"]]],"lb":7,"w":[],"q":[["e9","browse","u1",9,"z",null,1,'
        b'null,[],null,null,null,null]]}\n{"0.1":41}'
    )
    state, origins = decode_state(raw)
    assert state.customer and set(state.purchased) == {"a", "b"}
    assert state.basket == Basket((("c", ("e3",)),), ("c",), 1000, 0, False)
    assert state.sent == (Sent(5, "similar_item", ("p",)),)
    assert state.pending[0].item_id == "z" and origins == {"0.1": 41}
    again, kept = decode_state(state_to_bytes(state, origins))
    assert again == state and kept == origins


@pytest.mark.parametrize(
    "raw", [b"\xff\x00garbage", b'{"v":99}', b"{not json", b"\x93\x09\x01\x02"]
)
def test_an_unreadable_state_is_refused_with_a_clear_error(raw: bytes) -> None:
    with pytest.raises(UnreadableState):
        decode_state(raw)


_longest = st.text(
    alphabet=st.sampled_from(["\U0001f600", "\x00", "é", "a"]), min_size=256, max_size=256
)


@settings(max_examples=10, deadline=None)
@given(_longest)
def test_the_worst_case_bounds_a_state_at_every_limit(text: str) -> None:
    """Every collection full, every id at 256 characters of its longest encoding."""
    p = policy(state_limits=LIMITS, max_similar_items=3)
    limits = p.state_limits

    def ids(n: int, tag: str) -> dict[str, None]:
        return dict.fromkeys(f"{k}{tag}{text}"[:256] for k in range(n))

    def many(n: int) -> tuple[str, ...]:
        return tuple(ids(n, "i"))

    action_items = max(p.max_similar_items, limits.basket_items)
    line = (text, many(ADDS_KEPT_PER_LINE))
    held: list[Event] = []
    while sum(map(held_size, held)) < limits.held_bytes - 20_000:
        held.append(Event(text, "purchase", text, 2**62, items=many(40), order_id=text))
    state = UserState(
        user_id=text,
        customer=True,
        purchased=ids(limits.purchased_items, "p"),
        ruled_out=ids(limits.ruled_out_items, "r"),
        ruled_out_why=dict.fromkeys(ids(limits.ruled_out_items, "r"), "removed_from_basket"),
        visited=ids(limits.visited_destinations, "v"),
        owned_one_off=ids(limits.owned_one_off_categories, "o"),
        basket=Basket(tuple([line] * limits.basket_items), many(limits.basket_items), 2**62),
        consent_basket=True,
        consent_similar=True,
        max_per_week=2**40,
        sent=tuple(
            Sent(2**62, "basket_recovery", many(action_items), text, True)
            for _ in range(limits.recent_actions)
        ),
        last_browse=2**62,
        watching=tuple(
            Watch(2**62, text, "basket_recovery", many(action_items), 2**62, True, 2**62)
            for _ in range(limits.recent_actions)
        ),
        pending=held,
    )
    origins = {f"{i}.{p_}": 2**62 for i in range(6) for p_ in range(8)}
    assert len(state_to_bytes(state, origins)) <= worst_case_state_bytes(p, 48)


def test_the_default_limits_fit_well_under_the_changelogs_record_size() -> None:
    from suppressor.adapters.topology import CHANGELOG_MAX_MESSAGE_BYTES

    assert worst_case_state_bytes(Policy(), 8 * 6) < CHANGELOG_MAX_MESSAGE_BYTES / 3


def test_replay_dead_letters_the_event_a_bug_hits_and_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from suppressor.core.replay.run import CollectingSink, replay
    from tests.unit.conftest import jsonl, numbered

    apply = Engine._apply

    def buggy(self: Engine, state: UserState, event: Event, out: object) -> UserState:
        if event.event_id == "boom":
            raise RuntimeError("injected")
        return apply(self, state, event, out)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "_apply", buggy)
    events = [add("a", ts=0), add("b", ts=1, eid="boom"), add("c", ts=30)]
    lines = numbered(jsonl(events))
    sink = CollectingSink()
    tally = replay(lines, policy(), shop(), sink, until=at(0) + 2 * DAY, now_ms=at(60))
    (dead,) = sink.dead_letters
    assert dead.error_code == "internal_error" and "RuntimeError: injected" in dead.error
    assert '"boom"' in dead.original and dead.source.line is None  # held, then applied
    assert tally.failures["internal_error"] == 1
    assert [a.items for out in sink.outputs for a in out.actions] == [("a", "c")]


_ids = st.text(min_size=1, max_size=256)


@settings(max_examples=200, deadline=None)
@given(
    event_id=_ids,
    user_id=_ids,
    item=_ids,
    items=st.lists(_ids, min_size=1, max_size=60),
    kind=st.sampled_from(["browse", "cart", "purchase", "review", "consent", "forget"]),
)
def test_an_admitted_events_held_size_is_at_most_its_record_plus_the_framing(
    event_id: str, user_id: str, item: str, items: list[str], kind: str
) -> None:
    """What lets `_over` skip adding up sizes while few events are held."""
    import json

    from suppressor.core.admission import admit
    from suppressor.core.model import EVENT_FRAMING
    from suppressor.wire.outputs import SourcePosition

    record: dict[str, object] = {"event_id": event_id, "type": kind, "user_id": user_id,
                                 "ts": "2025-01-01T00:00:00Z"}  # fmt: skip
    if kind in ("browse", "review"):
        record["item_id"] = item
    if kind == "review":
        record["rating"] = 5
    if kind == "cart":
        record.update(item_id=item, action="add")
    if kind == "purchase":
        record.update(order_id=item, items=[{"item_id": i} for i in items])
    for raw in (json.dumps(record).encode(), json.dumps(record, ensure_ascii=False).encode()):
        event = admit(raw, SourcePosition(), None, 0)
        assert not isinstance(event, DeadLetter), event
        assert held_size(event) <= len(raw) + EVENT_FRAMING
