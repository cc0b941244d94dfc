"""What we hold about one person, and why each of their triggers was decided as it was
(SPEC section 7 `explain`, section 8 "Access"): the answer to a person's request to see
their data, and to support's "why did they get this?".

Pure: a user's state (and, from replay, their events and decisions) in, plain values out:

- `explain_state`: the state in plain field names, as a JSON-able dict. The worker's admin
  path answers it; `suppressor explain` prints it. Every field of `UserState` is in it
  (a test checks that a new field cannot be left out), and nothing else about the person:
  ids, times, reason codes, their own settings. Times are RFC 3339 (UTC).
- `explain_decision`: one decision with its reason in words, dated where the person's
  events say when ("not sent: bought on 3 March 2025"); `History` holds those events.
- `render`: either of them as plain text, a table a support agent can read out.

`REASON_WORDS` and `TRIGGER_WORDS` give every reason code and trigger of the contract
(`suppressor.wire.outputs`) its words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from suppressor.core.catalog import Catalog
from suppressor.core.holdout import HoldoutSplit
from suppressor.core.model import Decision, Event, Sent, UserState, Watch
from suppressor.core.policy import Policy, format_duration
from suppressor.wire.timefmt import format_ms, parse_rfc3339

Explanation = dict[str, Any]
"""A JSON-able dict with plain field names."""

# --- words ----------------------------------------------------------------------------

TRIGGER_WORDS: Mapping[str, str] = {
    "browse_nudge": "a 'you were looking at this' nudge",
    "product_ad": "an ad for a product",
    "basket_recovery": "a basket reminder",
    "similar_item": "a similar-items message",
}

REASON_WORDS: Mapping[str, str] = {
    # browse and "buy it again": never sent
    "browse_nudge": "we never chase people for looking around",
    "product_ad": "we never advertise a product only because it was looked at or bought",
    "past_destination": "a place already visited",
    "already_purchased": "already bought",
    "one_off_owned": "a one-off item of a kind already owned",
    "ruled_out": "ruled out: removed from the basket or reviewed 2 stars or less",
    # items left out of a message
    "seed": "the item the suggestions start from",
    "unavailable": "not available",
    # why a message was not sent
    "no_consent": "this kind of message is turned off",
    "prospect": "has never bought anything and has not asked for suggestions",
    "no_candidates": "nothing suitable was left to suggest",
    "frequency_cap": "the limit of messages for the period was reached",
    "duplicate": "the same message was sent recently",
    "too_personal": "it would draw on too many kinds of what we know about the person",
    "basket_converted": "the basket was bought",
    "basket_emptied": "the basket was emptied",
    "already_reminded": "already reminded about this basket",
    "holdout": "held back: in the group that gets no messages, to measure whether they help",
}

RULED_OUT_WORDS: Mapping[str, str] = {
    "removed_from_basket": "removed from the basket",
    "reviewed_badly": "reviewed 2 stars or less",
}

DIMENSION_WORDS: Mapping[str, str] = {
    "purchase_history": "from what was bought",
    "travel_history": "from the trips taken",
    "reviews": "from a review of 4 or 5 stars",
    "basket": "from the basket",
}

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def day(ms: int) -> str:
    """'3 March 2025' (UTC), whatever the locale."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def moment(ms: int) -> str:
    """'3 March 2025 14:05 UTC'."""
    return f"{day(ms)} {datetime.fromtimestamp(ms / 1000, UTC):%H:%M} UTC"


# --- the state ------------------------------------------------------------------------


