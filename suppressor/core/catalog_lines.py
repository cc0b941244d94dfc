"""Catalog records as the worker and the commands check them: one set of rules and dead
letters for the catalog topic (suppressor.adapters.catalog_reader), a catalog file in
replay (suppressor.core.replay.files) and ``suppressor catalog load``.

In a file, a line ``{"item_id": "...", "deleted": true}`` marks an item deleted: replay
removes it, ``catalog load`` sends a tombstone (key item_id, no value). Other fields of such
a line are ignored; ``deleted`` false or absent is an ordinary item.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from pydantic import ValidationError

from suppressor.wire.catalog import CATALOG_ITEM, CatalogItem
from suppressor.wire.outputs import DeadLetter, SourcePosition


class Deleted(NamedTuple):
    item_id: str


def validate_catalog_item(value: bytes, source: SourcePosition) -> CatalogItem | DeadLetter:
    """The item in ``value``, or a dead letter: ``bad_catalog_item`` naming the first bad
    field, or ``not_json``."""
    try:
        return CATALOG_ITEM.validate_json(value)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "record"
        return DeadLetter.of(value, source, "bad_catalog_item", f"{where}: {first['msg']}")
    except (ValueError, RecursionError):
        return DeadLetter.of(value, source, "not_json", "not usable JSON")


def catalog_line(line: bytes, source: SourcePosition) -> CatalogItem | Deleted | DeadLetter:
    """A line of a catalog file: an item, an item marked deleted, or a dead letter."""
    if b'"deleted"' in line:
        deleted = _deleted(line, source)
        if deleted is not None:
            return deleted
    return validate_catalog_item(line, source)


def _deleted(line: bytes, source: SourcePosition) -> Deleted | DeadLetter | None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None  # validate_catalog_item says not_json
    if not isinstance(record, dict) or record.get("deleted") is not True:
        if isinstance(record, dict) and record.get("deleted") not in (None, False):
            message = "deleted: must be true or false"
            return DeadLetter.of(line, source, "bad_catalog_item", message)
        return None
    item_id = record.get("item_id")
    if not isinstance(item_id, str) or not 1 <= len(item_id) <= 256:
        message = "item_id: a deleted item needs its item_id (a string of 1-256 characters)"
        return DeadLetter.of(line, source, "bad_catalog_item", message)
    return Deleted(item_id)
