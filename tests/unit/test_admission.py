"""Far-future timestamps are refused before they can move stream time (issue 6)."""

from __future__ import annotations

from suppressor.core.policy import Policy
from suppressor.core.replay.run import CollectingSink, replay
from tests.unit.conftest import HOUR, add, at, browse, jsonl, numbered, shop


def test_an_event_beyond_now_plus_skew_goes_to_the_dlq_and_fires_nothing() -> None:
    lines = numbered(
        jsonl(
            [
                add("bin-1", ts=0, eid="a"),
                browse("bin-1", user="clock-broken", ts=60 * 24 * 365, eid="far"),
                browse("bin-1", user="v", ts=10, eid="b"),
            ]
        )
    )
    sink = CollectingSink()
    tally = replay(lines, Policy(), shop(), sink, now_ms=at(20))
    assert [d.error_code for d in sink.dead_letters] == ["future_timestamp"]
    assert "max_future_skew" in sink.dead_letters[0].error
    assert not [a for out in sink.outputs for a in out.actions]  # the basket did not fire
    assert tally.events["browse"] == 1 and tally.events["cart"] == 1


def test_an_event_within_the_skew_is_admitted() -> None:
    lines = numbered(jsonl([browse("bin-1", ts=50, eid="soon")]))
    sink = CollectingSink()
    replay(lines, Policy(), shop(), sink, now_ms=at(50) - HOUR + 1)
    assert sink.dead_letters == []


def test_a_month_between_two_files_is_not_mistaken_for_a_bad_clock() -> None:
    lines = numbered(jsonl([browse("bin-1", ts=0), browse("bin-1", ts=60 * 24 * 31)]))
    sink = CollectingSink()
    tally = replay(lines, Policy(), shop(), sink)  # reference: the wall clock
    assert sink.dead_letters == [] and tally.events["browse"] == 2