def explain_state(user_id: str, state: UserState | None, policy: Policy) -> Explanation:
    """What is held about `user_id`: `state_held` False (and nothing else but the policy
    version) when there is no state: never seen, or erased by a `forget`."""
    head: Explanation = {"user_id": user_id, "policy_version": policy.version}
    if state is None:
        return {**head, "state_held": False}
    return {
        **head,
        "state_held": True,
        "status": "customer" if state.customer else "prospect",
        "consent": _consent(state, policy),
        "frequency_cap": _cap(state, policy),
        "basket": _basket(state),
        "pending_similar_item": _pending_similar(state),
        "purchased_items": list(state.purchased),
        "ruled_out_items": [
            {"item_id": item, "why": state.ruled_out_why.get(item)} for item in state.ruled_out
        ],
        "owned_one_off_categories": list(state.owned_one_off),
        "visited_destinations": list(state.visited),
        "recent_actions": _recent_actions(state.sent, state.watching),
        "last_browse": _time(state.last_browse),
        "held_events": [_held(event) for event in state.pending],
        "holdout_group": HoldoutSplit(policy.holdout_percent, policy.holdout_salt).holds_out(
            user_id
        ),
    }


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def _consent(state: UserState, policy: Policy) -> Explanation:
    """`given`: what the person said (None: never said, the policy's default applies)."""
    defaults = policy.default_consent
    basket, similar = state.consent_basket, state.consent_similar
    return {
        "basket_recovery": {
            "given": basket,
            "in_effect": defaults.basket_recovery if basket is None else basket,
        },
        "similar_item": {
            "given": similar,
            "in_effect": defaults.similar_item if similar is None else similar,
            "ever_asked_for": state.opted_in_similar,
        },
    }


def _cap(state: UserState, policy: Policy) -> Explanation:
    cap = policy.frequency_cap
    return {
        "max_actions": cap.max_actions,
        "per": format_duration(cap.per),
        "personal_max_actions_per_week": state.max_per_week,
        "reserved_for_basket_reminders": cap.reserve_for_basket,
    }


def _basket(state: UserState) -> Explanation | None:
    basket = state.basket
    if basket is None:
        return None
    return {
        "items": [{"item_id": item, "add_event_ids": list(adds)} for item, adds in basket.items],
        "items_this_episode": list(basket.episode_items),
        "deadline": _time(basket.deadline),
        "reminders_sent": basket.reminders,
        "some_bought": basket.bought_any,
    }


def _pending_similar(state: UserState) -> Explanation | None:
    pending = state.similar
    if pending is None:
        return None
    return {
        "due": format_ms(pending.due),
        "seeds": [
            {"item_id": seed.item_id, "data_dimension": seed.dimension} for seed in pending.seeds
        ],
        "source_event_ids": list(pending.source_event_ids),
    }


def _recent_actions(sent: Sequence[Sent], watching: Sequence[Watch]) -> list[Explanation]:
    """The actions remembered for the cap and dedupe, each with its attribution window
    while that is open; an open window whose action the cap has forgotten is listed too.
    A state written before issue 22 has no ids in `sent`: found in the windows if open."""
    by_id = {watch.action_id: watch for watch in watching}
    by_content = {(w.ts, w.kind, tuple(sorted(w.items))): w for w in watching}
    listed: list[Explanation] = []
    for action in sent:
        watch = by_id.get(action.action_id) or by_content.get(
            (action.ts, action.kind, action.items)
        )
        action_id = action.action_id or (watch.action_id if watch else None)
        held_out = action.held_out or (watch is not None and watch.held_out)
        listed.append(_action(action_id, action.kind, action.ts, action.items, held_out, watch))
    listed_ids = {action["action_id"] for action in listed}
    for watch in watching:
        if watch.action_id not in listed_ids:
            listed.append(
                _action(watch.action_id, watch.kind, watch.ts, watch.items, watch.held_out, watch)
            )
    return sorted(listed, key=lambda action: (action["ts"], action["action_id"] or ""))


def _action(
    action_id: str | None,
    kind: str,
    ts: int,
    items: Sequence[str],
    held_out: bool,
    watch: Watch | None,
) -> Explanation:
    return {
        "action_id": action_id,
        "kind": kind,
        "ts": format_ms(ts),
        "items": list(items),
        "held_out": held_out,
        "attribution_window_closes": _time(watch.closes) if watch else None,
        "bought_after_at": _time(watch.converted_at) if watch else None,
    }


