"""Every trigger and every reason code of SPEC section 4, through the engine.

Events are built with the factories in conftest (times in minutes after BASE);
`run(...)` reads them in order through a Processor with a DictStore, flushes the
reorder buffer at the end of input and, with `until`, advances stream time.
"""

from __future__ import annotations

from typing import get_args

import pytest

from suppressor.core import rules
from suppressor.core.codec import action_record, decision_record, state_from_bytes, state_to_bytes
from suppressor.core.engine import Engine
from suppressor.core.model import Basket, Decision, Event, Sent, UserState
from suppressor.core.policy import Policy
from suppressor.core.processor import DictStore, Processor
from suppressor.wire import outputs
from tests.unit.conftest import (
    add,
    at,
    browse,
    catalog,
    catalog_item,
    consent,
    forget,
    policy,
    purchase,
    remove,
    retime,
    review,
    run,
    shop,
    start,
)


def only(decisions: list[Decision], trigger: str) -> Decision:
    matching = [d for d in decisions if d.trigger == trigger]
    assert len(matching) == 1, matching
    return matching[0]


# --- browse: browse_nudge and product_ad, always suppressed --------------------------------


def test_browse_nudge_is_considered_once_per_session_and_always_suppressed() -> None:
    result = run(
        browse("bin-1", ts=0),
        browse("lamp-1", ts=10),
        browse("bin-1", ts=40),  # 30 min after the last browse: same session (gap must exceed)
        browse("lamp-1", ts=71),  # 31 min of quiet: a new session
        browse("bin-1", user="u2", ts=72),  # sessions are per user
    )
    nudges = result.decided("browse_nudge")
    assert [(d.user_id, d.ts) for d in nudges] == [("u1", at(0)), ("u1", at(71)), ("u2", at(72))]
    assert {d.reason for d in nudges} == {"browse_nudge"}
    assert {d.outcome for d in nudges} == {"suppressed"}
    assert result.actions == []


def test_a_browse_session_gap_is_measured_from_the_last_browse() -> None:
    result = run(*(browse("bin-1", ts=minute) for minute in range(0, 200, 20)))
    assert len(result.decided("browse_nudge")) == 1


@pytest.mark.parametrize(
    ("history", "item", "reason"),
    [
        ([], "bin-1", "product_ad"),
        ([purchase("ams")], "ams", "past_destination"),  # also bought: the most specific wins
        ([review("rom", 3)], "rom", "past_destination"),  # a reviewed trip is a trip taken
        ([purchase("bin-1")], "bin-1", "already_purchased"),
        ([purchase("shredder-1")], "shredder-1", "already_purchased"),  # before one_off_owned
        ([purchase("shredder-1")], "shredder-2", "one_off_owned"),
        ([remove("shredder-2"), purchase("shredder-1")], "shredder-2", "one_off_owned"),
        ([add("shoes-1"), remove("shoes-1")], "shoes-1", "ruled_out"),
        ([review("shoes-1", 2)], "shoes-1", "ruled_out"),
        ([review("shoes-1", 1)], "shoes-1", "ruled_out"),
        ([review("shoes-1", 3)], "shoes-1", "product_ad"),
        ([remove("shoes-1"), add("shoes-1")], "shoes-1", "product_ad"),  # the latest word wins
        ([purchase("bin-1"), forget()], "bin-1", "product_ad"),
    ],
)
def test_product_ad_on_browse_is_suppressed_with_the_first_reason_that_applies(
    history: list[Event], item: str, reason: str
) -> None:
    events = [retime(e, i) for i, e in enumerate(history)]
    result = run(*events, browse(item, ts=len(history) + 1))
    ads = result.decided("product_ad")
    assert ads[-1].reason == reason
    assert ads[-1].items == (item,)
    assert ads[-1].outcome == "suppressed"
    assert ads[-1].action_id is None


# --- purchase -----------------------------------------------------------------------------


def test_purchase_suppresses_buy_it_again_and_makes_one_similar_item_of_the_order() -> None:
    result = run(purchase("bin-1", "shoes-1", "ams", ts=0))
    ads = result.decided("product_ad")
    assert [(d.items, d.reason) for d in ads] == [
        (("bin-1",), "already_purchased"),
        (("shoes-1",), "already_purchased"),
        (("ams",), "past_destination"),
    ]
    similar = result.decided("similar_item")
    assert [d.outcome for d in similar] == ["emitted"]
    (action,) = result.actions
    assert action.seed_items == ("bin-1", "shoes-1", "ams") and action.seed_item == "bin-1"
    assert action.data_dimensions == ("purchase_history", "travel_history")
    assert result.state().customer


