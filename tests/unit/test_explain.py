"""`explain` (issue 22): what is held about a person and why each decision was made, as plain
fields and plain words; the state facts it needs (why an item is ruled out, the ids of the
actions remembered); and the offline path, one person out of a replay."""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import fields
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from suppressor.core import rules
from suppressor.core.codec import state_from_bytes, state_to_bytes
from suppressor.core.explain import (
    DIMENSION_WORDS,
    REASON_WORDS,
    RULED_OUT_WORDS,
    TRIGGER_WORDS,
    History,
    day,
    explain_decision,
    explain_state,
    render,
)
from suppressor.core.model import (
    Basket,
    Decision,
    Event,
    PendingSimilar,
    RuledOutWhy,
    Seed,
    Sent,
    UserState,
    Watch,
)
from suppressor.core.processor import DictStore, Processor
from suppressor.core.replay.person import explain_from_replay
from suppressor.core.replay.run import FileSink, replay
from suppressor.core.rules import WEEK_MS
from suppressor.wire import outputs
from tests.unit.conftest import (
    add,
    at,
    browse,
    consent,
    forget,
    iso,
    jsonl,
    numbered,
    policy,
    purchase,
    remove,
    review,
    run,
    shop,
)
from tests.unit.test_properties import FAST, POLICIES, RecordingEngine, merged, user_history

# --- every code has words -------------------------------------------------------------------


def test_every_reason_code_of_the_contract_has_words() -> None:
    codes = set(get_args(outputs.ReasonCode))
    assert set(REASON_WORDS) == codes
    used = {reason for table in _rule_tables() for reason, _ in table}
    assert used <= codes, used - codes
    assert all(REASON_WORDS[code].strip() for code in codes)


def _rule_tables() -> list[list[tuple[str, Any]]]:
    return [
        rules.PRODUCT_AD_REASONS,
        rules.CANDIDATE_EXCLUSIONS,
        rules.BASKET_EXCLUSIONS,
        rules.SIMILAR_ITEM_GUARDS,
        rules.SEEDLESS_SIMILAR_ITEM_GUARDS,
        rules.BASKET_RECOVERY_GUARDS,
    ]


def test_every_trigger_dimension_and_ruling_out_has_words() -> None:
    assert set(TRIGGER_WORDS) == set(get_args(outputs.Trigger))
    assert set(DIMENSION_WORDS) == set(get_args(outputs.DataDimension))
    assert set(RULED_OUT_WORDS) == set(get_args(RuledOutWhy))


# --- what the state remembers for it ----------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "why"),
    [
        ([add("shoes-1", ts=0), remove("shoes-1", ts=1)], "removed_from_basket"),
        ([review("shoes-1", 2, ts=0)], "reviewed_badly"),
        ([review("shoes-1", 1, ts=0), add("shoes-1", ts=1), remove("shoes-1", ts=2)],
         "removed_from_basket"),
        ([remove("shoes-1", ts=0), review("shoes-1", 1, ts=1)], "reviewed_badly"),
        ([remove("shoes-1", ts=0), review("shoes-1", 5, ts=1)], "removed_from_basket"),
    ],
)  # fmt: skip
def test_a_ruled_out_item_keeps_the_persons_last_word_on_it(
    events: list[Event], why: RuledOutWhy
) -> None:
    state = run(*events).state()
    assert dict(state.ruled_out_why) == {"shoes-1": why}


def test_adding_an_item_again_forgets_why_it_was_ruled_out() -> None:
    state = run(remove("shoes-1", ts=0), add("shoes-1", ts=1)).state()
    assert not state.ruled_out and not state.ruled_out_why


def test_the_reasons_leave_with_the_items_the_state_limit_evicts() -> None:
    small = policy(state_limits={"ruled_out_items": 2})
    events = [remove("a", ts=0), review("b", 1, ts=1), remove("c", ts=2)]
    state = run(*events, policy_=small).state()
    assert list(state.ruled_out) == ["b", "c"]
    assert dict(state.ruled_out_why) == {"b": "reviewed_badly", "c": "removed_from_basket"}


def test_the_actions_remembered_for_the_cap_carry_their_ids() -> None:
    result = run(purchase("dress-1", ts=0), add("shoes-2", ts=10), until=200)
    sent = result.state().sent
    assert [s.action_id for s in sent] == [a.action_id for a in result.actions]
    assert {s.held_out for s in sent} == {False}


def test_a_held_out_action_is_remembered_as_held_out() -> None:
    result = run(add("shoes-2", ts=0), policy_=policy(holdout_percent=100), until=200)
    (sent,) = result.state().sent
    assert sent.held_out and not result.actions
    assert sent.action_id == result.decided("basket_recovery")[0].action_id


