"""Issue 7: the holdout group and conversion attribution, through the engine."""

from __future__ import annotations

import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from suppressor.core.codec import conversion_record, state_from_bytes, state_to_bytes
from suppressor.core.holdout import HoldoutSplit
from suppressor.core.replay.report import lifts, print_report
from suppressor.core.stats import lift, wilson
from suppressor.core.tally import Tally
from tests.unit.conftest import (
    DAY,
    MINUTE,
    MS,
    add,
    at,
    browse,
    policy,
    purchase,
    review,
    run,
)

WEEK_MIN = 7 * DAY / MINUTE


def held_out_user(percent: float = 50, salt: str = "t") -> str:
    split = HoldoutSplit(percent, salt)
    return next(f"user-{n}" for n in range(1000) if split.holds_out(f"user-{n}"))


def treated_user(percent: float = 50, salt: str = "t") -> str:
    split = HoldoutSplit(percent, salt)
    return next(f"user-{n}" for n in range(1000) if not split.holds_out(f"user-{n}"))


# --- the split --------------------------------------------------------------------------


def test_the_split_is_stable_and_close_to_the_requested_share_on_100k_users() -> None:
    users = [f"u{n}" for n in range(100_000)]
    for percent in (1, 10, 50):
        split = HoldoutSplit(percent, "salt")
        held = sum(split.holds_out(user) for user in users)
        assert abs(held / len(users) - percent / 100) < 0.005
        again = HoldoutSplit(percent, "salt")
        assert all(split.holds_out(u) == again.holds_out(u) for u in users[:2000])


def test_zero_percent_holds_out_nobody_and_a_new_salt_redraws_the_split() -> None:
    users = [f"u{n}" for n in range(5000)]
    assert not any(HoldoutSplit(0, "salt").holds_out(u) for u in users)
    a = {u for u in users if HoldoutSplit(50, "a").holds_out(u)}
    b = {u for u in users if HoldoutSplit(50, "b").holds_out(u)}
    assert a != b and 0.4 < len(a & b) / len(a) < 0.6


def test_a_bigger_share_contains_the_smaller_one() -> None:
    users = [f"u{n}" for n in range(5000)]
    small = {u for u in users if HoldoutSplit(5, "s").holds_out(u)}
    big = {u for u in users if HoldoutSplit(20, "s").holds_out(u)}
    assert small <= big


# --- holdout in the engine ----------------------------------------------------------------


def test_a_held_out_user_gets_a_holdout_decision_instead_of_the_action() -> None:
    user = held_out_user()
    result = run(
        purchase("shredder-1", user=user, ts=0),
        policy_=policy(holdout_percent=50, holdout_salt="t"),
    )
    assert result.actions == []
    [decision] = result.decided("similar_item")
    assert decision.reason == "holdout" and decision.action_id is not None
    assert decision.items == ("bin-1", "lamp-1")


def test_a_treated_user_is_unaffected_by_the_holdout() -> None:
    user = treated_user()
    held = run(
        purchase("shredder-1", user=user, ts=0, eid="p1"),
        policy_=policy(holdout_percent=50, holdout_salt="t"),
    )
    plain = run(purchase("shredder-1", user=user, ts=0, eid="p1"))
    assert [a.action_id for a in held.actions] == [a.action_id for a in plain.actions]
    assert len(held.actions) == 1


def test_held_out_actions_count_for_caps_dedupe_and_reminders_like_sent_ones() -> None:
    user = held_out_user()
    holdout = policy(holdout_percent=50, holdout_salt="t", frequency_cap={"max_actions": 1})
    result = run(
        purchase("shredder-1", user=user, ts=0),
        review("shoes-1", 5, user=user, ts=10),  # would be a second action: capped
        add("lamp-1", user=user, ts=20),
        until=WEEK_MIN,
        policy_=holdout,
    )
    assert result.reasons("similar_item") == ["holdout", "frequency_cap"]
    assert result.reasons("basket_recovery") == ["frequency_cap"]
    reminded = run(
        add("lamp-1", user=user, ts=0),
        add("bin-1", user=user, ts=70),
        until=WEEK_MIN,
        policy_=policy(holdout_percent=50, holdout_salt="t"),
    )
    assert reminded.reasons("basket_recovery") == ["holdout", "already_reminded"]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(["shredder-1", "bin-1", "dress-1", "ams", "lamp-1"]), max_size=6),
    st.integers(min_value=0, max_value=40),
)
def test_holdout_users_never_receive_an_action(items: list[str], n_user: int) -> None:
    user = f"user-{n_user}"
    events = [purchase(item, user=user, ts=i * 30) for i, item in enumerate(items)]
    events += [add("lamp-1", user=user, ts=500), review("bru", 5, user=user, ts=501)]
    holdout = policy(holdout_percent=50, holdout_salt="t")
    result = run(*events, policy_=holdout, until=30 * DAY / MINUTE)
    if HoldoutSplit(50, "t").holds_out(user):
        assert result.actions == []
    assert all(c.held_out == HoldoutSplit(50, "t").holds_out(user) for c in result.conversions)


