"""Catalog items (compacted topic `catalog`, key item_id; a JSONL file in replay)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, TypeAdapter

Id = Annotated[StrictStr, Field(min_length=1, max_length=256)]


class CatalogItem(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    item_id: Id
    title: StrictStr
    category: Id
    kind: Literal["product", "destination"]
    one_off: StrictBool
    tags: tuple[StrictStr, ...] = ()
    similar: tuple[Id, ...] | None = None
    available: StrictBool = True


CATALOG_ITEM = TypeAdapter(CatalogItem)