def test_the_new_state_facts_survive_the_changelog_and_old_records_still_decode() -> None:
    state = run(remove("shoes-1"), review("bin-1", 1), add("shoes-2", ts=1), until=200).state()
    again = state_from_bytes(state_to_bytes(state))
    assert again.ruled_out_why == state.ruled_out_why and again.sent == state.sent
    # a version 2 record written before issue 22: no reasons, sent without ids
    old = msgspec.msgpack.decode(state_to_bytes(state))
    old = old[:-1]
    old[12] = [sent[:3] for sent in old[12]]
    before = state_from_bytes(msgspec.msgpack.encode(old))
    assert before.ruled_out == state.ruled_out and not before.ruled_out_why
    assert [s.action_id for s in before.sent] == [""]
    explained = explain_state("u1", before, policy())
    assert {item["why"] for item in explained["ruled_out_items"]} == {None}
    # the id comes from the open attribution window
    assert [a["action_id"] for a in explained["recent_actions"]] == [state.sent[0].action_id]


# --- the state in plain fields ------------------------------------------------------------------

EXPLAINED_BY = {
    "user_id": "user_id",
    "customer": "status",
    "purchased": "purchased_items",
    "owned_one_off": "owned_one_off_categories",
    "visited": "visited_destinations",
    "ruled_out": "ruled_out_items",
    "ruled_out_why": "ruled_out_items",
    "basket": "basket",
    "consent_basket": "consent",
    "consent_similar": "consent",
    "max_per_week": "frequency_cap",
    "opted_in_similar": "consent",
    "sent": "recent_actions",
    "last_browse": "last_browse",
    "watching": "recent_actions",
    "similar": "pending_similar_item",
    "pending": "held_events",
}


def full_state() -> UserState:
    """Every field of a state set to something other than its default."""
    return UserState(
        user_id="u1",
        customer=True,
        purchased={"dress-1": None},
        owned_one_off={"office": None},
        visited={"ams": None},
        ruled_out={"bag-1": None, "lamp-1": None},
        ruled_out_why={"bag-1": "removed_from_basket", "lamp-1": "reviewed_badly"},
        basket=Basket((("shoes-1", ("e1", "e2")),), ("shoes-1",), at(60), 1, True),
        consent_basket=False,
        consent_similar=True,
        max_per_week=2,
        opted_in_similar=True,
        sent=(Sent(at(1), "similar_item", ("shoes-2",), "a1", False),),
        last_browse=at(2),
        watching=(Watch(at(1) + WEEK_MS, "a1", "similar_item", ("shoes-2",), at(1), False, at(3)),),
        similar=PendingSimilar(at(1440), (Seed("dress-1", "purchase_history"),), ("e3",)),
        pending=[browse("bin-1", ts=5, eid="e9")],
    )


def test_every_field_of_the_state_is_explained() -> None:
    """A new field of UserState fails here until it is explained (and listed above)."""
    assert set(EXPLAINED_BY) == {f.name for f in fields(UserState)}
    explained = explain_state("u1", full_state(), policy())
    assert set(EXPLAINED_BY.values()) <= set(explained)


def test_the_state_in_plain_fields() -> None:
    explained = explain_state("u1", full_state(), policy(default_consent={"similar_item": False}))
    assert json.loads(json.dumps(explained)) == explained
    assert explained["status"] == "customer"
    assert explained["consent"] == {
        "basket_recovery": {"given": False, "in_effect": False},
        "similar_item": {"given": True, "in_effect": True, "ever_asked_for": True},
    }
    assert explained["frequency_cap"]["personal_max_actions_per_week"] == 2
    assert explained["basket"] == {
        "items": [{"item_id": "shoes-1", "add_event_ids": ["e1", "e2"]}],
        "items_this_episode": ["shoes-1"],
        "deadline": iso(60),
        "reminders_sent": 1,
        "some_bought": True,
    }
    assert explained["pending_similar_item"] == {
        "due": iso(1440),
        "seeds": [{"item_id": "dress-1", "data_dimension": "purchase_history"}],
        "source_event_ids": ["e3"],
    }
    assert explained["ruled_out_items"] == [
        {"item_id": "bag-1", "why": "removed_from_basket"},
        {"item_id": "lamp-1", "why": "reviewed_badly"},
    ]
    assert explained["recent_actions"] == [
        {
            "action_id": "a1",
            "kind": "similar_item",
            "ts": iso(1),
            "items": ["shoes-2"],
            "held_out": False,
            "attribution_window_closes": iso(1 + 7 * 1440),
            "bought_after_at": iso(3),
        }
    ]
    assert explained["held_events"] == [
        {"event_id": "e9", "type": "browse", "ts": iso(5), "items": ["bin-1"]}
    ]
    assert explained["policy_version"] == policy(default_consent={"similar_item": False}).version


