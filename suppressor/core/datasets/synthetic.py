"""A large, seeded, synthetic event stream shaped like the REES46 samples.

``estimate()`` reads the REES46 samples (``rees46.default_data_dir()``) and measures what
the generator needs: the event-type mix (view/cart/purchase from the multi-category
sample, the remove rate per cart add from the cosmetics one), events per user and per
session, gaps between events of a session and between a user's sessions, item
popularity (a Zipf law fitted to the rank-frequency of the real items), how often a
session stays in one category, order sizes, item prices and the cart -> purchase
conversion. ``generate()`` then writes N events over U users as JSONL, streaming:

- each user gets an event budget (at least one event; the rest shared out like the
  sample's events per user), cut into sessions like the sample's; sessions are visits at
  uniform times of the horizon (N / the sample's events per second), or (half of a
  user's later ones) quick returns after one of the sample's between-session gaps;
  events of a session are apart by the sample's in-session gaps;
- sessions run interleaved through a heap, so events come out in time order; a small
  share of events (``late_fraction``) is written up to ``max_jitter_s`` seconds late
  (event time unchanged: they *arrive* late), so every event's ``ts`` is at least the
  largest earlier ``ts`` minus ``max_jitter_s`` -- work for the engine's reorder buffer;
- within a session, views follow item popularity with category affinity; cart adds take
  the last viewed item; removes take a basket item (else the last viewed one, as the
  sample's removes of items added before its window); a purchase either checks out the
  whole basket (often enough that the sample's share of basket adds gets bought) or buys
  the last viewed item, with the sample's order sizes; plus small rates of ``review``
  (mostly of bought items), ``consent`` and ``forget`` events, and trips to a few
  synthetic destinations (kind ``destination``, curated ``similar`` lists);
- event ids are ``syn-<sequence>`` (zero-padded, in causal order) so that ties in ``ts``
  are ordered by id exactly as they happened.

The catalog is the real one of the multi-category sample plus the destinations.
Same seed, same bytes. Run as ``python -m suppressor.core.datasets.synthetic --events N
--users U --out DIR``.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import itertools
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from suppressor.core.datasets import rees46
from suppressor.wire.outputs import DeadLetter

START = datetime(2019, 10, 1, tzinfo=UTC)
"""Event time of the first synthetic event: the start of the multi-category sample."""
EVENT_TYPES = ("browse", "cart", "purchase", "review", "consent", "forget")
REVIEW_RATE = 0.004
CONSENT_RATE = 0.002
FORGET_RATE = 0.0002
DESTINATION_VIEW_RATE = 0.005
DESTINATION_PURCHASE_RATE = 0.04
QUANTITY_TWO_RATE = 0.03
QUICK_RETURN_RATE = 0.5
"""Share of a user's later sessions that follow the previous one after one of the sample's
between-session gaps (minutes); the others are visits at a uniform time of the horizon."""
RATINGS = ((1, 0.10), (2, 0.06), (3, 0.10), (4, 0.22), (5, 0.52))
"""Assumed star-rating mix (the samples have no reviews)."""
CONSENTS: tuple[tuple[dict[str, Any] | None, float], ...] = (
    ({"similar_item": False}, 0.30),
    ({"basket_recovery": False}, 0.20),
    (None, 0.25),  # max_actions_per_week 0..5
    ({"similar_item": True}, 0.15),
    ({"basket_recovery": True, "similar_item": True}, 0.10),
)
DESTINATIONS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], float]] = {
    # item_id: (title, tags, similar, trip price)
    "dest-amsterdam": (
        "Amsterdam",
        ("canals", "city", "museums"),
        ("dest-copenhagen", "dest-bruges", "dest-hamburg"),
        420.0,
    ),
    "dest-copenhagen": (
        "Copenhagen",
        ("city", "design", "harbour"),
        ("dest-amsterdam", "dest-stockholm", "dest-hamburg"),
        460.0,
    ),
    "dest-bruges": (
        "Bruges",
        ("canals", "medieval", "small-town"),
        ("dest-amsterdam", "dest-tallinn", "dest-porto"),
        310.0,
    ),
    "dest-hamburg": (
        "Hamburg",
        ("city", "harbour", "music"),
        ("dest-copenhagen", "dest-amsterdam", "dest-stockholm"),
        380.0,
    ),
    "dest-stockholm": (
        "Stockholm",
        ("archipelago", "city", "design"),
        ("dest-copenhagen", "dest-tallinn", "dest-hamburg"),
        520.0,
    ),
    "dest-tallinn": (
        "Tallinn",
        ("medieval", "old-town", "small-town"),
        ("dest-bruges", "dest-stockholm", "dest-krakow"),
        290.0,
    ),
    "dest-porto": (
        "Porto",
        ("coast", "old-town", "wine"),
        ("dest-lisbon", "dest-seville", "dest-bruges"),
        340.0,
    ),
    "dest-lisbon": (
        "Lisbon",
        ("city", "coast", "old-town"),
        ("dest-porto", "dest-seville", "dest-barcelona"),
        400.0,
    ),
    "dest-seville": (
        "Seville",
        ("flamenco", "old-town", "sun"),
        ("dest-lisbon", "dest-porto", "dest-barcelona"),
        360.0,
    ),
    "dest-barcelona": (
        "Barcelona",
        ("beach", "city", "architecture"),
        ("dest-lisbon", "dest-seville", "dest-naples"),
        450.0,
    ),
    "dest-naples": (
        "Naples",
        ("coast", "food", "old-town"),
        ("dest-barcelona", "dest-krakow", "dest-seville"),
        330.0,
    ),
    "dest-krakow": (
        "Krakow",
        ("medieval", "old-town", "city"),
        ("dest-tallinn", "dest-naples", "dest-bruges"),
        260.0,
    ),
}
DESTINATION_CATEGORY = "travel.city_break"


@dataclass(frozen=True)
class SampleStats:
    """What ``generate`` takes from the REES46 samples."""

    type_mix: dict[str, float]  # view / cart / remove / purchase, summing to 1
    events_per_second: float
    events_per_user: list[int]
    events_per_session: list[int]
    session_gaps_s: list[int]  # between consecutive events of one session
    return_gaps_s: list[int]  # between one session's last event and the user's next session
    zipf_s: float
    same_category: float  # share of consecutive views in a session within one category
    order_sizes: list[int]
    purchase_from_cart: float  # share of purchased items the buyer had put in the basket
    cart_conversion: float  # share of (user, item) basket adds bought within the sample
    catalog: list[dict[str, Any]]
    prices: dict[str, float]  # item id -> its first price in the sample
    popularity: list[str]  # catalog item ids, most viewed first


def _seconds(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp())


def _zipf_exponent(counts: Sequence[int]) -> float:
    """Least-squares slope of log(frequency) on log(rank) over items seen at least twice."""
    points = [(math.log(rank), math.log(c)) for rank, c in enumerate(counts, 1) if c >= 2]
    if len(points) < 3:
        return 1.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return max(0.3, min(2.0, -cov / var)) if var else 1.0


def estimate(data_dir: Path | None = None) -> SampleStats:
    """Measure the REES46 samples (multi-category, and cosmetics for removes and orders)."""
    data_dir = data_dir or rees46.default_data_dir()
    mc_files, _ = rees46.default_paths(data_dir, cosmetics=False)
    cos_files, _ = rees46.default_paths(data_dir, cosmetics=True)
    if not mc_files:
        raise FileNotFoundError(f"no REES46 multi-category sample in {data_dir}")
    ignored: list[DeadLetter] = []
    rows = [row for path in mc_files for row in rees46.iter_rows(path, ignored)]
    cos_rows = [row for path in cos_files for row in rees46.iter_rows(path, ignored)]

    kinds = Counter(row.event_type for row in rows)
    cos_kinds = Counter(row.event_type for row in cos_rows)
    remove_per_cart = (
        cos_kinds["remove_from_cart"] / cos_kinds["cart"] if cos_kinds["cart"] else 0.5
    )
    raw_mix = {
        "view": kinds["view"],
        "cart": kinds["cart"],
        "remove": kinds["cart"] * remove_per_cart,
        "purchase": kinds["purchase"],
    }
    total = sum(raw_mix.values())
    type_mix = {kind: value / total for kind, value in raw_mix.items()}

    seconds = [_seconds(row.ts) for row in rows]
    span = max(1, seconds[-1] - seconds[0])
    per_user = Counter(row.user_id for row in rows)
    per_session = Counter((row.user_id, row.session) for row in rows)

    session_gaps: list[int] = []
    last_in_session: dict[tuple[str, str], tuple[int, str]] = {}  # -> (time, category)
    same = moves = 0
    sessions_of_user: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for row, at in zip(rows, seconds, strict=True):
        key = (row.user_id, row.session)
        category = row.category_code or row.category_id
        previous = last_in_session.get(key)
        if previous is not None:
            session_gaps.append(at - previous[0])
            if row.event_type == "view":
                moves += 1
                same += previous[1] == category
        last_in_session[key] = (at, category)
        bounds = sessions_of_user[row.user_id].setdefault(row.session, [at, at])
        bounds[1] = at
    return_gaps: list[int] = []
    for sessions in sessions_of_user.values():
        ordered = sorted(sessions.values())
        return_gaps.extend(b[0] - a[1] for a, b in itertools.pairwise(ordered) if b[0] > a[1])

    views = Counter(row.product_id for row in rows if row.event_type == "view")
    prices: dict[str, float] = {}
    for row in rows:
        if row.price is not None:
            prices.setdefault(row.product_id, row.price)
    order_rows = Counter(
        (row.user_id, row.session, row.ts)
        for row in [*rows, *cos_rows]
        if row.event_type == "purchase"
    )
    carted: set[tuple[str, str]] = set()
    from_cart = bought = 0
    converted: set[tuple[str, str]] = set()
    for row in rows:
        pair = (row.user_id, row.product_id)
        if row.event_type == "cart":
            carted.add(pair)
        elif row.event_type == "purchase":
            bought += 1
            if pair in carted:
                from_cart += 1
                converted.add(pair)

    conversion = rees46.convert(mc_files)
    popularity = sorted(
        (item["item_id"] for item in conversion.catalog),
        key=lambda item_id: -views[item_id],  # stable: ties keep catalog (first-seen) order
    )
    return SampleStats(
        type_mix=type_mix,
        events_per_second=len(rows) / span,
        events_per_user=sorted(per_user.values()),
        events_per_session=sorted(per_session.values()),
        session_gaps_s=sorted(session_gaps) or [30],
        return_gaps_s=sorted(return_gaps) or [1800],
        zipf_s=_zipf_exponent([views[item] for item in popularity]),
        same_category=same / moves if moves else 0.5,
        order_sizes=sorted(order_rows.values()) or [1],
        purchase_from_cart=from_cart / bought if bought else 0.3,
        cart_conversion=len(converted) / len(carted) if carted else 0.3,
        catalog=conversion.catalog,
        prices=prices,
        popularity=popularity,
    )


def destination_items() -> list[dict[str, Any]]:
    return [
        {
            "item_id": item_id,
            "title": title,
            "category": DESTINATION_CATEGORY,
            "kind": "destination",
            "one_off": False,
            "tags": ["travel", *tags, rees46.price_band(price)],
            "similar": list(similar),
        }
        for item_id, (title, tags, similar, price) in DESTINATIONS.items()
    ]


class _Clock:
    """Seconds since START -> RFC 3339 UTC with 'Z', cheaply (the day string is cached)."""

    def __init__(self) -> None:
        self._base = int(START.timestamp())
        self._days: dict[int, str] = {}

    def __call__(self, offset: int) -> str:
        day, rest = divmod(self._base + offset, 86400)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%dT")
            self._days[day] = prefix
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        return f"{prefix}{hours:02d}:{minutes:02d}:{secs:02d}Z"


class _Sampler:
    """Fast draws from a discrete distribution given by cumulative weights."""

    def __init__(self, values: Sequence[Any], weights: Sequence[float], rng: random.Random):
        self.values = list(values)
        self.cum = list(itertools.accumulate(weights))
        self.total = self.cum[-1]
        self.random = rng.random
        self.last = len(self.values) - 1

    def __call__(self) -> Any:
        index = bisect.bisect_right(self.cum, self.random() * self.total)
        return self.values[min(index, self.last)]


def _plan_users(rng: random.Random, stats: SampleStats, events: int, users: int) -> list[int]:
    """An event budget per user: at least one each, the rest shared like the sample."""
    activity = [rng.choice(stats.events_per_user) for _ in range(users)]
    scale = (events - users) / sum(activity)
    budgets = [1 + int(a * scale) for a in activity]
    rest = events - sum(budgets)
    if rest > 0:
        for index in rng.choices(range(users), weights=activity, k=rest):
            budgets[index] += 1
    return budgets


def _plan_sessions(
    rng: random.Random, stats: SampleStats, budgets: list[int], horizon: float
) -> list[tuple[int, int, int, int]]:
    """(start second, user index, session number, events) for every session, by start."""
    sessions: list[tuple[int, int, int, int]] = []
    session_gap = stats.session_gaps_s
    per_session = stats.events_per_session
    returns = stats.return_gaps_s
    mean_event_gap = sum(session_gap) / len(session_gap)
    for user, budget in enumerate(budgets):
        lengths: list[int] = []
        left = budget
        while left > 0:
            length = min(left, rng.choice(per_session))
            lengths.append(length)
            left -= length
        # visits spread uniformly over the horizon; some sessions are quick returns instead
        visits = sorted(rng.random() * horizon for _ in lengths)
        end = 0.0
        for number, length in enumerate(lengths):
            if number == 0:
                start = visits[0]
            elif rng.random() < QUICK_RETURN_RATE:
                start = end + rng.choice(returns)
            else:
                start = max(visits[number], end + rng.choice(returns))
            sessions.append((int(start), user, number, length))
            end = start + length * mean_event_gap
    sessions.sort()
    return sessions


def generate(
    out_events: Path,
    out_catalog: Path,
    *,
    events: int = 1_000_000,
    users: int = 100_000,
    seed: int = 46,
    max_jitter_s: int = 30,
    late_fraction: float = 0.02,
    data_dir: Path | None = None,
) -> dict[str, int]:
    """Write ``events`` synthetic events over ``users`` users and the matching catalog.

    Returns the count of events by type (every type of ``EVENT_TYPES``), plus
    ``cart.add``, ``cart.remove``, ``users`` (distinct users), ``catalog_items`` and
    ``total``.
    """
    if users < 1 or events < users:
        raise ValueError(f"need at least one user and one event per user ({events=}, {users=})")
    if max_jitter_s < 0 or not 0.0 <= late_fraction <= 1.0:
        raise ValueError(f"bad jitter settings ({max_jitter_s=}, {late_fraction=})")
    stats = estimate(data_dir)
    rng = random.Random(seed)
    rand = rng.random

    catalog = stats.catalog + destination_items()
    out_catalog = Path(out_catalog)
    out_catalog.parent.mkdir(parents=True, exist_ok=True)
    with out_catalog.open("w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(rees46.dumps(item) + "\n" for item in catalog)

    category_of = {item["item_id"]: item["category"] for item in stats.catalog}
    weights = [1.0 / rank**stats.zipf_s for rank in range(1, len(stats.popularity) + 1)]
    popular = _Sampler(stats.popularity, weights, rng)
    by_category: dict[str, tuple[list[str], list[float]]] = {}
    for item_id, weight in zip(stats.popularity, weights, strict=True):
        members = by_category.setdefault(category_of[item_id], ([], []))
        members[0].append(item_id)
        members[1].append(weight)
    in_category = {category: _Sampler(ids, ws, rng) for category, (ids, ws) in by_category.items()}
    destinations = list(DESTINATIONS)
    trip_price = {item_id: spec[3] for item_id, spec in DESTINATIONS.items()}
    item_price = stats.prices
    session_gap = _Sampler(stats.session_gaps_s, [1.0] * len(stats.session_gaps_s), rng)
    order_size = _Sampler(stats.order_sizes, [1.0] * len(stats.order_sizes), rng)
    rating = _Sampler([r for r, _ in RATINGS], [w for _, w in RATINGS], rng)
    consent = _Sampler(list(range(len(CONSENTS))), [w for _, w in CONSENTS], rng)

    mix = stats.type_mix
    core = 1.0 - REVIEW_RATE - CONSENT_RATE - FORGET_RATE
    t_review = REVIEW_RATE
    t_consent = t_review + CONSENT_RATE
    t_forget = t_consent + FORGET_RATE
    t_view = t_forget + core * mix["view"]
    t_cart = t_view + core * mix["cart"]
    t_remove = t_cart + core * mix["remove"]
    # the share of purchases that check out the basket, so that about `cart_conversion`
    # of the basket adds end up bought
    checkout_rate = min(1.0, stats.cart_conversion * mix["cart"] / mix["purchase"])
    same_category = stats.same_category

    horizon = events / stats.events_per_second
    budgets = _plan_users(rng, stats, events, users)
    sessions = _plan_sessions(rng, stats, budgets, horizon)
    width = max(9, len(str(events)))
    user_ids = [f"u{index:0{max(6, len(str(users)))}d}" for index in range(users)]
    clock = _Clock()

    counts = dict.fromkeys(EVENT_TYPES, 0)
    counts["cart.add"] = counts["cart.remove"] = 0
    baskets: dict[int, list[str]] = {}
    bought: dict[int, list[str]] = {}
    last_seen: dict[int, str] = {}  # user -> last viewed item in the current session
    active: list[tuple[int, int, int, int, int]] = []  # (next second, seq, user, session, left)
    pending: list[tuple[int, int, str]] = []  # (arrival second, seq, line)
    owed = {"add": 0, "remove": 0, "checkout": 0}
    seq = 0
    next_session = 0
    out_events = Path(out_events)
    out_events.parent.mkdir(parents=True, exist_ok=True)
    handle = out_events.open("w", encoding="utf-8", newline="\n")
    write = handle.write
    lines: list[str] = []

    def flush(until: int) -> None:
        while pending and pending[0][0] <= until:
            lines.append(heapq.heappop(pending)[2])
        if len(lines) >= 4096:
            write("".join(lines))
            lines.clear()

    def view_item(user: int) -> str:
        if rand() < DESTINATION_VIEW_RATE:
            return destinations[int(rand() * len(destinations))]
        previous = last_seen.get(user)
        if previous is not None and rand() < same_category:
            category = category_of.get(previous)
            if category is not None:
                return str(in_category[category]())
        return str(popular())

    def price_of(item_id: str) -> float | None:
        return trip_price.get(item_id, item_price.get(item_id))

    try:
        while next_session < len(sessions) or active:
            if active and (
                next_session >= len(sessions) or active[0][0] <= sessions[next_session][0]
            ):
                at, _order, user, number, left = heapq.heappop(active)
            else:
                at, user, number, left = sessions[next_session]
                next_session += 1
                last_seen.pop(user, None)
            seq += 1
            event_id = f"syn-{seq:0{width}d}"
            uid = user_ids[user]
            ts = clock(at)
            r = rand()
            line: str
            if r < t_review:
                counts["review"] += 1
                owned = bought.get(user)
                item = owned[int(rand() * len(owned))] if owned and rand() < 0.8 else None
                item = item or last_seen.get(user) or str(popular())
                line = (
                    f'{{"event_id":"{event_id}","item_id":"{item}","rating":{rating()},'
                    f'"ts":"{ts}","type":"review","user_id":"{uid}"}}\n'
                )
            elif r < t_consent:
                counts["consent"] += 1
                choice = CONSENTS[consent()][0]
                fields = {"max_actions_per_week": int(rand() * 6)} if choice is None else choice
                record = {"event_id": event_id, "ts": ts, "type": "consent", "user_id": uid}
                line = rees46.dumps({**record, **fields}) + "\n"
            elif r < t_forget:
                counts["forget"] += 1
                baskets.pop(user, None)
                bought.pop(user, None)
                last_seen.pop(user, None)
                line = (
                    f'{{"event_id":"{event_id}","ts":"{ts}","type":"forget","user_id":"{uid}"}}\n'
                )
            else:
                basket = baskets.get(user)
                seen = last_seen.get(user)
                if r < t_view:
                    kind = "view"
                elif r < t_cart:
                    kind = "add"
                elif r < t_remove:
                    kind = "remove"
                else:
                    kind = "checkout" if rand() < checkout_rate else "buy"
                # an event that needs what the user lacks (a viewed item to put in the basket,
                # a basket to check out, something to remove) becomes a view and is owed to the
                # next view that can take it, so the mix stays as drawn
                if (
                    (kind == "add" and seen is None)
                    or (kind == "checkout" and not basket)
                    or (kind == "remove" and seen is None and not basket)
                ):
                    owed[kind] += 1
                    kind = "view"
                elif kind == "view":
                    if basket and owed["checkout"]:
                        kind = "checkout"
                    elif seen is not None and owed["add"]:
                        kind = "add"
                    elif (basket or seen is not None) and owed["remove"]:
                        kind = "remove"
                    if kind != "view":
                        owed[kind] -= 1
                if kind == "view":
                    counts["browse"] += 1
                    item = view_item(user)
                    last_seen[user] = item
                    line = (
                        f'{{"event_id":"{event_id}","item_id":"{item}","page":"product",'
                        f'"ts":"{ts}","type":"browse","user_id":"{uid}"}}\n'
                    )
                elif kind in ("add", "remove"):
                    counts["cart"] += 1
                    counts["cart." + kind] += 1
                    quantity = 1
                    if kind == "add":
                        item = str(seen)
                        quantity = 2 if rand() < QUANTITY_TWO_RATE else 1
                        if basket is None:
                            baskets[user] = [item]
                        elif item not in basket:
                            basket.append(item)
                    elif basket:
                        item = basket.pop(int(rand() * len(basket)))
                        if not basket:
                            del baskets[user]
                    else:
                        item = str(seen)  # an item put in the basket before our time
                    line = (
                        f'{{"action":"{kind}","event_id":"{event_id}","item_id":"{item}",'
                        f'"quantity":{quantity},"ts":"{ts}","type":"cart","user_id":"{uid}"}}\n'
                    )
                else:
                    counts["purchase"] += 1
                    if kind == "checkout" and basket:
                        picked = basket
                        del baskets[user]
                    elif rand() < DESTINATION_PURCHASE_RATE:
                        picked = [destinations[int(rand() * len(destinations))]]
                    else:
                        size = int(order_size())
                        first = seen or view_item(user)
                        picked = list(
                            dict.fromkeys([first, *(view_item(user) for _ in range(size - 1))])
                        )
                    if basket and picked is not basket:
                        basket[:] = [item for item in basket if item not in picked]
                        if not basket:
                            del baskets[user]
                    owned = bought.setdefault(user, [])
                    owned.extend(item for item in picked if item not in owned)
                    items = []
                    for item in picked:
                        entry: dict[str, Any] = {"item_id": item, "quantity": 1}
                        price = price_of(item)
                        if price is not None:
                            entry["price"] = price
                        items.append(entry)
                    order = f"syn-o-{seq:0{width}d}"
                    line = (
                        rees46.dumps(
                            {
                                "event_id": event_id,
                                "items": items,
                                "order_id": order,
                                "ts": ts,
                                "type": "purchase",
                                "user_id": uid,
                            }
                        )
                        + "\n"
                    )
            delay = 0
            if max_jitter_s and rand() < late_fraction:
                delay = 1 + int(rand() * max_jitter_s)
            heapq.heappush(pending, (at + delay, seq, line))
            if left > 1:
                heapq.heappush(active, (at + int(session_gap()), seq, user, number, left - 1))
            flush(at)
        flush(sys.maxsize)
        write("".join(lines))
    finally:
        handle.close()
    counts["users"] = len(budgets)
    counts["catalog_items"] = len(catalog)
    counts["total"] = seq
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m suppressor.core.datasets.synthetic",
        description="Write a seeded synthetic event stream (events.jsonl) and its catalog.",
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=46)
    parser.add_argument("--max-jitter", type=int, default=30, help="seconds (default 30)")
    parser.add_argument("--late-fraction", type=float, default=0.02)
    parser.add_argument("--data-dir", type=Path, default=None, help="the REES46 samples")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    try:
        counts = generate(
            args.out / "events.jsonl",
            args.out / "catalog.jsonl",
            events=args.events,
            users=args.users,
            seed=args.seed,
            max_jitter_s=args.max_jitter,
            late_fraction=args.late_fraction,
            data_dir=args.data_dir,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"synthetic: {error}", file=sys.stderr)
        return 2
    print(json.dumps({**counts, "seconds": round(time.perf_counter() - began, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
