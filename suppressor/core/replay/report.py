"""`replay --report`: conversion rate per action kind, treated vs holdout, and the lift."""

from __future__ import annotations

from typing import TextIO

from suppressor.core.stats import Lift, lift
from suppressor.core.tally import Tally

KINDS = ("basket_recovery", "similar_item")


def lifts(tally: Tally) -> dict[str, tuple[int, int, int, int, Lift]]:
    """kind -> (treated windows, treated converted, holdout windows, holdout converted, lift)."""
    table = {}
    for kind in KINDS:
        t_yes = tally.conversions[kind, "treated", True]
        t_all = t_yes + tally.conversions[kind, "treated", False]
        h_yes = tally.conversions[kind, "holdout", True]
        h_all = h_yes + tally.conversions[kind, "holdout", False]
        table[kind] = (t_all, t_yes, h_all, h_yes, lift(t_yes, t_all, h_yes, h_all))
    return table


def print_report(tally: Tally, stream: TextIO) -> None:
    stream.write(
        "conversions within the attribution window, per action kind (closed windows only)\n"
        f"{'kind':<16} {'treated':>14} {'rate':>7} {'holdout':>14} {'rate':>7} "
        f"{'lift':>8}  95% interval (Newcombe hybrid score)\n"
    )
    for kind, (t_all, t_yes, h_all, h_yes, result) in lifts(tally).items():
        stream.write(
            f"{kind:<16} {f'{t_yes}/{t_all}':>14} {_pct(result.treated_rate):>7} "
            f"{f'{h_yes}/{h_all}':>14} {_pct(result.holdout_rate):>7} "
            f"{_pct(result.difference, signed=True):>8}  {_interval(result)}\n"
        )


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.1f}%" if signed else f"{100 * value:.1f}%"


def _interval(result: Lift) -> str:
    if result.low is None or result.high is None:
        return "n/a (no closed windows in one of the groups)"
    return f"[{_pct(result.low, signed=True)}, {_pct(result.high, signed=True)}]"