def test_a_person_without_state_is_said_to_have_none() -> None:
    assert explain_state("u9", None, policy()) == {
        "user_id": "u9",
        "policy_version": policy().version,
        "state_held": False,
    }
    assert "none held" in render(explain_state("u9", None, policy()))


def test_the_state_in_plain_words() -> None:
    text = render(explain_state("u1", full_state(), policy()))
    for words in (
        "customer (has bought something)",
        "off (the person's choice)",
        "the person's own limit: 2 a week",
        "shoes-1; reminder due 1 January 2025 01:00 UTC; 1 reminder(s) sent",
        "similar items to dress-1 (from what was bought); due 2 January 2025 00:00 UTC",
        "bag-1 (removed from the basket), lamp-1 (reviewed 2 stars or less)",
        "1 January 2025 00:01 UTC: a similar-items message (shoes-2), bought after it on",
        "[a1]",
    ):
        assert words in text, (words, text)


@FAST
@given(history=user_history("u0"), policy_index=st.integers(0, len(POLICIES) - 1))
def test_the_explanation_agrees_with_what_the_person_did(
    history: list[Event], policy_index: int
) -> None:
    """An independent model, from the events applied (in processing order): the ruled-out
    items and why, and the actions sent since the last forget, are what the explanation
    says; it is JSON, and the same after the state's trip through the changelog."""
    pol = POLICIES[policy_index]
    engine = RecordingEngine(pol)
    processor = Processor(engine, DictStore())
    stream = merged([history], [])
    for event in stream:
        processor.on_event(event, event.ts)
    processor.flush()
    processor.advance_to((stream[-1].ts if stream else 0) + 40 * 86_400_000)
    why: dict[str, str] = {}
    sent: list[tuple[int, str]] = []
    for what, value in engine.log:
        if what == "action":
            sent.append((value.ts, value.action_id))
        elif value.type == "forget":
            why, sent = {}, []
        elif value.type == "cart" and value.action == "add":
            why.pop(value.item_id, None)
        elif value.type == "cart" or (value.type == "review" and value.rating <= 2):
            why.pop(value.item_id, None)
            why[value.item_id] = "removed_from_basket" if value.type == "cart" else "reviewed_badly"
    state = processor.store.get("u0")
    explained = explain_state("u0", state, pol)
    assert json.loads(json.dumps(explained)) == explained
    if state is None:
        return
    assert explain_state("u0", state_from_bytes(state_to_bytes(state)), pol) == explained
    assert {i["item_id"]: i["why"] for i in explained["ruled_out_items"]} == why
    listed = {a["action_id"] for a in explained["recent_actions"]}
    assert listed <= {action_id for _, action_id in sent}
    if sent:
        last = max(ts for ts, _ in sent)
        assert {action_id for ts, action_id in sent if ts > last - WEEK_MS} <= listed


# --- decisions in words ------------------------------------------------------------------------


def decision(trigger: str, reason: str | None, items: tuple[str, ...], ts: float) -> Decision:
    return Decision("d", "u1", at(ts), trigger, reason, items, (), None, ())  # type: ignore[arg-type]


MARCH_3 = (31 + 28 + 2) * 1440  # 3 March 2025, in minutes after BASE


@pytest.mark.parametrize(
    ("events", "made", "words"),
    [
        ([purchase("shoes-1", ts=MARCH_3)], decision("product_ad", "already_purchased",
         ("shoes-1",), MARCH_3 + 60), "an ad for shoes-1: not sent: bought on 3 March 2025"),
        ([remove("bag-1", ts=MARCH_3)], decision("product_ad", "ruled_out", ("bag-1",),
         MARCH_3 + 1), "not sent: ruled out: removed from the basket on 3 March 2025"),
        ([review("bag-1", 1, ts=MARCH_3)], decision("product_ad", "ruled_out", ("bag-1",),
         MARCH_3 + 1), "not sent: ruled out: reviewed 1 star on 3 March 2025"),
        ([purchase("ams", ts=MARCH_3)], decision("product_ad", "past_destination", ("ams",),
         MARCH_3 + 1), "not sent: a place already visited (booked on 3 March 2025)"),
        ([purchase("shredder-1", ts=MARCH_3)], decision("product_ad", "one_off_owned",
         ("shredder-2",), MARCH_3 + 1),
         "not sent: already owns one of this kind (shredder-1, bought on 3 March 2025)"),
        ([consent(ts=MARCH_3, similar_item=False)], decision("similar_item", "no_consent",
         ("shoes-1",), MARCH_3 + 1),
         "a similar-items message (shoes-1): not sent: the person turned this kind of message "
         "off on 3 March 2025"),
        ([], decision("browse_nudge", "browse_nudge", ("bin-1",), 0),
         "a 'you were looking at bin-1' nudge: not sent: we never chase people for looking"),
        ([], decision("basket_recovery", "holdout", ("bin-1",), 0),
         "not sent: held back: in the group that gets no messages"),
    ],
)  # fmt: skip
def test_a_decision_in_words_says_when(events: list[Event], made: Decision, words: str) -> None:
    explained = explain_decision(made, History(events, [], shop(), policy()))
    assert words in explained["words"], explained["words"]


