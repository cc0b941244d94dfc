"""JSON Schemas (2020-12) of every record, so ad platforms can validate without Python.

Inputs are strict about what they accept but drop unknown fields; outputs allow additional
properties, so that a field added within a contract version breaks no consumer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import TypeAdapter

from suppressor.wire.catalog import CatalogItem
from suppressor.wire.events import Browse, Cart, Consent, Event, Forget, Purchase, Review
from suppressor.wire.outputs import Action, Conversion, DeadLetter, Decision

JSON_DIR = Path(__file__).parent / "json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"

RECORDS: dict[str, Any] = {
    "event": Event,
    "event.browse": Browse,
    "event.cart": Cart,
    "event.purchase": Purchase,
    "event.review": Review,
    "event.consent": Consent,
    "event.forget": Forget,
    "catalog_item": CatalogItem,
    "action": Action,
    "decision": Decision,
    "dead_letter": DeadLetter,
    "conversion": Conversion,
}


def render_all() -> dict[str, str]:
    """File name -> JSON text, for every record."""
    files = {}
    for name, model in RECORDS.items():
        mode: Literal["validation", "serialization"]
        mode = (
            "serialization"
            if name in {"action", "decision", "dead_letter", "conversion"}
            else "validation"
        )
        schema = TypeAdapter(model).json_schema(mode=mode)
        schema = {"$schema": DIALECT, **schema}
        schema["$id"] = f"https://retarget-suppressor.invalid/schemas/{name}.json"
        schema["title"] = schema.get("title", name)
        _describe_timestamps(schema)
        files[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return files


def write_all(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, text in render_all().items():
        path = directory / file_name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _describe_timestamps(node: Any) -> None:
    """Input `ts` is an RFC 3339 string on the wire (held as ms internally)."""
    if isinstance(node, dict):
        properties = node.get("properties", {})
        if "ts" in properties and properties["ts"].get("type") == "integer":
            properties["ts"] = {
                "type": "string",
                "format": "date-time",
                "description": "event time, RFC 3339 with a timezone offset",
                "title": "Ts",
            }
        for value in node.values():
            _describe_timestamps(value)
    elif isinstance(node, list):
        for value in node:
            _describe_timestamps(value)
