"""Conversion rates and lift with a confidence interval (treated vs holdout).

The interval for the difference of two proportions is Newcombe's hybrid score
interval (Newcombe 1998, method 10), built from the two Wilson score intervals.
Unlike the Wald interval it stays inside [-1, 1] and behaves with small counts
and rates near 0, which is where conversion rates of retargeting live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion; None when there are no trials."""
    if trials <= 0:
        return None
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Lift:
    treated_rate: float | None
    holdout_rate: float | None
    difference: float | None  # treated - holdout, absolute
    low: float | None
    high: float | None


def lift(treated_conversions: int, treated: int, holdout_conversions: int, holdout: int) -> Lift:
    """Absolute lift in conversion rate with Newcombe's 95% hybrid score interval."""
    treated_ci = wilson(treated_conversions, treated)
    holdout_ci = wilson(holdout_conversions, holdout)
    p1 = treated_conversions / treated if treated else None
    p2 = holdout_conversions / holdout if holdout else None
    if p1 is None or p2 is None or treated_ci is None or holdout_ci is None:
        return Lift(p1, p2, None, None, None)
    (l1, u1), (l2, u2) = treated_ci, holdout_ci
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Lift(p1, p2, d, low, high)