# --- attribution windows ------------------------------------------------------------------


def test_a_purchase_of_an_offered_item_just_inside_the_window_converts() -> None:
    result = run(
        purchase("shredder-1", ts=0),  # similar_item offers bin-1
        purchase("bin-1", ts=WEEK_MIN),  # exactly at the window's end: inside
        until=2 * WEEK_MIN,
    )
    first = next(c for c in result.conversions if c.action_id == result.actions[0].action_id)
    assert first.converted_at == at(WEEK_MIN)
    assert first.window_end == at(WEEK_MIN)


def test_a_purchase_just_outside_the_window_does_not_convert() -> None:
    result = run(
        purchase("shredder-1", ts=0),
        purchase("bin-1", ts=WEEK_MIN + MS),
        until=2 * WEEK_MIN,
    )
    first = next(c for c in result.conversions if c.action_id == result.actions[0].action_id)
    assert first.converted_at is None


def test_the_window_closes_only_when_stream_time_passes_its_end_plus_grace() -> None:
    result = run(purchase("shredder-1", ts=0), until=WEEK_MIN + 5)
    assert result.conversions == []
    result.advance(WEEK_MIN + 5 + MS)
    assert len(result.conversions) == 1


def test_a_purchase_read_late_but_within_grace_still_converts() -> None:
    # The purchase (ts just before the window's end) is read after another user's event
    # that moved stream time past the window's end, but by less than grace.
    result = run(
        purchase("shredder-1", ts=0),
        browse("rom", user="other", ts=WEEK_MIN + 3),
        purchase("bin-1", ts=WEEK_MIN - 1),
        until=2 * WEEK_MIN,
    )
    assert result.late_events == 0
    first = next(c for c in result.conversions if c.action_id == result.actions[0].action_id)
    assert first.converted_at == at(WEEK_MIN - 1)


def test_basket_recovery_converts_on_a_basket_item_bought_after_the_reminder() -> None:
    result = run(add("lamp-1", ts=0), purchase("lamp-1", ts=120), until=2 * WEEK_MIN)
    [action] = [a for a in result.actions if a.kind == "basket_recovery"]
    [conversion] = [c for c in result.conversions if c.action_id == action.action_id]
    assert conversion.kind == "basket_recovery"
    assert (conversion.converted_at - conversion.action_ts) == 60 * MINUTE


def test_a_forgotten_user_has_no_open_windows_left() -> None:
    from tests.unit.conftest import forget

    result = run(purchase("shredder-1", ts=0), forget(ts=1), until=2 * WEEK_MIN)
    assert result.conversions == []
    assert result.state() is None


def test_open_windows_survive_the_state_codec() -> None:
    result = run(purchase("shredder-1", ts=0))
    state = result.state()
    assert state.watching and state_from_bytes(state_to_bytes(state)) == state


def test_conversion_records_say_the_group_and_the_time_to_convert() -> None:
    result = run(add("lamp-1", ts=0), purchase("lamp-1", ts=90), until=2 * WEEK_MIN)
    [record] = [
        conversion_record(c, "v") for c in result.conversions if c.kind == "basket_recovery"
    ]
    assert record["group"] == "treated" and record["converted"] is True
    assert record["seconds_to_convert"] == 30 * 60


# --- the report -----------------------------------------------------------------------------


def test_wilson_and_newcombe_match_the_published_example() -> None:
    # Newcombe (1998), example (a): 56/70 vs 48/80 -> difference 0.2, 95% CI 0.0524 to 0.3339
    result = lift(56, 70, 48, 80)
    assert result.low is not None and result.high is not None
    assert round(result.low, 4) == 0.0524 and round(result.high, 4) == 0.3339
    assert wilson(0, 0) is None


def test_the_report_prints_rates_and_the_lift_per_kind() -> None:
    tally = Tally()
    tally.conversions["similar_item", "treated", True] = 30
    tally.conversions["similar_item", "treated", False] = 70
    tally.conversions["similar_item", "holdout", True] = 10
    tally.conversions["similar_item", "holdout", False] = 90
    assert lifts(tally)["similar_item"][:4] == (100, 30, 100, 10)
    stream = io.StringIO()
    print_report(tally, stream)
    text = stream.getvalue()
    assert "30.0%" in text and "10.0%" in text and "+20.0%" in text
    assert "n/a" in text  # basket_recovery has no closed windows
    json.dumps(text)
