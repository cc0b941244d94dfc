"""What-if: the same history under two policies, side by side. Nothing is sent."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TextIO

from suppressor.core.catalog import Catalog
from suppressor.core.engine import Outcome
from suppressor.core.policy import Policy
from suppressor.core.replay.run import replay
from suppressor.core.tally import Tally
from suppressor.wire.outputs import DeadLetter, SourcePosition


@dataclass
class ActionsByUser:
    """A sink that keeps only each user's action ids."""

    by_user: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def write(self, out: Outcome, policy_version: str) -> None:
        for action in out.actions:
            self.by_user[action.user_id].add(action.action_id)

    def dead_letter(self, dead: DeadLetter) -> None:
        pass


@dataclass
class Comparison:
    a: Tally
    b: Tally
    differing: dict[str, tuple[list[str], list[str]]]  # user -> (only in A, only in B)


def compare(
    lines: Callable[[], Iterable[tuple[int | SourcePosition, bytes]]],
    policy_a: Policy,
    policy_b: Policy,
    catalog: Catalog,
    *,
    source_name: str,
    until: int | None,
    second: Callable[[], Iterable[tuple[int | SourcePosition, bytes]]] | None = None,
) -> Comparison:
    """The history ``lines()`` under both policies, one after the other: ``lines`` is
    called once per policy (``second``, when given, for policy B), so the input is read
    twice, streaming; only each user's action ids are kept."""
    sink_a, sink_b = ActionsByUser(), ActionsByUser()
    tally_a = replay(lines(), policy_a, catalog, sink_a, source_name=source_name, until=until)
    read_b = lines if second is None else second
    tally_b = replay(read_b(), policy_b, catalog, sink_b, source_name=source_name, until=until)
    differing = {}
    for user in sorted(sink_a.by_user.keys() | sink_b.by_user.keys()):
        only_a = sink_a.by_user.get(user, set()) - sink_b.by_user.get(user, set())
        only_b = sink_b.by_user.get(user, set()) - sink_a.by_user.get(user, set())
        if only_a or only_b:
            differing[user] = (sorted(only_a), sorted(only_b))
    return Comparison(tally_a, tally_b, differing)


def table_rows(comparison: Comparison) -> list[tuple[str, str, int, int]]:
    """(trigger, outcome or reason, count under A, count under B) for every row seen."""
    rows: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for column, tally in enumerate((comparison.a, comparison.b)):
        for trigger, n in tally.emitted.items():
            rows[trigger, "emitted"][column] += n
        for (trigger, reason), n in tally.suppressed.items():
            rows[trigger, f"suppressed: {reason}"][column] += n
        for reason, n in tally.exclusions.items():
            rows["(candidate items)", f"excluded: {reason}"][column] += n
        for (kind, group, converted), n in tally.conversions.items():
            outcome = "converted" if converted else "not converted"
            rows[f"{kind} ({group})", f"window closed: {outcome}"][column] += n
    return [(t, r, a, b) for (t, r), (a, b) in sorted(rows.items())]


def print_report(
    comparison: Comparison, name_a: str, name_b: str, stream: TextIO, diff: TextIO | None
) -> None:
    width = max(14, len(name_a), len(name_b))
    stream.write(
        f"{'trigger':<18} {'outcome':<30} {name_a:>{width}} {name_b:>{width}} {'B-A':>8}\n"
    )
    for trigger, outcome, a, b in table_rows(comparison):
        stream.write(f"{trigger:<18} {outcome:<30} {a:>{width}} {b:>{width}} {b - a:>+8}\n")
    users = comparison.differing
    stream.write(f"\nusers whose actions differ: {len(users)}\n")
    for user in list(users)[:20]:
        only_a, only_b = users[user]
        stream.write(f"  {user}: {len(only_a)} only under A, {len(only_b)} only under B\n")
    if diff is not None:
        for user, (only_a, only_b) in users.items():
            record = {"user_id": user, "only_a": only_a, "only_b": only_b}
            diff.write(json.dumps(record, separators=(",", ":")) + "\n")