def test_purchase_makes_the_user_a_customer_and_records_what_was_bought() -> None:
    state = run(purchase("shredder-1", "ams", "ghost")).state()
    assert state.customer
    assert set(state.purchased) == {"shredder-1", "ams", "ghost"}
    assert set(state.visited) == {"ams"}
    assert set(state.owned_one_off) == {"office"}


# --- similar-item candidates --------------------------------------------------------------


def test_candidates_come_from_the_curated_similar_list_in_its_order() -> None:
    decision = only(run(purchase("dress-1")).decisions, "similar_item")
    assert decision.items == ("shoes-1",)
    assert dict(decision.excluded) == {
        "dress-1": "seed",
        "bag-1": "unavailable",
        "ghost": "unavailable",  # curated but missing from the catalog
    }
    assert [item for item, _ in decision.excluded] == ["dress-1", "bag-1", "ghost"]


def test_without_a_curated_list_candidates_are_the_category_ranked_by_tag_jaccard() -> None:
    decision = only(run(purchase("ams")).decisions, "similar_item")
    # ams {canals, bikes, museums}: bru 2/3, cph 1/4, rom 0
    assert decision.items == ("bru", "cph", "rom")
    assert dict(decision.excluded) == {"ams": "seed"}


def test_equal_tag_overlap_is_ranked_by_item_id() -> None:
    cat = catalog(
        catalog_item("seed", "c", tags={"x", "y"}),
        catalog_item("zeta", "c", tags={"x"}),
        catalog_item("alpha", "c", tags={"y"}),
        catalog_item("mid", "c", tags={"x", "y", "z"}),
        catalog_item("other-category", "d", tags={"x", "y"}),
    )
    decision = only(run(purchase("seed"), catalog_=cat).decisions, "similar_item")
    # mid 2/3, then alpha and zeta 1/2 each, by id
    assert decision.items == ("mid", "alpha", "zeta")
    assert cat.candidates("seed") == ("seed", "mid", "alpha", "zeta")


def test_at_most_max_similar_items_are_offered() -> None:
    decision = only(
        run(purchase("ams"), policy_=policy(max_similar_items=2)).decisions, "similar_item"
    )
    assert decision.items == ("bru", "cph")
    one = only(run(purchase("ams"), policy_=policy(max_similar_items=1)).decisions, "similar_item")
    assert one.items == ("bru",)


@pytest.mark.parametrize(
    ("history", "seed", "excluded", "offered"),
    [
        (
            [purchase("bin-1")],
            "lamp-1",
            {"bin-1": "already_purchased"},
            ("shredder-1", "shredder-2"),
        ),
        ([review("bru", 3)], "ams", {"bru": "past_destination"}, ("cph", "rom")),
        ([], "shredder-1", {"shredder-2": "one_off_owned"}, ("bin-1", "lamp-1")),
        ([remove("bin-1")], "lamp-1", {"bin-1": "ruled_out"}, ("shredder-1", "shredder-2")),
        ([review("bin-1", 2)], "lamp-1", {"bin-1": "ruled_out"}, ("shredder-1", "shredder-2")),
        ([], "dress-1", {"bag-1": "unavailable", "ghost": "unavailable"}, ("shoes-1",)),
    ],
)
def test_each_excluded_candidate_carries_its_reason(
    history: list[Event], seed: str, excluded: dict[str, str], offered: tuple[str, ...]
) -> None:
    events = [retime(e, i) for i, e in enumerate(history)]
    result = run(*events, purchase(seed, ts=10))
    decision = result.decided("similar_item")[-1]
    assert decision.items == offered
    assert dict(decision.excluded) == {seed: "seed", **excluded}
    assert result.actions[-1].items == offered


def test_a_bought_destination_is_excluded_as_already_purchased_first() -> None:
    """SPEC order of exclusions: already_purchased before past_destination."""
    result = run(purchase("bru", ts=0), purchase("ams", ts=10))
    decision = result.decided("similar_item")[-1]
    assert dict(decision.excluded)["bru"] == "already_purchased"


# --- similar-item guards, in order ----------------------------------------------------------


def test_no_consent_when_the_user_turned_similar_items_off() -> None:
    result = run(consent(similar_item=False, ts=0), purchase("ams", ts=1))
    assert only(result.decisions, "similar_item").reason == "no_consent"
    assert result.actions == []


