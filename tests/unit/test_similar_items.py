"""Contract version 2 (SPEC section 4): one similar-item message at a time, after a cool-off,
and basket reminders keep their slot under the cap."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suppressor.core.codec import decode_state, state_to_bytes
from suppressor.core.model import PendingSimilar, Seed, UserState
from suppressor.core.policy import Policy
from tests.unit.conftest import (
    DAY,
    MINUTE,
    add,
    at,
    browse,
    catalog,
    catalog_item,
    consent,
    forget,
    policy,
    purchase,
    review,
    run,
    shop,
    start,
)
from tests.unit.test_properties import merged, process, until_after, user_history

V2 = policy(similar_after="1d")  # the default cool-off (the test factory's default is 0s)
DAY_MIN = 24 * 60


def test_an_order_makes_one_message_a_day_later_from_all_its_items() -> None:
    result = run(purchase("bin-1", "shoes-1", "ams", ts=0, eid="o1"), policy_=V2, until=2 * DAY_MIN)
    (action,) = result.actions
    assert action.ts == at(DAY_MIN)  # due a day after the order, not in its second
    assert action.seed_items == ("bin-1", "shoes-1", "ams") and action.seed_item == "bin-1"
    assert action.data_dimensions == ("purchase_history", "travel_history")
    assert action.source_event_ids == ("o1",)


def test_later_seeds_join_the_pending_message_and_keep_its_due_time() -> None:
    result = run(
        purchase("bin-1", ts=0, eid="p1"),
        review("shoes-1", 5, ts=60, eid="r1"),
        purchase("ams", ts=120, eid="p2"),
        policy_=V2,
        until=3 * DAY_MIN,
    )
    (action,) = result.actions
    assert action.ts == at(DAY_MIN)
    assert action.seed_items == ("bin-1", "shoes-1", "ams")
    assert action.data_dimensions == ("purchase_history", "reviews", "travel_history")
    assert action.source_event_ids == ("p1", "r1", "p2")


def test_the_candidates_of_the_seeds_are_merged_round_robin() -> None:
    shop_ = catalog(
        catalog_item("a", similar=["a1", "a2", "a3"]),
        catalog_item("b", similar=["b1", "a1", "b2"]),
        *(catalog_item(i) for i in ("a1", "a2", "a3", "b1", "b2")),
    )
    pol = policy(max_similar_items=4)
    (action,) = run(purchase("a", "b", ts=0), policy_=pol, catalog_=shop_, until=DAY_MIN).actions
    assert action.items == ("a1", "b1", "a2", "a3")  # a1 repeated is kept once


def test_items_bought_before_the_due_time_are_excluded() -> None:
    """Bought before the message was pending: already_purchased; bought while it was
    pending: a seed of it."""
    result = run(
        purchase("shredder-1", ts=0),  # message 1, due a day later
        purchase("bin-1", ts=2 * DAY_MIN),  # message 2 ...
        purchase("lamp-1", ts=2.5 * DAY_MIN),  # ... which lamp-1 joins before it is due
        policy_=V2,
        until=5 * DAY_MIN,
    )
    second = result.decided("similar_item")[1]
    assert second.ts == at(3 * DAY_MIN)
    excluded = dict(second.excluded)
    assert excluded["shredder-1"] == "already_purchased"
    assert excluded["lamp-1"] == "seed" and excluded["bin-1"] == "seed"
    assert not {"shredder-1", "lamp-1", "bin-1"} & set(second.items)


def test_a_consent_withdrawn_before_the_due_time_cancels() -> None:
    result = run(
        purchase("bin-1", ts=0), consent(ts=60, similar_item=False), policy_=V2, until=3 * DAY_MIN
    )
    assert result.actions == []
    assert result.reasons("similar_item") == ["no_consent"]


def test_a_forget_before_the_due_time_drops_it() -> None:
    result = run(purchase("bin-1", ts=0), forget(ts=60), policy_=V2, until=3 * DAY_MIN)
    assert result.actions == [] and result.decided("similar_item") == []


def test_similar_after_zero_is_due_at_once_and_still_one_message_per_order() -> None:
    pol = policy(similar_after="0s", grace="0s")
    result = run(purchase("bin-1", "shoes-1", ts=0), purchase("ams", ts=10), policy_=pol)
    assert [a.ts for a in result.actions] == [at(0), at(10)]
    assert [a.seed_items for a in result.actions] == [("bin-1", "shoes-1"), ("ams",)]


def test_seeds_of_the_dimensions_that_joined_last_are_dropped_as_too_personal() -> None:
    pol = policy(max_data_dimensions=1, similar_after="1h")
    seeds = purchase("bin-1", ts=0), review("shoes-1", 5, ts=0.5), purchase("ams", ts=0.7)
    result = run(*seeds, policy_=pol, until=DAY_MIN)
    (decision,) = result.decided("similar_item")
    assert decision.reason is None
    assert ("shoes-1", "too_personal") in decision.excluded
    assert ("ams", "too_personal") in decision.excluded
    (action,) = result.actions
    assert action.seed_items == ("bin-1",) and action.data_dimensions == ("purchase_history",)


# --- the reserved slot ---------------------------------------------------------------------------


def capped(max_actions: int, reserve: int = 1) -> Policy:
    return policy(
        grace="0s",
        abandon_after="1h",
        frequency_cap={"max_actions": max_actions, "per": "7d", "reserve_for_basket": reserve},
    )


def test_a_similar_item_may_not_take_the_last_slot_a_basket_reminder_may() -> None:
    events = [
        purchase("bin-1", ts=0),  # similar 1
        purchase("shoes-1", ts=60),  # similar 2
        purchase("ams", ts=120),  # similar 3 would take the last of 3 slots
        add("lamp-1", ts=180),  # the basket reminder takes it
    ]
    result = run(*events, policy_=capped(3, reserve=1), until=DAY_MIN)
    assert result.reasons("similar_item") == [None, None, "frequency_cap"]
    assert result.reasons("basket_recovery") == [None]
    no_reserve = run(*events, policy_=capped(3, reserve=0), until=DAY_MIN)
    assert no_reserve.reasons("similar_item") == [None, None, None]
    assert no_reserve.reasons("basket_recovery") == ["frequency_cap"]


def test_the_reserve_never_takes_the_only_slot() -> None:
    result = run(purchase("bin-1", ts=0), policy_=capped(1, reserve=1), until=DAY_MIN)
    assert result.reasons("similar_item") == [None]


def test_the_reserve_follows_the_users_own_lower_cap() -> None:
    result = run(
        consent(ts=0, max_actions_per_week=2),
        purchase("bin-1", ts=1),
        purchase("shoes-1", ts=60),
        policy_=capped(5, reserve=1),
        until=DAY_MIN,
    )
    assert result.reasons("similar_item") == [None, "frequency_cap"]  # 2 - 1 for baskets


# --- invariants --------------------------------------------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=user_history("u"), after=st.sampled_from(["1h", "1d", "2d"]))
def test_no_user_gets_two_similar_items_less_than_similar_after_apart(
    history: list, after: str
) -> None:
    from suppressor.core.engine import Engine

    pol = policy(
        similar_after=after,
        frequency_cap={"max_actions": 50},
        state_limits={"recent_actions": 50},
    )
    actions = process(Engine(pol, shop()), history, until_after(history))
    times = [a.ts for a in actions if a.kind == "similar_item"]
    assert all(b - a >= pol.similar_after for a, b in itertools.pairwise(times))
    orders = [e.event_id for e in history if e.type == "purchase"]
    seeded = [s for a in actions if a.kind == "similar_item" for s in a.source_event_ids]
    assert len(seeded) == len(set(seeded)) and set(seeded) <= {e.event_id for e in history}
    assert all(seeded.count(o) <= 1 for o in orders)  # an order: at most one message


def test_the_pending_trigger_survives_the_state_codec() -> None:
    state = UserState(
        user_id="u",
        similar=PendingSimilar(at(DAY_MIN), (Seed("a", "purchase_history"), Seed("b", "reviews")),
                               ("e1", "e2")),
    )  # fmt: skip
    assert decode_state(state_to_bytes(state))[0] == state
    runner = start(policy(similar_after="1d", grace="0s"))
    runner.feed(purchase("bin-1", ts=0), browse("x", ts=1))
    assert runner.state().similar is not None
    assert decode_state(state_to_bytes(runner.state()))[0] == runner.state()


def test_merged_histories_of_several_users_keep_one_message_per_order() -> None:
    users = [[purchase("bin-1", user=f"u{n}", ts=n, eid=f"p{n}")] for n in range(5)]
    events = merged(users, [])
    from suppressor.core.engine import Engine

    actions = process(Engine(V2, shop()), events, until_after(events))
    assert sorted(a.user_id for a in actions) == [f"u{n}" for n in range(5)]
    assert {a.ts - at(n) for n, a in enumerate(sorted(actions, key=lambda a: a.user_id))} == {DAY}
    assert MINUTE
