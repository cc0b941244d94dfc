"""`suppressor explain USER_ID --events FILE`: one person's state and decisions from replay.

The whole file goes through `replay` (the same code as `suppressor replay`): stream time
is the largest ts of *everyone's* events, as there, so this person's deadlines fire, and
their late events are late, exactly as in a replay of the file. Only their decisions,
events and final state are kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from suppressor.core.catalog import Catalog
from suppressor.core.engine import Outcome
from suppressor.core.explain import Explanation, History, explain_decision, explain_state
from suppressor.core.model import Decision, Event
from suppressor.core.policy import Policy
from suppressor.core.processor import DictStore
from suppressor.core.replay.run import replay
from suppressor.wire.outputs import DeadLetter, SourcePosition
from suppressor.wire.timefmt import format_ms


@dataclass
class _PersonSink:
    """Keeps one person's decisions, and the stream time reached."""

    user_id: str
    decisions: list[Decision] = field(default_factory=list)

    def write(self, out: Outcome, policy_version: str) -> None:
        self.decisions += [d for d in out.decisions if d.user_id == self.user_id]

    def dead_letter(self, dead: DeadLetter) -> None:
        pass


def explain_from_replay(
    user_id: str,
    lines: Iterable[tuple[int | SourcePosition, bytes]],
    policy: Policy,
    catalog: Catalog,
    *,
    source_name: str = "-",
    until: int | None = None,
    now_ms: int | None = None,
) -> Explanation:
    """`explain_state` of the person's state at the end of the replay, with `decisions`
    (every one about them, in words) and the `stream_time` reached."""
    sink = _PersonSink(user_id)
    store = DictStore()
    events: list[Event] = []
    latest: list[int] = []

    def keep(event: Event) -> None:
        if not latest or event.ts > latest[0]:
            latest[:] = [event.ts]
        if event.user_id == user_id:
            events.append(event)

    replay(
        lines,
        policy,
        catalog,
        sink,
        source_name=source_name,
        until=until,
        now_ms=now_ms,
        store=store,
        on_event=keep,
    )
    history = History(events, sink.decisions, catalog, policy)
    reached = max([*latest, *([] if until is None else [until])], default=None)
    return {
        **explain_state(user_id, store.get(user_id), policy),
        "stream_time": None if reached is None else format_ms(reached),
        "decisions": [explain_decision(decision, history) for decision in sink.decisions],
    }
