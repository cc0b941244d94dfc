"""One user's timeline: events in (ts, event_id) order, basket deadlines between them.

`Engine.decide`, `Engine.tick` and `Engine.flush` are pure: they take a state
and return a new one with the decisions and actions as values. The `*_in_place`
variants do the same work on a state the caller owns (the processor), without
the copy.

Order: the watermark is stream time - grace. An event is applied once the
watermark has passed its ts (ts < watermark); a basket deadline fires once the
watermark has passed it, after every event with ts <= deadline. An event that
arrives with ts < watermark is late: it is applied at once (it updates state)
but cannot retract what was emitted. "Passed" is strict on both sides, so
nothing applied can ever be out of (ts, event_id) order with an event that is
not late.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice

from suppressor.core import rules
from suppressor.core.catalog import Catalog
from suppressor.core.holdout import HoldoutSplit
from suppressor.core.model import (
    EVENT_FRAMING,
    Action,
    Basket,
    Conversion,
    Decision,
    Event,
    Ids,
    PendingSimilar,
    RuledOutWhy,
    Seed,
    Sent,
    Trigger,
    UserState,
    Watch,
    held_size,
    stable_id,
    with_added,
    without,
)
from suppressor.core.policy import Policy, StateLimits
from suppressor.core.rules import Proposal
from suppressor.wire.events import MAX_EVENT_BYTES


@dataclass(frozen=True, slots=True)
class Failure:
    """A user's step that raised (see `Processor`): nothing of it was applied or output.
    `event` is the event being applied, None when a deadline was being fired. `code` is
    the dead-letter code: "state_too_large" or "internal_error"."""

    user_id: str
    event: Event | None
    code: str
    error: Exception


@dataclass(slots=True)
class Outcome:
    decisions: list[Decision] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    late_events: int = 0
    erased: set[str] = field(default_factory=set)  # users whose state a forget wiped
    conversions: list[Conversion] = field(default_factory=list)  # attribution windows closed
    failures: list[Failure] = field(default_factory=list)

    def merge(self, other: Outcome) -> None:
        self.decisions += other.decisions
        self.actions += other.actions
        self.late_events += other.late_events
        self.erased |= other.erased
        self.conversions += other.conversions
        self.failures += other.failures


@dataclass(frozen=True, slots=True)
class Decided:
    """What the pure API returns: the new state (None when nothing is left to keep, after a
    `forget`) and the outcome of getting there."""

    state: UserState | None
    outcome: Outcome

    @property
    def decisions(self) -> list[Decision]:
        return self.outcome.decisions

    @property
    def actions(self) -> list[Action]:
        return self.outcome.actions

    @property
    def late(self) -> bool:
        return self.outcome.late_events > 0


class Engine:
    def __init__(self, policy: Policy, catalog: Catalog) -> None:
        self.policy = policy
        self.catalog = catalog
        self.policy_version = policy.version
        self.holdout = HoldoutSplit(policy.holdout_percent, policy.holdout_salt)

    # --- the pure API ------------------------------------------------------------

    def decide(self, state: UserState | None, event: Event, stream_time: int) -> Decided:
        out = Outcome()
        fresh = UserState(user_id=event.user_id) if state is None else state.copy()
        new = self.ingest_in_place(fresh, event, stream_time, out)
        return Decided(new, out)

    def tick(self, state: UserState, stream_time: int) -> Decided:
        out = Outcome()
        new = self.advance_in_place(state.copy(), stream_time - self.policy.grace, out)
        return Decided(new, out)

    def flush(self, state: UserState) -> Decided:
        out = Outcome()
        new = self.flush_in_place(state.copy(), out)
        return Decided(new, out)

    def due(self, state: UserState | None) -> int | None:
        """The stream time at which `tick` has work to do for this state, if any."""
        if state is None:
            return None
        earliest = _next_timer(state)
        if state.pending:
            head = state.pending[0].ts
            if earliest is None or head < earliest:
                earliest = head
        return None if earliest is None else earliest + self.policy.grace + 1

    # --- in place, on a state the caller owns --------------------------------------

    def ingest_in_place(
        self, state: UserState, event: Event, stream_time: int, out: Outcome
    ) -> UserState | None:
        watermark = stream_time - self.policy.grace
        if event.ts < watermark:
            out.late_events += 1
            current = self.advance_in_place(state, watermark, out)
            current = current or UserState(user_id=event.user_id)
            current, applied = self._apply_guarded(current, event, out)
            if applied and event.type == "forget" and not current.pending:
                return None
            return self.advance_in_place(current, watermark, out)  # timers it set, if past
        bisect.insort(state.pending, event, key=_order)
        current = self.advance_in_place(state, watermark, out)
        return current if current is None else self._bound_held(current, out)

    def _bound_held(self, state: UserState, out: Outcome) -> UserState | None:
        """Held events over `state_limits` (count or bytes): the oldest are applied now, as
        if stream time had passed them, deadlines up to them first. One id shared by many
        people keeps a bounded buffer; a later event older than those is then applied after
        them (its order among that user's events is lost, nothing else)."""
        limits = self.policy.state_limits
        current: UserState | None = state
        while current is not None and _over(current.pending, limits):
            current = self.advance_in_place(current, current.pending[0].ts + 1, out)
        return current

    def advance_in_place(self, state: UserState, watermark: int, out: Outcome) -> UserState | None:
        """Apply every event and fire every deadline the watermark has passed, in time order.

        Returns None when nothing is left to keep: a forget was the last thing applied
        and no later event is held.
        """
        blank = False
        pending = state.pending
        while True:
            timer = _next_timer(state)
            if pending and pending[0].ts < watermark and (timer is None or pending[0].ts <= timer):
                head = pending.pop(0)
                state, applied = self._apply_guarded(state, head, out)
                blank = head.type == "forget" if applied else blank
            elif timer is not None and timer < watermark:
                self._fire_timer_guarded(state, timer, out)
            else:
                return None if blank and not pending else state

    def _apply_guarded(
        self, state: UserState, event: Event, out: Outcome
    ) -> tuple[UserState, bool]:
        """`_apply` on a copy: should it raise (a bug), the event is left out, reported in
        `out.failures` for the shell to dead-letter, and the state stays as it was, so one
        bad event can never wedge a user (held, it would fail again at every later one).
        True with the new state when it was applied."""
        trial = state.copy()
        trial.pending = state.pending  # the caller's buffer: the event is already off it
        step = Outcome()
        try:
            new = self._apply(trial, event, step)
        except Exception as error:
            out.failures.append(Failure(state.user_id, event, "internal_error", error))
            return state, False
        out.merge(step)
        return new, True

    def _fire_timer_guarded(self, state: UserState, at: int, out: Outcome) -> None:
        """`_fire_timer`, and should it raise (a bug), the timer is dropped (a basket keeps
        its items but its reminder is not sent; an attribution window writes no record)."""
        trial = state.copy()
        trial.pending = state.pending  # untouched by timers: the caller's list stays its own
        step = Outcome()
        try:
            self._fire_timer(trial, at, step)
        except Exception as error:
            out.failures.append(Failure(state.user_id, None, "internal_error", error))
            if state.basket is not None and state.basket.deadline == at:
                state.basket = _rearm(state.basket, None)
            elif state.similar is not None and state.similar.due == at:
                state.similar = None
            else:
                state.watching = state.watching[1:]
            return
        for name in UserState.__slots__:
            setattr(state, name, getattr(trial, name))
        out.merge(step)

    def flush_in_place(self, state: UserState, out: Outcome) -> UserState | None:
        """End of input: apply every held event (no later data can come)."""
        if not state.pending:
            return state
        return self.advance_in_place(state, state.pending[-1].ts + 1, out)

    # --- events ----------------------------------------------------------------------

    def _apply(self, state: UserState, event: Event, out: Outcome) -> UserState:
        if event.type == "forget":
            out.erased.add(state.user_id)
            return UserState(user_id=state.user_id, pending=state.pending)
        handler = _HANDLERS[event.type]
        handler(self, state, event, out)
        return state

    def _browse(self, state: UserState, event: Event, out: Outcome) -> None:
        item = event.item_id or ""
        if state.last_browse is None or event.ts - state.last_browse > self.policy.session_gap:
            self._suppress(state, out, "browse_nudge", "browse_nudge", event, (item,))
        state.last_browse = max(event.ts, state.last_browse or event.ts)
        self._product_ad(state, out, event, item)

    def _cart(self, state: UserState, event: Event, out: Outcome) -> None:
        item = event.item_id or ""
        limits = self.policy.state_limits
        if event.action == "add":
            if item in state.ruled_out:  # the person's latest word wins
                state.ruled_out = without(state.ruled_out, (item,))
                state.ruled_out_why = _why_kept(state.ruled_out_why, state.ruled_out)
            basket = _add_to_basket(state.basket or Basket(), item, event.event_id)
            armed = event.ts + self.policy.abandon_after
            state.basket = _rearm(_bound_basket(basket, limits.basket_items), armed)
            return
        _rule_out(state, item, "removed_from_basket", limits.ruled_out_items)
        if state.basket is not None:
            state.basket = _remove_from_basket(state.basket, {item}, bought=False)
            self._end_episode_if_empty(state, event, out)

    def _purchase(self, state: UserState, event: Event, out: Outcome) -> None:
        bought = dict.fromkeys(event.items)
        if state.watching:
            state.watching = _attribute(state.watching, bought.keys(), event.ts)
        state.customer = True
        limits = self.policy.state_limits
        state.purchased = with_added(state.purchased, bought, limits.purchased_items)
        items = [item for item in map(self.catalog.get, bought) if item is not None]
        trips = [item.item_id for item in items if item.kind == "destination"]
        if trips:
            state.visited = with_added(state.visited, trips, limits.visited_destinations)
        kinds = [item.category for item in items if item.one_off]
        if kinds:
            state.owned_one_off = with_added(
                state.owned_one_off, kinds, limits.owned_one_off_categories
            )
        if state.basket is not None:
            state.basket = _remove_from_basket(state.basket, set(bought), bought=True)
            self._end_episode_if_empty(state, event, out)
        for item_id in bought:
            self._product_ad(state, out, event, item_id)
        seeds = []
        for item_id in bought:
            item = self.catalog.get(item_id)
            travel = item is not None and item.kind == "destination"
            seeds.append(Seed(item_id, "travel_history" if travel else "purchase_history"))
        self._add_seeds(state, event, seeds)

    def _review(self, state: UserState, event: Event, out: Outcome) -> None:
        item, rating = event.item_id or "", event.rating or 3
        reviewed = self.catalog.get(item)
        limits = self.policy.state_limits
        if reviewed is not None and reviewed.kind == "destination":
            # a trip reviewed is a trip taken
            state.visited = with_added(state.visited, (item,), limits.visited_destinations)
        if rating >= 4:
            self._add_seeds(state, event, [Seed(item, "reviews")])
        elif rating <= 2:
            _rule_out(state, item, "reviewed_badly", limits.ruled_out_items)

    def _consent(self, state: UserState, event: Event, out: Outcome) -> None:
        if event.basket_recovery is not None:
            state.consent_basket = event.basket_recovery
        if event.similar_item is not None:
            state.consent_similar = event.similar_item
            state.opted_in_similar = state.opted_in_similar or event.similar_item
        if event.max_actions_per_week is not None:
            state.max_per_week = event.max_actions_per_week

    # --- triggers --------------------------------------------------------------------

    def _product_ad(self, state: UserState, out: Outcome, event: Event, item: str) -> None:
        reason = None
        if state.visited or state.purchased or state.owned_one_off or state.ruled_out:
            reason = rules.first_reason(rules.PRODUCT_AD_REASONS, state, self.catalog, item)
        self._suppress(state, out, "product_ad", reason or "product_ad", event, (item,))

    def _add_seeds(self, state: UserState, event: Event, seeds: list[Seed]) -> None:
        """The user's pending similar-item trigger gains `seeds`: created by the first, due
        `similar_after` after its event; an item already among the seeds does not join
        again (its event still counts as a source, up to one source per seed). Beyond
        `state_limits.similar_seeds` the newest are left out: the first seeds already fill
        a message."""
        pending = state.similar or PendingSimilar(event.ts + self.policy.similar_after, (), ())
        known = {seed.item_id for seed in pending.seeds}
        room = self.policy.state_limits.similar_seeds - len(pending.seeds)
        joining: list[Seed] = []
        for seed in seeds:
            if seed.item_id not in known and len(joining) < room:
                known.add(seed.item_id)
                joining.append(seed)
        sources = pending.source_event_ids
        if event.event_id not in sources and len(sources) < len(known) + 1:
            sources = (*sources, event.event_id)
        state.similar = PendingSimilar(pending.due, (*pending.seeds, *joining), sources)

    def _fire_similar(self, state: UserState, due: int, out: Outcome) -> None:
        """The pending similar-item trigger, as of its due time: the seeds of the dimensions
        that joined last go while they would use more than `max_data_dimensions`; the
        seeds' candidates merged round-robin in seed order, exclusions, then the guards."""
        pending = state.similar
        assert pending is not None
        state.similar = None
        kept, dropped = _within_dimensions(pending.seeds, self.policy.max_data_dimensions)
        excluded: dict[str, str] = {seed.item_id: "too_personal" for seed in dropped}
        seeds = {seed.item_id for seed in pending.seeds}
        chosen: list[str] = []
        wanted, budget = self.policy.max_similar_items, self.policy.candidates_examined
        merged = _round_robin([self.catalog.candidates(seed.item_id) for seed in kept])
        for candidate in islice(merged, budget):
            if len(chosen) >= wanted:
                break
            if candidate in excluded or candidate in chosen:
                continue
            reason = "seed" if candidate in seeds else None
            reason = reason or rules.first_reason(
                rules.CANDIDATE_EXCLUSIONS, state, self.catalog, candidate
            )
            if reason:
                excluded[candidate] = reason
            else:
                chosen.append(candidate)
        dimensions = tuple(dict.fromkeys(seed.dimension for seed in kept or pending.seeds))
        proposal = Proposal(
            "similar_item",
            due,
            tuple(chosen),
            tuple(seed.item_id for seed in kept),
            dimensions,
            pending.source_event_ids,
        )
        guards = None if kept else rules.SEEDLESS_SIMILAR_ITEM_GUARDS
        self._decide(state, out, proposal, tuple(excluded.items()), str(due), guards=guards)

    def _fire_timer(self, state: UserState, at: int, out: Outcome) -> None:
        """At the same time a basket deadline comes first, then a similar item falling
        due, then an attribution window closing."""
        if state.basket is not None and state.basket.deadline == at:
            self._fire_basket(state, at, out)
        elif state.similar is not None and state.similar.due == at:
            self._fire_similar(state, at, out)
        else:
            self._close_window(state, out)

    def _close_window(self, state: UserState, out: Outcome) -> None:
        watch, state.watching = state.watching[0], state.watching[1:]
        conversion_id = stable_id(state.user_id, "conversion", watch.action_id)
        out.conversions.append(
            Conversion(
                conversion_id,
                watch.action_id,
                watch.kind,
                state.user_id,
                watch.held_out,
                watch.ts,
                watch.closes,
                watch.converted_at,
            )
        )

    def _fire_basket(self, state: UserState, deadline: int, out: Outcome) -> None:
        basket = state.basket
        assert basket is not None
        # Items and sources in a canonical order (not add order): a late add, applied out of
        # order, must give the same action and the same action_id as an add read in time.
        sources = tuple(sorted(source for _, adds in basket.items for source in adds))
        offered: list[str] = []
        excluded: list[tuple[str, str]] = []
        for item in sorted(basket.item_ids):
            reason = rules.first_reason(rules.BASKET_EXCLUSIONS, state, self.catalog, item)
            if reason is None:
                offered.append(item)
            else:
                excluded.append((item, reason))
        proposal = Proposal("basket_recovery", deadline, tuple(offered), (), ("basket",), sources)
        if self._decide(state, out, proposal, tuple(excluded), discriminator=str(deadline)):
            basket = state.basket = _reminded(basket)
        state.basket = _rearm(basket, None)

    def _end_episode_if_empty(self, state: UserState, event: Event, out: Outcome) -> None:
        basket = state.basket
        if basket is None or basket.items:
            return
        if basket.deadline is not None:  # ended before its reminder: record why none is sent
            proposal = Proposal("basket_recovery", event.ts, (), (), ("basket",), (event.event_id,))
            self._decide(state, out, proposal, (), str(basket.deadline), basket.episode_items)
        state.basket = None

    def _decide(
        self,
        state: UserState,
        out: Outcome,
        proposal: Proposal,
        excluded: tuple[tuple[str, str], ...],
        discriminator: str,
        shown_items: tuple[str, ...] | None = None,
        guards: list[tuple[str, rules.Guard]] | None = None,
    ) -> bool:
        """Run the proposal's guards; record the decision and, if it passes, the action.

        A user in the holdout group gets the decision (reason `holdout`) instead of the
        action, and is otherwise treated exactly alike: caps, dedupe, reminders and an
        attribution window all count the held-out action. True when it passed the guards.
        """
        user = state.user_id
        reason = rules.first_failed_guard(state, proposal, self.policy, guards)
        action_id = None
        if reason is None:
            action_id = stable_id(
                user, proposal.kind, proposal.items, proposal.source_event_ids, discriminator
            )
            held_out = self.holdout.holds_out(user)
            if held_out:
                reason = "holdout"
            else:
                out.actions.append(
                    Action(
                        action_id,
                        proposal.kind,
                        user,
                        proposal.ts,
                        proposal.items,
                        proposal.seed_items,
                        proposal.data_dimensions,
                        proposal.source_event_ids,
                    )
                )
            _remember_sent(state, proposal, self.policy, action_id, held_out)
            self._watch(state, proposal, action_id, held_out)
        items = proposal.items if shown_items is None else shown_items
        decision_id = stable_id(
            user, proposal.kind, items, proposal.source_event_ids, discriminator, proposal.ts
        )
        out.decisions.append(
            Decision(
                decision_id,
                user,
                proposal.ts,
                proposal.kind,
                reason,
                items,
                excluded,
                action_id,
                proposal.source_event_ids,
            )
        )
        return action_id is not None

    def _watch(self, state: UserState, proposal: Proposal, action_id: str, held_out: bool) -> None:
        """Open the action's attribution window. Beyond `state_limits.recent_actions` open
        windows the one closing first is dropped, with no conversion record."""
        closes = proposal.ts + self.policy.attribution_window
        watch = Watch(closes, action_id, proposal.kind, proposal.items, proposal.ts, held_out)
        watching = list(state.watching)
        bisect.insort(watching, watch, key=_watch_order)
        state.watching = tuple(watching[-self.policy.state_limits.recent_actions :])

    def _suppress(
        self,
        state: UserState,
        out: Outcome,
        trigger: Trigger,
        reason: str,
        event: Event,
        items: tuple[str, ...],
    ) -> None:
        decision_id = stable_id(event.user_id, trigger, items, event.event_id)
        out.decisions.append(
            Decision(
                decision_id,
                event.user_id,
                event.ts,
                trigger,
                reason,
                items,
                (),
                None,
                (event.event_id,),
            )
        )


_HANDLERS = {
    "browse": Engine._browse,
    "cart": Engine._cart,
    "purchase": Engine._purchase,
    "review": Engine._review,
    "consent": Engine._consent,
}


LARGEST_HELD_EVENT = MAX_EVENT_BYTES + EVENT_FRAMING
"""The largest `held_size` of an admitted event (see `_over`)."""

ADDS_KEPT_PER_LINE = 20
"""Add events remembered per basket line (they are the basket action's sources)."""


def _order(event: Event) -> tuple[int, str]:
    return (event.ts, event.event_id)


def _watch_order(watch: Watch) -> tuple[int, str]:
    return (watch.closes, watch.action_id)


def _next_timer(state: UserState) -> int | None:
    """The earliest basket deadline, similar-item due time or attribution window end."""
    basket = state.basket
    times = [basket.deadline] if basket is not None and basket.deadline is not None else []
    if state.similar is not None:
        times.append(state.similar.due)
    if state.watching:
        times.append(state.watching[0].closes)
    return min(times) if times else None


def _within_dimensions(
    seeds: tuple[Seed, ...], most: int
) -> tuple[tuple[Seed, ...], tuple[Seed, ...]]:
    """(kept, dropped): the seeds of the first `most` dimensions to join, and the others."""
    dimensions = list(dict.fromkeys(seed.dimension for seed in seeds))[:most]
    kept = tuple(seed for seed in seeds if seed.dimension in dimensions)
    return kept, tuple(seed for seed in seeds if seed.dimension not in dimensions)


def _round_robin(lists: list[Sequence[str]]) -> Iterator[str]:
    """The first item of each list, then the second of each, and so on."""
    for position in range(max(map(len, lists), default=0)):
        for candidates in lists:
            if position < len(candidates):
                yield candidates[position]


def _attribute(watching: tuple[Watch, ...], bought: Iterable[str], ts: int) -> tuple[Watch, ...]:
    """A purchase inside a window converts each open action that offered a bought item."""
    bought = set(bought)
    return tuple(
        watch._replace(converted_at=ts)
        if watch.converted_at is None
        and watch.ts < ts <= watch.closes
        and bought & set(watch.items)
        else watch
        for watch in watching
    )


def _add_to_basket(basket: Basket, item: str, event_id: str) -> Basket:
    items = dict(basket.items)
    items[item] = (*items.get(item, ()), event_id)[-ADDS_KEPT_PER_LINE:]
    episode = (
        basket.episode_items if item in basket.episode_items else (*basket.episode_items, item)
    )
    return replace(basket, items=tuple(items.items()), episode_items=episode)


def _over(pending: list[Event], limits: StateLimits) -> bool:
    """Whether the held events exceed the limits on their number or their encoded size.
    Their sizes are only added up when so many are held that they could be over: an
    admitted event's `held_size` is at most its input record's size plus EVENT_FRAMING."""
    held = len(pending)
    if held > limits.held_events:
        return True
    if held * LARGEST_HELD_EVENT <= limits.held_bytes:
        return False
    return sum(map(held_size, pending)) > limits.held_bytes


def _bound_basket(basket: Basket, limit: int) -> Basket:
    """At most `limit` lines: the line added first leaves (neither bought nor ruled out)."""
    if len(basket.items) <= limit and len(basket.episode_items) <= limit:
        return basket
    return replace(basket, items=basket.items[-limit:], episode_items=basket.episode_items[-limit:])


def _remove_from_basket(basket: Basket, leaving: set[str], bought: bool) -> Basket:
    kept = tuple((item, adds) for item, adds in basket.items if item not in leaving)
    left_now = len(kept) < len(basket.items)
    return replace(basket, items=kept, bought_any=basket.bought_any or (bought and left_now))


def _rearm(basket: Basket, deadline: int | None) -> Basket:
    if deadline is not None and basket.deadline is not None:
        deadline = max(deadline, basket.deadline)
    return replace(basket, deadline=deadline)


def _reminded(basket: Basket) -> Basket:
    return replace(basket, reminders=basket.reminders + 1)


def _remember_sent(
    state: UserState, proposal: Proposal, policy: Policy, action_id: str, held_out: bool
) -> None:
    keep_for = max(policy.frequency_cap.per, rules.WEEK_MS, policy.dedupe_window)
    since = proposal.ts - keep_for
    recent = [sent for sent in state.sent if sent.ts > since]
    items = tuple(sorted(proposal.items))
    recent.append(Sent(proposal.ts, proposal.kind, items, action_id, held_out))
    state.sent = tuple(recent[-policy.state_limits.recent_actions :])


def _rule_out(state: UserState, item: str, why: RuledOutWhy, limit: int) -> None:
    """`item` ruled out, and why (for `explain`); beyond `limit` the oldest leaves both."""
    state.ruled_out = with_added(state.ruled_out, (item,), limit)
    reasons = _why_kept(state.ruled_out_why, state.ruled_out)
    reasons[item] = why
    state.ruled_out_why = reasons


def _why_kept(reasons: Mapping[str, RuledOutWhy], ruled_out: Ids) -> dict[str, RuledOutWhy]:
    """The reasons of the items still ruled out (a new dict: states share their values)."""
    return {item: why for item, why in reasons.items() if item in ruled_out}