def test_a_decision_without_the_history_that_dates_it_still_has_words() -> None:
    made = decision("product_ad", "already_purchased", ("shoes-1",), 0)
    assert explain_decision(made, History([]))["words"].endswith("not sent: already bought")


def test_a_duplicate_and_the_cap_say_what_was_sent_and_the_limit() -> None:
    result = run(
        consent(ts=0, max_actions_per_week=1),
        add("shoes-2", ts=0),
        remove("shoes-2", ts=1),
        add("shoes-1", ts=100),
        purchase("dress-1", ts=200),
        until=400,
        policy_=policy(frequency_cap={"max_actions": 3, "reserve_for_basket": 0}),
    )
    history = History([], result.decisions, shop(), policy())
    reasons = {d.reason: explain_decision(d, history)["words"] for d in result.decisions}
    assert "the limit of 3 messages per 7d was reached" in reasons["frequency_cap"]
    assert day(at(0)) == "1 January 2025"


def test_excluded_items_are_listed_with_their_reasons() -> None:
    result = run(purchase("dress-1", ts=0), remove("shoes-1", ts=0), until=100)
    (similar,) = result.decided("similar_item")
    explained = explain_decision(similar, History([purchase("dress-1"), remove("shoes-1")]))
    excluded = {e["item_id"]: (e["reason"], e["words"]) for e in explained["excluded"]}
    assert excluded["dress-1"] == ("seed", "the item the suggestions start from")
    assert excluded["shoes-1"][0] == "ruled_out"
    assert excluded["bag-1"] == ("unavailable", "not available")
    text = render({**explain_state("u1", result.state(), policy()), "decisions": [explained]})
    assert "left out bag-1: not available" in text


# --- offline: one person out of a replay --------------------------------------------------------


def test_one_person_from_a_replay_is_what_the_replay_holds_and_decided() -> None:
    events = [
        purchase("dress-1", user="u1", ts=0),
        browse("dress-1", user="u1", ts=5),
        browse("shoes-2", user="u2", ts=6),
        remove("shoes-1", user="u1", ts=7),
        add("bin-1", user="u1", ts=8),
        forget(user="u2", ts=9),
        browse("lamp-1", user="u3", ts=3000),  # moves everyone's stream time on
    ]
    lines = numbered(jsonl(events))
    pol = policy(similar_after="1h")
    decisions = io.BytesIO()
    store = DictStore()
    replay(lines, pol, shop(), FileSink(None, decisions), store=store, now_ms=at(4000))
    expected = [json.loads(line) for line in decisions.getvalue().splitlines()]
    explained = explain_from_replay("u1", lines, pol, shop(), now_ms=at(4000))
    assert explained["stream_time"] == iso(3000)
    assert {k: v for k, v in explained.items() if k not in ("decisions", "stream_time")} == (
        explain_state("u1", store.get("u1"), pol)
    )
    mine = [d for d in expected if d["user_id"] == "u1"]
    assert [(d["decision_id"], d["reason"]) for d in explained["decisions"]] == [
        (d["decision_id"], d["reason"]) for d in mine
    ]
    assert {d["trigger"] for d in mine} >= {"basket_recovery", "similar_item", "product_ad"}
    words = [d["words"] for d in explained["decisions"]]
    assert "an ad for dress-1: not sent: bought on 1 January 2025" in words
    erased = explain_from_replay("u2", lines, pol, shop(), now_ms=at(4000))
    assert not erased["state_held"] and erased["decisions"]


def test_a_replay_keeps_each_persons_events_for_the_words() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    lines = numbered(jsonl([browse("bin-1", user="a"), browse("bin-1", user="b", ts=1)]))
    replay(
        lines,
        policy(),
        shop(),
        FileSink(None),
        on_event=lambda e: seen[e.user_id].append(e.event_id),
    )
    assert sorted(seen) == ["a", "b"]
