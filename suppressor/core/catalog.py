"""Catalog items and similar-item candidates.

Candidates for a seed are its curated `similar` list, else the items of its
category ranked by tag overlap (Jaccard), ties by item id. Rankings are cached
per seed and dropped per category when an item of that category changes, so
a catalog update costs one category, not the whole catalog.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    category: str
    kind: Literal["product", "destination"] = "product"
    one_off: bool = False
    tags: frozenset[str] = frozenset()
    similar: tuple[str, ...] | None = None
    available: bool = True


class Catalog:
    def __init__(self, items: Iterable[Item] = ()) -> None:
        self._items: dict[str, Item] = {}
        self._by_category: dict[str, set[str]] = {}
        self._ranked: dict[str, dict[str, tuple[str, ...]]] = {}  # category -> seed -> ranking
        for item in items:
            self.upsert(item)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item_id: str) -> Item | None:
        return self._items.get(item_id)

    def upsert(self, item: Item) -> None:
        old = self._items.get(item.item_id)
        if old is not None:
            self._forget_in_category(old)
        self._items[item.item_id] = item
        self._by_category.setdefault(item.category, set()).add(item.item_id)
        self._ranked.pop(item.category, None)

    def remove(self, item_id: str) -> None:
        old = self._items.pop(item_id, None)
        if old is not None:
            self._forget_in_category(old)

    def _forget_in_category(self, item: Item) -> None:
        members = self._by_category.get(item.category)
        if members is not None:
            members.discard(item.item_id)
            if not members:
                del self._by_category[item.category]
        self._ranked.pop(item.category, None)

    def candidates(self, seed_id: str) -> Sequence[str]:
        """The seed's candidates in rank order (the seed itself may be among them)."""
        seed = self._items.get(seed_id)
        if seed is None:
            return ()
        if seed.similar:
            return seed.similar
        cache = self._ranked.setdefault(seed.category, {})
        ranking = cache.get(seed_id)
        if ranking is None:
            ranking = cache[seed_id] = self._rank_by_tags(seed)
        return ranking

    def _rank_by_tags(self, seed: Item) -> tuple[str, ...]:
        def score(item_id: str) -> tuple[float, str]:
            tags = self._items[item_id].tags
            union = len(seed.tags | tags)
            return (-(len(seed.tags & tags) / union) if union else 0.0, item_id)

        return tuple(sorted(self._by_category.get(seed.category, ()), key=score))