def test_no_consent_from_the_policy_default() -> None:
    strict = policy(default_consent={"similar_item": False})
    result = run(purchase("ams"), policy_=strict)
    assert only(result.decisions, "similar_item").reason == "no_consent"
    opted_in = run(consent(similar_item=True, ts=0), purchase("ams", ts=1), policy_=strict)
    assert only(opted_in.decisions, "similar_item").reason is None


def test_a_consent_field_left_out_keeps_its_previous_value() -> None:
    result = run(
        consent(similar_item=False, ts=0),
        consent(basket_recovery=False, ts=1),  # says nothing about similar items
        purchase("ams", ts=2),
    )
    assert only(result.decisions, "similar_item").reason == "no_consent"


def test_a_prospect_is_not_approached_with_similar_items() -> None:
    result = run(review("shoes-1", 5))
    decision = only(result.decisions, "similar_item")
    assert decision.reason == "prospect"
    assert decision.items == ("shoes-2",)  # candidates are still shown
    assert result.actions == []


def test_a_consent_with_similar_item_true_lifts_the_prospect_rule() -> None:
    result = run(consent(similar_item=True, ts=0), review("shoes-1", 5, ts=1))
    assert only(result.decisions, "similar_item").reason is None
    assert [a.items for a in result.actions] == [("shoes-2",)]


def test_an_opt_in_withdrawn_is_no_consent_not_prospect() -> None:
    result = run(
        consent(similar_item=True, ts=0),
        consent(similar_item=False, ts=1),
        review("shoes-1", 5, ts=2),
        consent(similar_item=True, ts=3),
        review("shoes-1", 4, ts=4),
    )
    assert result.reasons("similar_item") == ["no_consent", None]


def test_a_customer_is_not_a_prospect() -> None:
    result = run(purchase("bin-1", ts=0), review("shoes-1", 5, ts=1))
    assert result.reasons("similar_item") == [None, None]


def test_no_consent_comes_before_prospect() -> None:
    result = run(consent(similar_item=False, ts=0), review("shoes-1", 5, ts=1))
    assert only(result.decisions, "similar_item").reason == "no_consent"


def test_prospect_comes_before_no_candidates() -> None:
    result = run(review("ghost", 5))  # not in the catalog: no candidates at all
    assert only(result.decisions, "similar_item").reason == "prospect"


def test_no_candidates_when_every_candidate_is_excluded() -> None:
    result = run(remove("shoes-1", ts=0), purchase("dress-1", ts=1))
    decision = only(result.decisions, "similar_item")
    assert decision.reason == "no_candidates"
    assert decision.items == ()
    assert dict(decision.excluded) == {
        "shoes-1": "ruled_out",
        "dress-1": "seed",
        "bag-1": "unavailable",
        "ghost": "unavailable",
    }


def test_no_candidates_for_a_seed_missing_from_the_catalog() -> None:
    result = run(purchase("ghost"))
    assert only(result.decisions, "similar_item").reason == "no_candidates"


def test_frequency_cap_on_a_rolling_event_time_window() -> None:
    capped = policy(frequency_cap={"max_actions": 2, "per": "1d", "reserve_for_basket": 0})
    result = run(
        purchase("bin-1", ts=0),
        purchase("lamp-1", ts=60),
        purchase("shoes-1", ts=120),  # third within a day: capped
        purchase("ams", ts=24 * 60 - 1),  # still within a day of the first
        purchase("rom", ts=24 * 60 + 1),  # the first has left the window
        purchase("cph", ts=24 * 60 + 2),  # the second is still in: two in the window
        policy_=capped,
    )
    assert result.reasons("similar_item") == [
        None,
        None,
        "frequency_cap",
        "frequency_cap",
        None,
        "frequency_cap",
    ]
    assert len(result.actions) == 3


def test_frequency_cap_counts_both_kinds() -> None:
    capped = policy(frequency_cap={"max_actions": 1, "per": "7d"})
    result = run(purchase("bin-1", ts=0), add("shoes-1", ts=10), policy_=capped, until=200)
    assert only(result.decisions, "basket_recovery").reason == "frequency_cap"
    assert [a.kind for a in result.actions] == ["similar_item"]


def test_a_users_max_actions_per_week_lowers_the_cap() -> None:
    result = run(
        consent(max_actions_per_week=1, ts=0),
        purchase("bin-1", ts=1),
        purchase("lamp-1", ts=2),
        purchase("ams", ts=6 * 24 * 60),
        purchase("rom", ts=7 * 24 * 60 + 2),  # a week after the first action
    )
    assert result.reasons("similar_item") == [None, "frequency_cap", "frequency_cap", None]


