"""Every rule of the policy on one screen: small named predicates, each owning
one reason code, and the order they are tried in as plain lists.

A predicate returns True when its reason applies (the item is excluded, the
trigger is suppressed). The first that applies gives the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from suppressor.core.catalog import Catalog
from suppressor.core.model import ActionKind, UserState
from suppressor.core.policy import Policy

WEEK_MS = 7 * 86_400_000


@dataclass(frozen=True, slots=True)
class Proposal:
    """An action that would be emitted, before its guards run."""

    kind: ActionKind
    ts: int
    items: tuple[str, ...]
    seed_items: tuple[str, ...]
    data_dimensions: tuple[str, ...]
    source_event_ids: tuple[str, ...]


# --- item rules: why an item must not be advertised to this user -------------------

ItemRule = Callable[[UserState, Catalog, str], bool]


def past_destination(state: UserState, catalog: Catalog, item_id: str) -> bool:
    return item_id in state.visited


def already_purchased(state: UserState, catalog: Catalog, item_id: str) -> bool:
    return item_id in state.purchased


def one_off_owned(state: UserState, catalog: Catalog, item_id: str) -> bool:
    item = catalog.get(item_id)
    return item is not None and item.one_off and item.category in state.owned_one_off


def ruled_out(state: UserState, catalog: Catalog, item_id: str) -> bool:
    return item_id in state.ruled_out


def unavailable(state: UserState, catalog: Catalog, item_id: str) -> bool:
    item = catalog.get(item_id)
    return item is None or not item.available


# browse / "buy it again" ad: always suppressed; the most specific reason wins,
# and "product_ad" itself when none of these applies.
PRODUCT_AD_REASONS: list[tuple[str, ItemRule]] = [
    ("past_destination", past_destination),
    ("already_purchased", already_purchased),
    ("one_off_owned", one_off_owned),
    ("ruled_out", ruled_out),
]

# similar-item candidates are dropped for the first of these (after "seed": the seed itself).
CANDIDATE_EXCLUSIONS: list[tuple[str, ItemRule]] = [
    ("already_purchased", already_purchased),
    ("past_destination", past_destination),
    ("one_off_owned", one_off_owned),
    ("ruled_out", ruled_out),
    ("unavailable", unavailable),
]

# basket-recovery items are dropped for the first of these: no action may offer an item
# bought (since it was added, or before), a trip taken, a second one-off of a kind now
# owned, or an item reviewed badly while it sat in the basket.
BASKET_EXCLUSIONS: list[tuple[str, ItemRule]] = [
    ("already_purchased", already_purchased),
    ("past_destination", past_destination),
    ("one_off_owned", one_off_owned),
    ("ruled_out", ruled_out),
]


def first_reason(
    rules: list[tuple[str, ItemRule]], state: UserState, catalog: Catalog, item_id: str
) -> str | None:
    for reason, applies in rules:
        if applies(state, catalog, item_id):
            return reason
    return None


# --- guards: why a proposed action must not be sent now ---------------------------

Guard = Callable[[UserState, Proposal, Policy], bool]


def no_consent(state: UserState, proposal: Proposal, policy: Policy) -> bool:
    if proposal.kind == "basket_recovery":
        given = state.consent_basket
        return not (policy.default_consent.basket_recovery if given is None else given)
    given = state.consent_similar
    return not (policy.default_consent.similar_item if given is None else given)


def prospect(state: UserState, proposal: Proposal, policy: Policy) -> bool:
    return not state.customer and not state.opted_in_similar


def no_candidates(state: UserState, proposal: Proposal, policy: Policy) -> bool:
    return not proposal.items


def frequency_cap(state: UserState, proposal: Proposal, policy: Policy) -> bool:
    """Over the policy's cap (in a rolling `per`) or the user's own (in a rolling week),
    whichever is lower. A similar item may not take the last `reserve_for_basket` slots
    of the lower one, the effective cap (a basket recovery may), and the reserve never
    exceeds that cap minus one, so a user whose cap is 1 can still get a similar item."""
    cap = policy.frequency_cap
    own = state.max_per_week  # a user's own cap can only lower the policy's
    effective = cap.max_actions if own is None else min(cap.max_actions, own)
    reserve = 0
    if proposal.kind == "similar_item":
        reserve = max(0, min(cap.reserve_for_basket, effective - 1))
    if _sent_since(state, proposal.ts - cap.per) >= cap.max_actions - reserve:
        return True
    return own is not None and _sent_since(state, proposal.ts - WEEK_MS) >= own - reserve


def duplicate(state: UserState, proposal: Proposal, policy: Policy) -> bool:
    items = tuple(sorted(proposal.items))
    since = proposal.ts - policy.dedupe_window
    return any(s.kind == proposal.kind and s.items == items and s.ts > since for s in state.sent)


def too_personal(state: UserState, proposal: Proposal, policy: Policy) -> bool:
    return len(proposal.data_dimensions) > policy.max_data_dimensions


def basket_converted(state: UserState, proposal: Proposal, policy: Policy) -> bool:
    return not proposal.items and state.basket is not None and state.basket.bought_any


def basket_emptied(state: UserState, proposal: Proposal, policy: Policy) -> bool:
    return not proposal.items


def already_reminded(state: UserState, proposal: Proposal, policy: Policy) -> bool:
    reminders = state.basket.reminders if state.basket else 0
    return reminders >= policy.max_basket_reminders


# A similar item whose seeds all had to go (max_data_dimensions 0) is too personal as a
# whole, once consent and the prospect rule are through (SPEC section 4).
SEEDLESS_SIMILAR_ITEM_GUARDS: list[tuple[str, Guard]] = [
    ("no_consent", no_consent),
    ("prospect", prospect),
    ("too_personal", too_personal),
]

SIMILAR_ITEM_GUARDS: list[tuple[str, Guard]] = [
    ("no_consent", no_consent),
    ("prospect", prospect),
    ("no_candidates", no_candidates),
    ("frequency_cap", frequency_cap),
    ("duplicate", duplicate),
    ("too_personal", too_personal),
]

BASKET_RECOVERY_GUARDS: list[tuple[str, Guard]] = [
    ("basket_converted", basket_converted),
    ("basket_emptied", basket_emptied),
    ("no_consent", no_consent),
    ("already_reminded", already_reminded),
    ("frequency_cap", frequency_cap),
    ("too_personal", too_personal),
]

GUARDS: dict[ActionKind, list[tuple[str, Guard]]] = {
    "similar_item": SIMILAR_ITEM_GUARDS,
    "basket_recovery": BASKET_RECOVERY_GUARDS,
}


def first_failed_guard(
    state: UserState,
    proposal: Proposal,
    policy: Policy,
    guards: list[tuple[str, Guard]] | None = None,
) -> str | None:
    for reason, fails in GUARDS[proposal.kind] if guards is None else guards:
        if fails(state, proposal, policy):
            return reason
    return None


def _sent_since(state: UserState, since: int) -> int:
    return sum(1 for s in state.sent if s.ts > since)