def _held(event: Event) -> Explanation:
    items = list(event.items)
    if event.item_id is not None:
        items.append(event.item_id)
    return {
        "event_id": event.event_id,
        "type": event.type,
        "ts": format_ms(event.ts),
        "items": items,
    }


# --- decisions, with the person's history -----------------------------------------------


class History:
    """One person's events (in the order they were applied) and decisions, to date the
    reasons: when an item was bought, ruled out, a kind of message turned off."""

    def __init__(
        self,
        events: Iterable[Event],
        decisions: Iterable[Decision] = (),
        catalog: Catalog | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.events = sorted(events, key=lambda event: (event.ts, event.event_id))
        self.decisions = list(decisions)
        self.catalog = catalog if catalog is not None else Catalog()
        self.policy = policy if policy is not None else Policy()

    def last(self, before: int, matches: Callable[[Event], bool]) -> Event | None:
        """The latest event at or before `before` that `matches`."""
        found = None
        for event in self.events:
            if event.ts > before:
                break
            if matches(event):
                found = event
        return found

    def item_words(self, reason: str, item: str, before: int) -> str:
        """Why `item` may not be offered, dated when the history says when."""
        dated = _ITEM_REASONS.get(reason)
        words = dated(self, item, before) if dated else None
        return words or REASON_WORDS.get(reason, reason)

    def guard_words(self, decision: Decision) -> str:
        dated = _GUARD_REASONS.get(decision.reason or "")
        words = dated(self, decision) if dated else None
        return words or REASON_WORDS.get(decision.reason or "", decision.reason or "")


def _bought(history: History, item: str, before: int) -> str | None:
    found = history.last(before, lambda e: e.type == "purchase" and item in e.items)
    return None if found is None else f"bought on {day(found.ts)}"


def _visited(history: History, item: str, before: int) -> str | None:
    found = history.last(
        before,
        lambda e: (
            (e.type == "purchase" and item in e.items) or (e.type == "review" and e.item_id == item)
        ),
    )
    if found is None:
        return None
    how = "booked" if found.type == "purchase" else "reviewed"
    return f"a place already visited ({how} on {day(found.ts)})"


def _owned(history: History, item: str, before: int) -> str | None:
    wanted = history.catalog.get(item)
    if wanted is None:
        return None

    def same_kind(other: str) -> bool:
        found = history.catalog.get(other)
        return found is not None and found.one_off and found.category == wanted.category

    bought = history.last(before, lambda e: e.type == "purchase" and any(map(same_kind, e.items)))
    if bought is None:
        return None
    owned = next(other for other in bought.items if same_kind(other))
    return f"already owns one of this kind ({owned}, bought on {day(bought.ts)})"


def _ruled_out(history: History, item: str, before: int) -> str | None:
    def rules_it_out(e: Event) -> bool:
        if e.item_id != item:
            return False
        removed = e.type == "cart" and e.action == "remove"
        return removed or (e.type == "review" and (e.rating or 3) <= 2)

    found = history.last(before, rules_it_out)
    if found is None:
        return None
    if found.type == "cart":
        return f"ruled out: removed from the basket on {day(found.ts)}"
    stars = "1 star" if found.rating == 1 else f"{found.rating} stars"
    return f"ruled out: reviewed {stars} on {day(found.ts)}"


_ITEM_REASONS: Mapping[str, Callable[[History, str, int], str | None]] = {
    "already_purchased": _bought,
    "past_destination": _visited,
    "one_off_owned": _owned,
    "ruled_out": _ruled_out,
}


def _no_consent(history: History, decision: Decision) -> str | None:
    field = "basket_recovery" if decision.trigger == "basket_recovery" else "similar_item"
    found = history.last(
        decision.ts, lambda e: e.type == "consent" and getattr(e, field) is not None
    )
    if found is not None and getattr(found, field) is False:
        return f"the person turned this kind of message off on {day(found.ts)}"
    if found is None and not getattr(history.policy.default_consent, field):
        return "this kind of message is off unless the person turns it on (the policy's default)"
    return None


def _duplicate(history: History, decision: Decision) -> str | None:
    items = sorted(decision.items)
    for earlier in reversed(history.decisions):
        if (
            earlier.ts < decision.ts
            and earlier.trigger == decision.trigger
            and earlier.action_id is not None
            and sorted(earlier.items) == items
        ):
            return f"the same message was sent on {day(earlier.ts)}"
    return None


def _frequency_cap(history: History, decision: Decision) -> str | None:
    cap = history.policy.frequency_cap
    words = f"the limit of {cap.max_actions} messages per {format_duration(cap.per)} was reached"
    own = history.last(
        decision.ts, lambda e: e.type == "consent" and e.max_actions_per_week is not None
    )
    if own is not None and own.max_actions_per_week is not None:
        words += f", or the person's own limit of {own.max_actions_per_week} a week"
    if decision.trigger == "similar_item" and cap.reserve_for_basket:
        words += " (the last slots are kept for basket reminders)"
    return words


_GUARD_REASONS: Mapping[str, Callable[[History, Decision], str | None]] = {
    "no_consent": _no_consent,
    "duplicate": _duplicate,
    "frequency_cap": _frequency_cap,
}


def explain_decision(decision: Decision, history: History) -> Explanation:
    """A decision as the `decisions` topic has it, and in words."""
    reason = decision.reason
    if reason is None:
        outcome = f"sent (action {decision.action_id})"
    elif reason in _ITEM_REASONS and decision.items:
        outcome = f"not sent: {history.item_words(reason, decision.items[0], decision.ts)}"
    else:
        outcome = f"not sent: {history.guard_words(decision)}"
    return {
        "decision_id": decision.decision_id,
        "ts": format_ms(decision.ts),
        "trigger": decision.trigger,
        "outcome": decision.outcome,
        "reason": reason,
        "items": list(decision.items),
        "excluded": [
            {
                "item_id": item,
                "reason": why,
                "words": _exclusion_words(history, why, item, decision.ts),
            }
            for item, why in decision.excluded
        ],
        "action_id": decision.action_id,
        "source_event_ids": list(decision.source_event_ids),
        "words": f"{_what(decision)}: {outcome}",
    }


def _what(decision: Decision) -> str:
    items = ", ".join(decision.items)
    if decision.trigger == "product_ad" and items:
        return f"an ad for {items}"
    if decision.trigger == "browse_nudge" and items:
        return f"a 'you were looking at {items}' nudge"
    what = TRIGGER_WORDS.get(decision.trigger, decision.trigger)
    return f"{what} ({items})" if items else what


def _exclusion_words(history: History, reason: str, item: str, before: int) -> str:
    if reason == "too_personal":
        return "left out: suggestions from it would use one kind of personal data too many"
    return history.item_words(reason, item, before)


# --- plain text ---------------------------------------------------------------------------


def render(explanation: Explanation) -> str:
    """An explanation (`explain_state`, optionally with `decisions` from `explain_decision`
    and `stream_time`) as plain text: a two-column table, then the decisions."""
    lines = [f"What we hold about {explanation['user_id']}"]
    rows = _rows(explanation)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        for number, part in enumerate(value.split("\n")):
            lines.append(f"  {label if number == 0 else '':<{width}}  {part}")
    decisions = explanation.get("decisions")
    if decisions is not None:
        lines += ["", f"Decisions about {explanation['user_id']} ({len(decisions)})"]
        lines += [line for decision in decisions for line in _decision_lines(decision)]
    return "\n".join(lines) + "\n"


def _rows(e: Explanation) -> list[tuple[str, str]]:
    rows = [("policy version", str(e["policy_version"]))]
    if e.get("stream_time"):
        rows.append(("as of", _words_time(e["stream_time"]) + " (stream time)"))
    if not e["state_held"]:
        return [*rows, ("state", "none held: never seen, or erased at the person's request")]
    consent, cap = e["consent"], e["frequency_cap"]
    return [
        *rows,
        ("status", _status(e["status"])),
        ("basket reminders", _consent_words(consent["basket_recovery"])),
        ("similar items", _consent_words(consent["similar_item"])),
        ("message limit", _cap_words(cap)),
        ("basket", _basket_words(e["basket"])),
        ("pending suggestion", _pending_words(e["pending_similar_item"])),
        ("bought", _listed(e["purchased_items"])),
        ("ruled out", _listed(_ruled_out_words(item) for item in e["ruled_out_items"])),
        ("one-off kinds owned", _listed(e["owned_one_off_categories"])),
        ("places visited", _listed(e["visited_destinations"])),
        ("recent messages", "\n".join(map(_action_words, e["recent_actions"])) or "none"),
        ("last looked around", _words_time(e["last_browse"]) if e["last_browse"] else "never"),
        ("events not yet applied", _held_words(e["held_events"])),
        ("holdout group", "yes: gets no messages" if e["holdout_group"] else "no"),
    ]


def _words_time(text: str) -> str:
    return moment(int(parse_rfc3339(text).timestamp() * 1000))


def _status(status: str) -> str:
    if status == "customer":
        return "customer (has bought something)"
    return "prospect (has not bought anything: approached with nothing we know of them)"


def _consent_words(consent: Mapping[str, Any]) -> str:
    state = "on" if consent["in_effect"] else "off"
    said = "the policy's default" if consent["given"] is None else "the person's choice"
    asked = " (has asked for suggestions)" if consent.get("ever_asked_for") else ""
    return f"{state} ({said}){asked}"


def _cap_words(cap: Mapping[str, Any]) -> str:
    words = f"{cap['max_actions']} messages per {cap['per']}"
    if cap["personal_max_actions_per_week"] is not None:
        words += f"; the person's own limit: {cap['personal_max_actions_per_week']} a week"
    return words


def _basket_words(basket: Mapping[str, Any] | None) -> str:
    if basket is None:
        return "empty"
    items = _listed(item["item_id"] for item in basket["items"])
    due = basket["deadline"]
    reminder = f"reminder due {_words_time(due)}" if due else "no reminder due"
    return f"{items}; {reminder}; {basket['reminders_sent']} reminder(s) sent"


def _pending_words(pending: Mapping[str, Any] | None) -> str:
    if pending is None:
        return "none"
    seeds = _listed(
        f"{seed['item_id']} ({DIMENSION_WORDS.get(seed['data_dimension'], seed['data_dimension'])})"
        for seed in pending["seeds"]
    )
    return f"similar items to {seeds}; due {_words_time(pending['due'])}"


def _ruled_out_words(item: Mapping[str, Any]) -> str:
    why = RULED_OUT_WORDS.get(item["why"] or "", "reason not recorded")
    return f"{item['item_id']} ({why})"


def _action_words(action: Mapping[str, Any]) -> str:
    what = TRIGGER_WORDS.get(action["kind"], action["kind"])
    line = f"{_words_time(action['ts'])}: {what} ({_listed(action['items'])})"
    if action["held_out"]:
        line += ", held back (holdout group)"
    if action["bought_after_at"]:
        line += f", bought after it on {_words_time(action['bought_after_at'])}"
    return f"{line} [{action['action_id'] or 'id not recorded'}]"


def _held_words(held: Sequence[Mapping[str, Any]]) -> str:
    if not held:
        return "none"
    return f"{len(held)} (held for reordering for at most the grace period)"


def _listed(values: Iterable[str]) -> str:
    return ", ".join(values) or "none"


def _decision_lines(decision: Mapping[str, Any]) -> list[str]:
    lines = [f"  {_words_time(decision['ts'])}  {decision['words']}"]
    for excluded in decision["excluded"]:
        lines.append(f"      left out {excluded['item_id']}: {excluded['words']}")
    return lines