def test_a_users_max_actions_per_week_cannot_raise_the_cap() -> None:
    capped = policy(frequency_cap={"max_actions": 1, "per": "7d"})
    result = run(
        consent(max_actions_per_week=10, ts=0),
        purchase("bin-1", ts=1),
        purchase("lamp-1", ts=2),
        policy_=capped,
    )
    assert result.reasons("similar_item") == [None, "frequency_cap"]


def test_max_actions_per_week_zero_turns_everything_off() -> None:
    result = run(consent(max_actions_per_week=0, ts=0), purchase("bin-1", ts=1))
    assert result.reasons("similar_item") == ["frequency_cap"]


def test_no_candidates_comes_before_frequency_cap() -> None:
    capped = policy(frequency_cap={"max_actions": 1, "per": "7d"})
    result = run(purchase("bin-1", ts=0), purchase("ghost", ts=1), policy_=capped)
    assert result.reasons("similar_item") == [None, "no_candidates"]


def test_duplicate_within_the_dedupe_window() -> None:
    short = policy(dedupe_window="1h")
    result = run(
        purchase("shoes-1", ts=0),  # offers shoes-2
        purchase("shoes-1", ts=30),  # the same offer within the hour
        purchase("shoes-1", ts=61),  # the first has left the window
        policy_=short,
    )
    assert result.reasons("similar_item") == [None, "duplicate", None]
    assert [a.items for a in result.actions] == [("shoes-2",), ("shoes-2",)]


def test_duplicate_compares_the_item_set_not_the_seed() -> None:
    cat = catalog(
        catalog_item("a", "c", similar=["x", "y"]),
        catalog_item("b", "c", similar=["y", "x"]),
        catalog_item("x", "c"),
        catalog_item("y", "c"),
    )
    result = run(purchase("a", ts=0), purchase("b", ts=1), catalog_=cat)
    assert result.reasons("similar_item") == [None, "duplicate"]


def test_frequency_cap_comes_before_duplicate() -> None:
    capped = policy(frequency_cap={"max_actions": 1, "per": "7d"})
    result = run(purchase("shoes-1", ts=0), purchase("shoes-1", ts=1), policy_=capped)
    assert result.reasons("similar_item") == [None, "frequency_cap"]


def test_too_personal_when_no_data_dimension_may_be_used() -> None:
    result = run(purchase("ams"), policy_=policy(max_data_dimensions=0))
    assert only(result.decisions, "similar_item").reason == "too_personal"
    assert result.actions == []


def test_with_no_seed_left_the_whole_similar_item_is_too_personal_after_consent() -> None:
    """max_data_dimensions 0 drops every seed: too_personal, unless consent or the prospect
    rule said no first; a duplicate or the cap are not reached."""
    engine = Engine(policy(max_data_dimensions=0), shop())
    state = UserState(
        user_id="u1", customer=True, sent=(Sent(at(0), "similar_item", ("shoes-2",)),)
    )
    step = engine.decide(state, purchase("shoes-1", ts=10), stream_time=at(20))
    (decision,) = [d for d in step.decisions if d.trigger == "similar_item"]
    assert decision.reason == "too_personal"
    assert decision.excluded == (("shoes-1", "too_personal"),)
    state.consent_similar = False
    step = engine.decide(state, purchase("shoes-1", ts=10), stream_time=at(20))
    assert [d.reason for d in step.decisions if d.trigger == "similar_item"] == ["no_consent"]


# --- review -------------------------------------------------------------------------------


@pytest.mark.parametrize(("rating", "similar"), [(5, True), (4, True), (3, False), (2, False)])
def test_a_good_review_seeds_similar_items(rating: int, similar: bool) -> None:
    result = run(purchase("bin-1", ts=0), review("shoes-1", rating, ts=1))
    seeds = [d.items for d in result.decisions if d.trigger == "similar_item"]
    assert (("shoes-2",) in seeds) is similar
    if similar:
        assert result.actions[-1].seed_item == "shoes-1"
        assert result.actions[-1].data_dimensions == ("reviews",)


@pytest.mark.parametrize(("rating", "ruled_out"), [(1, True), (2, True), (3, False), (4, False)])
def test_a_bad_review_rules_the_item_out(rating: int, ruled_out: bool) -> None:
    state = run(review("shoes-1", rating)).state()
    assert ("shoes-1" in state.ruled_out) is ruled_out


# --- cart ---------------------------------------------------------------------------------


