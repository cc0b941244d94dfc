"""Counters of what happened, shared by the replay summary and the worker's metrics.

Counting lives in the shell around the engine, never inside it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from suppressor.core.engine import Outcome


@dataclass
class Tally:
    events: Counter[str] = field(default_factory=Counter)  # by type
    actions: Counter[str] = field(default_factory=Counter)  # by kind
    suppressed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (trigger, reason)
    emitted: Counter[str] = field(default_factory=Counter)  # by trigger
    exclusions: Counter[str] = field(default_factory=Counter)  # by reason
    dlq: Counter[str] = field(default_factory=Counter)  # by error code
    failures: Counter[str] = field(default_factory=Counter)  # users' steps that raised, by code
    late_events: int = 0
    erasures: int = 0
    # attribution: (kind, "treated" | "holdout", converted) -> closed windows
    conversions: Counter[tuple[str, str, bool]] = field(default_factory=Counter)

    def count_output(self, out: Outcome) -> None:
        for action in out.actions:
            self.actions[action.kind] += 1
        for decision in out.decisions:
            if decision.reason is None:
                self.emitted[decision.trigger] += 1
            else:
                self.suppressed[decision.trigger, decision.reason] += 1
            for _, reason in decision.excluded:
                self.exclusions[reason] += 1
        self.late_events += out.late_events
        self.erasures += len(out.erased)
        for conversion in out.conversions:
            group = "holdout" if conversion.held_out else "treated"
            self.conversions[conversion.kind, group, conversion.converted_at is not None] += 1

    def absorb(self, other: Tally) -> None:
        """Add ``other``'s counts to these (the parts of a replay on several processes)."""
        for name in ("events", "actions", "suppressed", "emitted", "exclusions", "dlq"):
            getattr(self, name).update(getattr(other, name))
        self.failures.update(other.failures)
        self.conversions.update(other.conversions)
        self.late_events += other.late_events
        self.erasures += other.erasures

    def as_dict(self) -> dict[str, object]:
        """The counts as plain JSON values (``replay --summary-json``)."""
        by_reason: Counter[str] = Counter()
        for (_, reason), n in self.suppressed.items():
            by_reason[reason] += n
        return {
            "events": sum(self.events.values()),
            "events_by_type": dict(sorted(self.events.items())),
            "actions": sum(self.actions.values()),
            "actions_by_kind": dict(sorted(self.actions.items())),
            "emitted_by_trigger": dict(sorted(self.emitted.items())),
            "suppressed": sum(by_reason.values()),
            "suppressed_by_reason": dict(sorted(by_reason.items())),
            "suppressed_by_trigger_and_reason": {
                f"{trigger}/{reason}": n for (trigger, reason), n in sorted(self.suppressed.items())
            },
            "exclusions_by_reason": dict(sorted(self.exclusions.items())),
            "dlq": sum(self.dlq.values()),
            "dlq_by_code": dict(sorted(self.dlq.items())),
            "failures_by_code": dict(sorted(self.failures.items())),
            "late_events": self.late_events,
            "erasures": self.erasures,
        }

    def summary_line(self) -> str:
        def fmt(counter: Counter[str]) -> str:
            return " ".join(f"{key}={n}" for key, n in sorted(counter.items())) or "none"

        by_reason: Counter[str] = Counter()
        for (_, reason), n in self.suppressed.items():
            by_reason[reason] += n
        return (
            f"events: {sum(self.events.values())} ({fmt(self.events)}) | "
            f"actions: {sum(self.actions.values())} ({fmt(self.actions)}) | "
            f"suppressed: {sum(by_reason.values())} ({fmt(by_reason)}) | "
            f"dlq: {sum(self.dlq.values())} ({fmt(self.dlq)}) | late: {self.late_events}"
        )
