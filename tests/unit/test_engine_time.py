"""Event time (SPEC section 5): the reorder buffer, grace, late events, deadlines,
the end of input, `until`, and the due index that keeps firing from scanning users.

Default policy: grace 5 min, abandon_after 1 h. Times are minutes after BASE.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from suppressor.core.codec import state_to_bytes
from suppressor.core.engine import Engine
from suppressor.core.model import UserState
from suppressor.core.policy import Policy
from suppressor.core.processor import DictStore, Processor
from tests.unit.conftest import (
    MINUTE,
    MS,
    add,
    at,
    browse,
    consent,
    forget,
    policy,
    purchase,
    remove,
    review,
    run,
    shop,
    start,
)


def summary(decisions: Iterable) -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    return [(d.user_id, d.trigger, d.reason, d.items) for d in decisions]


# --- the reorder buffer ---------------------------------------------------------------------


def test_events_are_held_until_stream_time_passes_them_by_grace() -> None:
    result = start().feed(browse("bin-1", ts=0))
    assert result.decisions == []
    assert [e.item_id for e in result.state().pending] == ["bin-1"]
    result.feed(browse("rom", user="u2", ts=4.99))
    assert result.decided(user="u1") == []
    result.feed(browse("rom", user="u2", ts=5))  # watermark reaches 0: not yet passed it
    assert result.decided(user="u1") == []
    result.feed(browse("rom", user="u2", ts=5 + MS))  # watermark passes 0
    assert [d.trigger for d in result.decided(user="u1")] == ["browse_nudge", "product_ad"]
    assert result.state().pending == []


def test_events_read_out_of_order_within_grace_are_applied_in_time_order() -> None:
    in_order = run(add("bin-1", ts=0, eid="a"), purchase("bin-1", ts=3, eid="b"), until=500)
    reversed_ = run(purchase("bin-1", ts=3, eid="b"), add("bin-1", ts=0, eid="a"), until=500)
    assert reversed_.late_events == 0
    assert reversed_.decisions == in_order.decisions
    assert reversed_.reasons("basket_recovery") == ["basket_converted"]
    assert reversed_.actions == in_order.actions


def test_events_with_the_same_ts_are_applied_in_event_id_order() -> None:
    forwards = run(add("bin-1", ts=1, eid="e1"), remove("bin-1", ts=1, eid="e2"), until=500)
    backwards = run(remove("bin-1", ts=1, eid="e2"), add("bin-1", ts=1, eid="e1"), until=500)
    assert forwards.reasons("basket_recovery") == ["basket_emptied"]
    assert backwards.decisions == forwards.decisions
    # e1 < e2: the add comes first, so the remove empties the basket; reversed ids keep it
    kept = run(add("bin-1", ts=1, eid="e2"), remove("bin-1", ts=1, eid="e1"), until=500)
    assert kept.reasons("basket_recovery") == [None]


def test_a_purchase_read_before_the_cart_add_that_preceded_it() -> None:
    """SPEC 5: the purchase topic may be read ahead of the cart topic."""
    result = run(
        purchase("bin-1", ts=2, eid="p"),
        browse("rom", user="u2", ts=4),
        add("bin-1", ts=1, eid="a"),
        until=500,
    )
    assert result.late_events == 0
    assert result.reasons("basket_recovery") == ["basket_converted"]


def test_an_event_exactly_grace_behind_stream_time_is_not_late() -> None:
    result = start().feed(browse("rom", user="u2", ts=10), browse("bin-1", ts=5))
    assert result.late_events == 0


# --- late events ------------------------------------------------------------------------------


def test_a_late_event_updates_state_and_is_counted() -> None:
    result = start().feed(browse("rom", user="u2", ts=100), purchase("bin-1", ts=90))
    assert result.late_events == 1
    assert result.state().customer
    assert result.reasons("similar_item") == [None]
    assert result.decided("similar_item")[0].ts == at(90)


def test_a_late_event_cannot_retract_an_action_already_emitted() -> None:
    result = start().feed(add("bin-1", ts=0), browse("rom", user="u2", ts=70))
    [reminder] = result.actions
    assert reminder.kind == "basket_recovery"
    result.feed(purchase("bin-1", ts=30))  # bought before the deadline, but read too late
    assert result.late_events == 1
    assert result.actions[0] == reminder
    assert [a.kind for a in result.actions] == ["basket_recovery", "similar_item"]
    assert "basket_converted" not in result.reasons("basket_recovery")
    assert "bin-1" in result.state().purchased


def test_a_late_event_is_applied_after_the_events_already_applied() -> None:
    result = start().feed(browse("bin-1", ts=50), browse("rom", user="u2", ts=100))
    result.feed(browse("bin-1", ts=49))  # late: in the same session as the one at 50
    assert result.late_events == 1
    assert len(result.decided("browse_nudge", user="u1")) == 1


def test_a_late_forget_still_erases() -> None:
    result = start().feed(purchase("bin-1", ts=0), browse("rom", user="u2", ts=100))
    result.feed(forget(ts=1))
    assert result.late_events == 1
    assert result.state() is None
    assert "u1" in result.erased


# --- deadlines ----------------------------------------------------------------------------------


def test_events_up_to_the_deadline_are_applied_before_it_fires() -> None:
    # deadline at 60; the purchase exactly at the deadline is read after stream time passed it
    result = run(
        add("bin-1", ts=0),
        browse("rom", user="u2", ts=62),
        purchase("bin-1", ts=60),
        browse("rom", user="u2", ts=70),
    )
    assert result.reasons("basket_recovery") == ["basket_converted"]
    assert [a.kind for a in result.actions] == ["similar_item"]


def test_events_after_the_deadline_are_applied_after_it_fires() -> None:
    result = run(
        add("bin-1", ts=0),
        browse("rom", user="u2", ts=62),
        purchase("bin-1", ts=61),  # one minute after the deadline: too late to convert
        browse("rom", user="u2", ts=70),
    )
    assert result.reasons("basket_recovery") == [None]
    assert [a.kind for a in result.actions] == ["basket_recovery", "similar_item"]


def test_a_deadline_fires_in_order_with_the_users_own_events() -> None:
    """Reminder at 60 fires before the add at 64 re-arms the basket."""
    result = run(add("bin-1", ts=0), add("lamp-1", ts=64), browse("rom", user="u2", ts=200))
    [action] = result.actions
    assert action.items == ("bin-1",)
    assert action.ts == at(60)
    second = result.decided("basket_recovery")[1]  # re-armed to 124: one reminder per episode
    assert (second.ts, second.reason, second.items) == (
        at(124),
        "already_reminded",
        ("bin-1", "lamp-1"),
    )


def test_a_later_add_postpones_the_deadline() -> None:
    result = start().feed(add("bin-1", ts=0), add("lamp-1", ts=30), browse("x", user="u2", ts=66))
    assert result.actions == []
    result.feed(browse("x", user="u2", ts=95 + MS))
    assert [a.ts for a in result.actions] == [at(90)]


def test_tick_fires_a_deadline_once_stream_time_passes_deadline_plus_grace() -> None:
    engine = Engine(Policy(), shop())
    state = engine.decide(None, add("bin-1", ts=0), stream_time=at(0)).state
    assert state is not None
    assert engine.due(state) == at(5) + 1  # the held add, once the watermark passes it
    state = engine.tick(state, at(5) + 1).state
    assert state is not None and state.pending == []
    assert engine.due(state) == at(65) + 1
    assert engine.tick(state, at(65)).actions == []
    step = engine.tick(state, at(65) + 1)
    assert [a.ts for a in step.actions] == [at(60)]
    assert step.state is not None and step.state.basket is not None
    assert step.state.basket.deadline is None
    window_end = at(60) + engine.policy.attribution_window
    assert engine.due(step.state) == window_end + engine.policy.grace + 1  # attribution only


def test_the_pure_api_does_not_change_the_state_it_is_given() -> None:
    engine = Engine(Policy(), shop())
    state = engine.decide(None, add("bin-1", ts=0), stream_time=at(10)).state
    assert state is not None
    before = state_to_bytes(state)
    engine.decide(state, purchase("bin-1", ts=11), stream_time=at(100))
    engine.tick(state, at(1000))
    engine.flush(state)
    assert state_to_bytes(state) == before


# --- end of input and until -----------------------------------------------------------------


def test_flush_applies_every_held_event_at_the_end_of_input() -> None:
    result = start().feed(browse("bin-1", ts=0), review("shoes-1", 1, ts=1))
    assert result.decisions == []
    result.flush()
    assert [d.trigger for d in result.decisions] == ["browse_nudge", "product_ad"]
    assert set(result.state().ruled_out) == {"shoes-1"}
    assert result.state().pending == []


def test_flush_does_not_fire_a_deadline_stream_time_has_not_passed() -> None:
    result = run(add("bin-1", ts=0))
    assert result.decided("basket_recovery") == []
    assert result.state().basket.deadline == at(60)


def test_flush_fires_a_deadline_that_comes_before_a_held_event() -> None:
    """The held browse at 62 must be applied after the reminder due at 60."""
    result = run(add("bin-1", ts=0), browse("bin-1", ts=62))
    assert [a.ts for a in result.actions] == [at(60)]


def test_engine_flush_in_the_pure_api() -> None:
    engine = Engine(Policy(), shop())
    state = engine.decide(None, browse("bin-1", ts=0), stream_time=at(0)).state
    assert state is not None
    step = engine.flush(state)
    assert [d.trigger for d in step.decisions] == ["browse_nudge", "product_ad"]
    assert step.state is not None and step.state.pending == []


def test_until_advances_stream_time_so_that_due_deadlines_fire() -> None:
    assert run(add("bin-1", ts=0), until=65).actions == []  # reaches, does not pass
    assert [a.ts for a in run(add("bin-1", ts=0), until=65 + MS).actions] == [at(60)]


def test_until_fires_every_users_deadline_in_time_order() -> None:
    result = run(add("bin-1", user="b", ts=10), add("bin-1", user="a", ts=0), until=1000)
    assert [(a.user_id, a.ts) for a in result.actions] == [("a", at(60)), ("b", at(70))]


def test_grace_zero_applies_events_as_soon_as_stream_time_passes_them() -> None:
    result = start(policy(grace="0s")).feed(browse("bin-1", ts=0))
    assert result.decisions == []  # another event at the same ts may still come
    result.feed(browse("bin-1", user="u2", ts=MS))
    assert [d.trigger for d in result.decided(user="u1")] == ["browse_nudge", "product_ad"]
    result.feed(add("bin-1", user="u3", ts=61), browse("x", user="u4", ts=121 + MS))
    assert [a.user_id for a in result.actions] == ["u3"]


# --- the due index ------------------------------------------------------------------------------


class CountingStore(DictStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def get(self, user_id: str) -> UserState | None:
        self.reads.append(user_id)
        return super().get(user_id)


def idle_users(n: int) -> Iterator:
    for i in range(n):
        yield consent(user=f"idle-{i:04d}", ts=0, similar_item=True)


def test_advancing_time_touches_only_users_with_something_due() -> None:
    store = CountingStore()
    processor = Processor(Engine(Policy(), shop()), store)
    for ev in idle_users(500):
        processor.on_event(ev, at(0))
    processor.on_event(add("bin-1", user="shopper", ts=1), at(1))
    processor.advance_to(at(10))  # every held event is applied
    assert len(processor.index) == 1  # only the open basket is indexed
    store.reads.clear()
    out = processor.advance_to(at(65))
    assert out.actions == []
    assert store.reads == []  # nothing due yet: not one state read
    out = processor.advance_to(at(66) + 1)
    assert [a.user_id for a in out.actions] == ["shopper"]
    assert store.reads == ["shopper"]
    assert processor.index.users() == ["shopper"]  # its attribution window, nothing else


def test_the_index_holds_users_with_held_events_or_open_deadlines() -> None:
    result = start().feed(browse("bin-1", user="a", ts=0), add("bin-1", user="b", ts=0))
    assert result.processor.index.users() == ["a", "b"]
    result.feed(browse("x", user="c", ts=10))
    assert result.processor.index.users() == ["b", "c"]  # a: nothing left to do
    result.flush()
    assert result.processor.index.users() == ["b"]


def test_the_index_is_rebuilt_from_the_store_after_a_restart() -> None:
    first = start().feed(add("bin-1", user="a", ts=0), browse("x", user="b", ts=0))
    restarted = Processor(first.processor.engine, first.processor.store)
    assert restarted.rebuild_index() == 2
    out = restarted.advance_to(at(65) + 1)
    assert [a.user_id for a in out.actions] == ["a"]
    assert ("a", "basket_recovery", None, ("bin-1",)) in summary(out.decisions)


def test_forget_removes_a_user_from_the_index() -> None:
    result = start().feed(add("bin-1", ts=0), forget(ts=1), browse("x", user="u2", ts=10))
    assert "u1" not in result.processor.index.users()
    assert result.state() is None
    result.advance(10_000)
    assert result.actions == []


def test_a_deadline_rearmed_later_replaces_the_earlier_index_entry() -> None:
    result = start().feed(add("bin-1", ts=0), add("lamp-1", ts=30), browse("x", user="u2", ts=36))
    assert result.processor.index.users() == ["u1", "u2"]
    result.advance(65)  # the first deadline (60) no longer exists
    assert result.actions == []
    result.advance(95 + MS)
    assert [a.ts for a in result.actions] == [at(90)]


def test_consent_withdrawn_while_a_reminder_waits_in_the_index() -> None:
    result = start().feed(add("bin-1", ts=0), consent(basket_recovery=False, ts=30))
    result.advance(10_000)
    assert result.reasons("basket_recovery") == ["no_consent"]
    assert result.actions == []
    assert MINUTE == 60_000


# --- the boundary: an event exactly `grace` behind stream time ----------------------------------
#
# The spec fires a deadline at stream time >= deadline + grace (section 4) and calls an event
# late only when it is *older* than stream time - grace (section 5). An event exactly at the
# watermark is therefore neither late nor guaranteed to be applied before what the watermark
# already released. The engine therefore applies events and fires deadlines only once the
# watermark has *passed* them (strictly), which closes that gap; these tests keep it closed.


def test_a_shuffle_by_exactly_grace_gives_the_same_decisions() -> None:
    in_order = run(
        add("bin-1", ts=0, eid="a1"),
        purchase("bin-1", ts=60, eid="a2"),
        browse("x", user="b", ts=65, eid="b1"),
    )
    moved = run(
        add("bin-1", ts=0, eid="a1"),
        browse("x", user="b", ts=65, eid="b1"),
        purchase("bin-1", ts=60, eid="a2"),  # moved by exactly grace: not late
    )
    assert moved.late_events == 0
    assert moved.reasons("basket_recovery") == in_order.reasons("basket_recovery")


def test_with_grace_zero_other_users_events_at_the_same_ts_do_not_matter() -> None:
    zero = policy(grace="0s")
    a, purchase_a = add("bin-1", ts=0, eid="a1"), purchase("bin-1", ts=60, eid="a2")
    other = browse("x", user="b", ts=60, eid="b1")
    first = run(a, purchase_a, other, policy_=zero)
    second = run(a, other, purchase_a, policy_=zero)
    assert first.reasons("basket_recovery") == second.reasons("basket_recovery")


def test_a_late_add_gives_the_same_basket_action_as_one_read_in_time() -> None:
    """Lateness depends on arrival; the reminder (and its id) must not."""
    in_time = run(add("lamp-1", ts=0, eid="x1"), add("bin-1", ts=30, eid="x2"), until=500)
    late = run(
        add("bin-1", ts=30, eid="x2"),
        browse("rom", user="other", ts=40),  # moves stream time: the next add is late
        add("lamp-1", ts=0, eid="x1"),
        until=500,
    )
    assert late.late_events == 1
    assert [(a.action_id, a.items) for a in late.actions] == [
        (a.action_id, a.items) for a in in_time.actions
    ]


def test_the_processor_counts_users_and_armed_baskets_exactly() -> None:
    result = start().feed(
        add("bin-1", user="a", ts=0),
        add("bin-1", user="b", ts=1),
        browse("x", user="c", ts=2),
        purchase("bin-1", user="b", ts=3),  # b's basket converts: no reminder armed
        forget(user="c", ts=4),
        browse("x", user="d", ts=20),
    )
    processor = result.processor
    assert (processor.users, processor.open_baskets) == (3, 1)  # a, b, d; a's basket
    restarted = Processor(processor.engine, processor.store)
    restarted.rebuild_index()
    assert (restarted.users, restarted.open_baskets) == (3, 1)
    result.advance(200)  # a's reminder fires: no longer armed
    assert (processor.users, processor.open_baskets) == (3, 0)