def test_cart_remove_rules_the_item_out_even_when_it_was_not_in_the_basket() -> None:
    result = run(remove("shoes-2", ts=0), purchase("shoes-1", ts=1))
    assert set(result.state().ruled_out) == {"shoes-2"}
    assert only(result.decisions, "similar_item").reason == "no_candidates"


def test_adding_a_ruled_out_item_again_lifts_the_rule() -> None:
    """The engine's documented choice: the person's latest word wins."""
    state = run(remove("shoes-2", ts=0), add("shoes-2", ts=1)).state()
    assert not state.ruled_out


# --- basket recovery ----------------------------------------------------------------------


def test_basket_deadline_is_the_last_add_plus_abandon_after() -> None:
    result = run(add("bin-1", ts=0), add("lamp-1", ts=20))
    assert result.state().basket.deadline == at(80)
    later = run(add("bin-1", ts=0), add("lamp-1", ts=20), policy_=policy(abandon_after="2h"))
    assert later.state().basket.deadline == at(140)


def test_basket_recovery_fires_at_deadline_plus_grace_with_the_deadline_as_its_ts() -> None:
    basket = start().feed(add("bin-1", ts=0), add("lamp-1", ts=1))
    basket.feed(browse("rom", user="other", ts=66))  # stream time reaches 61 + 5
    assert basket.actions == []
    basket.feed(browse("rom", user="other", ts=66.01))  # ... and passes it
    [action] = basket.actions
    assert action.kind == "basket_recovery"
    assert action.ts == at(61)
    assert action.items == ("bin-1", "lamp-1")
    assert action.seed_item is None
    assert action.data_dimensions == ("basket",)
    assert set(action.source_event_ids) == {e for d in basket.decisions for e in d.source_event_ids}
    decision = only(basket.decisions, "basket_recovery")
    assert decision.outcome == "emitted"
    assert decision.action_id == action.action_id
    assert decision.ts == at(61)


def test_basket_recovery_ts_does_not_depend_on_when_stream_time_passed_it() -> None:
    early = run(add("bin-1", ts=0, eid="a"), until=65.01).actions
    late = run(add("bin-1", ts=0, eid="a"), until=5000).actions
    assert early == late
    assert early[0].ts == at(60)


def test_basket_recovery_offers_what_is_left_in_the_basket() -> None:
    result = run(
        add("bin-1", ts=0),
        add("lamp-1", ts=1),
        add("shoes-1", ts=2),
        purchase("bin-1", ts=3),
        remove("lamp-1", ts=4),
        until=500,
    )
    assert [a.items for a in result.actions if a.kind == "basket_recovery"] == [("shoes-1",)]


def test_a_basket_bought_before_its_deadline_is_recorded_as_basket_converted() -> None:
    result = run(
        add("bin-1", ts=0), add("lamp-1", ts=1), purchase("bin-1", "lamp-1", ts=2), until=500
    )
    decision = only(result.decisions, "basket_recovery")
    assert decision.reason == "basket_converted"
    assert decision.items == ("bin-1", "lamp-1")
    assert decision.ts == at(2)
    assert "basket_recovery" not in {a.kind for a in result.actions}
    assert result.state().basket is None


def test_a_basket_emptied_before_its_deadline_is_recorded_as_basket_emptied() -> None:
    result = run(add("bin-1", ts=0), remove("bin-1", ts=1), until=500)
    decision = only(result.decisions, "basket_recovery")
    assert decision.reason == "basket_emptied"
    assert decision.items == ("bin-1",)
    assert result.actions == []


def test_basket_partly_bought_then_emptied_counts_as_converted() -> None:
    """Engine's choice: an episode in which anything was bought ended in a conversion."""
    result = run(
        add("bin-1", ts=0), add("lamp-1", ts=1), purchase("bin-1", ts=2), remove("lamp-1", ts=3)
    )
    assert result.reasons("basket_recovery") == ["basket_converted"]


def test_basket_converted_comes_before_no_consent() -> None:
    result = run(add("bin-1", ts=0), consent(basket_recovery=False, ts=1), purchase("bin-1", ts=2))
    assert result.reasons("basket_recovery") == ["basket_converted"]


def test_consent_withdrawn_before_the_deadline_cancels_the_reminder() -> None:
    result = run(add("bin-1", ts=0), consent(basket_recovery=False, ts=59), until=500)
    assert result.reasons("basket_recovery") == ["no_consent"]
    assert result.actions == []


def test_consent_withdrawn_after_the_deadline_does_not_cancel_it() -> None:
    result = run(add("bin-1", ts=0), consent(basket_recovery=False, ts=61), until=500)
    assert result.reasons("basket_recovery") == [None]


def test_no_consent_for_basket_recovery_from_the_policy_default() -> None:
    strict = policy(default_consent={"basket_recovery": False})
    assert run(add("bin-1"), policy_=strict, until=500).reasons("basket_recovery") == ["no_consent"]
    given = run(consent(basket_recovery=True), add("bin-1", ts=1), policy_=strict, until=500)
    assert given.reasons("basket_recovery") == [None]


def test_a_prospect_still_gets_basket_recovery() -> None:
    assert run(add("bin-1"), until=500).reasons("basket_recovery") == [None]


def test_already_reminded_after_max_basket_reminders_in_one_episode() -> None:
    events = (add("bin-1", ts=0), add("lamp-1", ts=100), add("shoes-1", ts=200))
    assert run(*events, until=1000).reasons("basket_recovery") == [
        None,
        "already_reminded",
        "already_reminded",
    ]
    twice = run(*events, policy_=policy(max_basket_reminders=2), until=1000)
    assert twice.reasons("basket_recovery") == [None, None, "already_reminded"]
    never = run(*events, policy_=policy(max_basket_reminders=0), until=1000)
    assert never.reasons("basket_recovery") == ["already_reminded"] * 3


def test_a_new_basket_episode_starts_after_a_purchase_empties_the_basket() -> None:
    result = run(
        add("bin-1", ts=0),  # reminded at 60
        purchase("bin-1", ts=100),  # episode over: no decision, it was already reminded
        add("lamp-1", ts=200),  # a new episode: a new reminder
        until=1000,
    )
    assert result.reasons("basket_recovery") == [None, None]


def test_basket_recovery_frequency_cap() -> None:
    capped = policy(frequency_cap={"max_actions": 1, "per": "1d"})
    result = run(
        add("bin-1", ts=0),
        purchase("bin-1", ts=100),
        add("lamp-1", ts=200),
        policy_=capped,
        until=1000,
    )
    assert result.reasons("basket_recovery") == [None, "frequency_cap"]


def test_basket_recovery_too_personal() -> None:
    result = run(add("bin-1"), policy_=policy(max_data_dimensions=0), until=500)
    assert result.reasons("basket_recovery") == ["too_personal"]


def test_already_reminded_comes_before_frequency_cap() -> None:
    capped = policy(frequency_cap={"max_actions": 1, "per": "1d"})
    result = run(add("bin-1", ts=0), add("lamp-1", ts=100), policy_=capped, until=1000)
    assert result.reasons("basket_recovery") == [None, "already_reminded"]


@pytest.mark.parametrize(
    ("between", "excluded"),
    [
        (purchase("shredder-2", ts=10), {"shredder-1": "one_off_owned"}),
        (review("shredder-1", 1, ts=10), {"shredder-1": "ruled_out"}),
        (review("ams", 2, ts=10), {"ams": "past_destination"}),
    ],
)
def test_basket_recovery_never_offers_an_item_the_rules_exclude(
    between: Event, excluded: dict[str, str]
) -> None:
    """SPEC 1/issue 3: no action offers a bought, visited, ruled-out or owned-kind item."""
    item = next(iter(excluded))
    result = run(add(item, ts=0), add("lamp-1", ts=1), between, until=500)
    decision = result.decided("basket_recovery")[-1]
    assert decision.items == ("lamp-1",)
    assert dict(decision.excluded) == excluded
    assert [a.items for a in result.actions if a.kind == "basket_recovery"] == [("lamp-1",)]


def test_basket_recovery_never_offers_an_item_bought_in_an_earlier_episode() -> None:
    result = run(purchase("bin-1", ts=0), add("bin-1", ts=10), until=500)
    decision = only(result.decisions, "basket_recovery")
    assert decision.outcome == "suppressed"
    assert dict(decision.excluded) == {"bin-1": "already_purchased"}
    assert [a.kind for a in result.actions] == ["similar_item"]


# --- data dimensions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "dimensions"),
    [
        ([add("bin-1")], ("basket",)),
        ([purchase("bin-1")], ("purchase_history",)),
        ([purchase("ams")], ("travel_history",)),
        ([purchase("bin-1"), review("shoes-1", 5, ts=1)], ("reviews",)),
        ([purchase("bin-1"), review("ams", 5, ts=1)], ("reviews",)),
    ],
)
def test_data_dimensions_per_action_kind(events: list[Event], dimensions: tuple[str, ...]) -> None:
    result = run(*events, until=500)
    assert result.actions[-1].data_dimensions == dimensions


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_every_action_uses_one_dimension_within_any_budget_of_at_least_one(budget: int) -> None:
    events = (add("bin-1"), purchase("ams", ts=1), review("shoes-1", 5, ts=2))
    result = run(*events, policy_=policy(max_data_dimensions=budget), until=500)
    assert len(result.actions) == 3
    assert all(len(a.data_dimensions) <= budget for a in result.actions)


# --- forget -------------------------------------------------------------------------------


def test_forget_erases_the_state_in_the_pure_api() -> None:
    engine = Engine(Policy(), shop())
    step = engine.decide(None, purchase("bin-1", ts=0), stream_time=at(10))
    assert step.state is not None and step.state.customer
    erased = engine.decide(step.state, forget(ts=20), stream_time=at(30))
    assert erased.state is None


def test_forget_deletes_the_user_from_the_store_and_nothing_pending_fires() -> None:
    result = run(
        purchase("bin-1", ts=0),
        add("lamp-1", ts=1),
        consent(similar_item=True, ts=2),
        forget(ts=10),
        browse("rom", user="u2", ts=20),
        until=10_000,
    )
    assert result.state("u1") is None
    assert "u1" not in dict(result.processor.store.items())
    assert "u1" in result.erased
    assert result.decided("basket_recovery") == []
    assert [a.kind for a in result.actions] == ["similar_item"]  # from before the forget


class RecordingStore(DictStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str]] = []

    def put(self, user_id: str, state: UserState) -> None:
        self.writes.append(("put", user_id))
        super().put(user_id, state)

    def delete(self, user_id: str) -> None:
        self.writes.append(("delete", user_id))
        super().delete(user_id)


def test_forget_writes_a_tombstone_even_when_later_events_keep_a_state() -> None:
    """The changelog must see the erasure: a delete before any new state is written."""
    store = RecordingStore()
    processor = Processor(Engine(Policy(), shop()), store)
    processor.on_event(purchase("bin-1", ts=0), at(0))
    processor.on_event(forget(ts=1), at(1))
    processor.on_event(browse("rom", ts=2), at(2))
    store.writes.clear()
    out = processor.on_event(browse("rom", user="u2", ts=6.01), at(6.01))  # forget at 1 due
    assert "u1" in out.erased
    assert [op for op, user in store.writes if user == "u1"] == ["delete", "put"]
    state = store.get("u1")
    assert state is not None and not state.customer and not state.purchased


def test_after_forget_the_next_event_starts_a_fresh_prospect_state() -> None:
    result = run(
        purchase("bin-1", ts=0),
        consent(similar_item=True, basket_recovery=False, ts=1),
        remove("shoes-2", ts=2),
        forget(ts=10),
        review("shoes-1", 5, ts=20),
        browse("bin-1", ts=21),
    )
    assert result.reasons("similar_item") == [None, "prospect"]
    assert result.reasons("product_ad")[-1] == "product_ad"  # bought once, forgotten
    state = result.state()
    assert state == UserState(user_id="u1", last_browse=at(21))


def test_forget_clears_the_frequency_cap_and_dedupe_history() -> None:
    capped = policy(frequency_cap={"max_actions": 1, "per": "7d"})
    result = run(purchase("shoes-1", ts=0), forget(ts=1), purchase("shoes-1", ts=2), policy_=capped)
    assert result.reasons("similar_item") == [None, None]


def test_events_held_after_a_forget_are_kept() -> None:
    result = start().feed(forget(ts=0), purchase("bin-1", ts=1))
    assert result.state() is not None and len(result.state().pending) == 2
    result.flush()
    assert result.state().customer
    assert "u1" in result.erased


# --- ids and records ----------------------------------------------------------------------


def story() -> list[Event]:
    return [
        browse("shredder-1", ts=0, eid="s01"),
        add("shredder-1", ts=1, eid="s02"),
        purchase("shredder-1", ts=2, eid="s03"),
        add("dress-1", user="u2", ts=3, eid="s04"),
        add("shoes-1", user="u2", ts=4, eid="s05"),
        remove("shoes-1", user="u2", ts=5, eid="s06"),
        review("ams", 5, user="u3", ts=6, eid="s07"),
        consent(user="u3", similar_item=True, ts=7, eid="s08"),
        review("ams", 5, user="u3", ts=8, eid="s09"),
        purchase("ams", "ghost", user="u3", ts=9, eid="s10"),
        browse("shredder-2", ts=100, eid="s11"),
        forget(user="u2", ts=200, eid="s12"),
    ]


def test_the_same_input_gives_the_same_action_and_decision_ids() -> None:
    first, second = run(*story(), until=1000), run(*story(), until=1000)
    assert first.actions == second.actions
    assert first.decisions == second.decisions
    assert len({a.action_id for a in first.actions}) == len(first.actions)
    assert len({d.decision_id for d in first.decisions}) == len(first.decisions)


def test_ids_depend_on_the_user_and_the_triggering_events() -> None:
    a = run(purchase("bin-1", ts=0, eid="x")).actions[0]
    b = run(purchase("bin-1", user="u2", ts=0, eid="x")).actions[0]
    c = run(purchase("bin-1", ts=0, eid="y")).actions[0]
    assert len({a.action_id, b.action_id, c.action_id}) == 3
    assert a.source_event_ids == ("x",)


def test_action_and_decision_records_validate_against_the_output_schemas() -> None:
    result = run(*story(), until=1000)
    version = Policy().version
    assert {a.kind for a in result.actions} == {"similar_item", "basket_recovery"}
    for action in result.actions:
        record = action_record(action, version)
        assert outputs.Action.model_validate(record).model_dump() == record
    reasons = set()
    for decision in result.decisions:
        record = decision_record(decision, version)
        assert outputs.Decision.model_validate(record).model_dump() == record
        reasons.add(record["reason"])
        assert (record["outcome"] == "emitted") == (record["reason"] is None)
        assert (record["action_id"] is None) == (record["reason"] is not None)
    assert {"browse_nudge", "product_ad", "one_off_owned", "prospect", None} <= reasons


def test_the_rule_lists_own_exactly_the_reason_codes_of_the_contract() -> None:
    """Every code in suppressor.wire.outputs.ReasonCode belongs to a named rule, and back."""
    named = {
        reason
        for table in (
            rules.PRODUCT_AD_REASONS,
            rules.CANDIDATE_EXCLUSIONS,
            rules.BASKET_EXCLUSIONS,
            rules.SIMILAR_ITEM_GUARDS,
            rules.BASKET_RECOVERY_GUARDS,
        )
        for reason, _ in table
    }
    measurement = {"holdout"}  # not a rule: the issue-7 holdout group, decided after the guards
    expected = set(get_args(outputs.ReasonCode))
    assert named | {"browse_nudge", "product_ad", "seed"} | measurement == expected
    guards = [reason for reason, _ in rules.SIMILAR_ITEM_GUARDS]
    assert guards == [
        "no_consent",
        "prospect",
        "no_candidates",
        "frequency_cap",
        "duplicate",
        "too_personal",
    ]
    basket_guards = [reason for reason, _ in rules.BASKET_RECOVERY_GUARDS]
    assert basket_guards == [
        "basket_converted",
        "basket_emptied",
        "no_consent",
        "already_reminded",
        "frequency_cap",
        "too_personal",
    ]


def test_user_state_round_trips_through_bytes() -> None:
    state = UserState(
        user_id="u1",
        customer=True,
        purchased=dict.fromkeys(["b", "a"]),
        owned_one_off=dict.fromkeys(["office"]),
        visited=dict.fromkeys(["ams"]),
        ruled_out=dict.fromkeys(["x"]),
        basket=Basket(
            items=(("a", ("e1", "e2")), ("c", ("e3",))),
            episode_items=("a", "c", "d"),
            deadline=at(60),
            reminders=1,
            bought_any=True,
        ),
        consent_basket=False,
        consent_similar=True,
        max_per_week=2,
        opted_in_similar=True,
        sent=(Sent(at(1), "similar_item", ("p", "q")), Sent(at(2), "basket_recovery", ("a",))),
        last_browse=at(3),
        pending=[purchase("a", "b", ts=4), consent(ts=5, similar_item=False), forget(ts=6)],
    )
    assert state_from_bytes(state_to_bytes(state)) == state
    assert state_from_bytes(state_to_bytes(UserState(user_id="u"))) == UserState(user_id="u")


def test_states_left_by_a_run_round_trip_through_bytes() -> None:
    result = start().feed(*story())
    for _, state in result.processor.store.items():
        assert state_from_bytes(state_to_bytes(state)) == state


def test_the_engine_state_survives_a_restart_through_bytes() -> None:
    """A state restored from its bytes decides exactly like the original."""
    engine = Engine(Policy(), shop())
    first = engine.decide(None, add("bin-1", ts=0), stream_time=at(0))
    assert first.state is not None
    restored = state_from_bytes(state_to_bytes(first.state))
    assert engine.tick(restored, at(70)).actions == engine.tick(first.state, at(70)).actions
