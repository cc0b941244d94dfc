"""Convert REES46 shop traffic (CSV) into our JSONL events and a JSONL catalog.

Two layouts are understood, told apart by their header:

- multi-category: ``event_time,event_type,product_id,category_id,category_code,brand,price,
  user_id,user_session`` (the catalog comes from the event rows themselves);
- cosmetics: ``event_time,event_type,product_id,price,user_id,user_session`` plus an
  ``item.csv`` (``product_id,category_id,category_code,brand``) for the catalog.

Mapping (see ``/work/shared/data/rees46/README.md``): view -> ``browse`` (page ``product``),
cart -> ``cart`` add, remove_from_cart -> ``cart`` remove, purchase -> ``purchase``, with
the purchase rows of one user session and one timestamp grouped into one order. Input
order is kept (the files are in time order). Ids are deterministic: an event is
``rees46-<file stem>-<line number>`` (a grouped order takes its first row's), an order
``o-<hash of user, session and time>``; the session id itself never reaches the output.

Bad rows (a cut-off last line, a wrong column count, an unparsable time, ...) are not
dropped silently: they become dead-letter records with the file name and line number.

Run as ``python -m suppressor.core.datasets.rees46 [--cosmetics] --out DIR [FILES...]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from suppressor.wire.outputs import DeadLetter, SourcePosition

DATASET = "rees46"
EVENT_COLUMNS = ("event_time", "event_type", "product_id", "user_id", "user_session")
"""Columns every event file must have; price and the catalog columns are optional."""
ITEM_COLUMNS = ("product_id", "category_id", "category_code", "brand")
DURABLE_ROOTS = frozenset({"appliances", "electronics", "furniture", "computers"})
"""Top-level category codes whose items are one-off (durable) purchases."""
PRICE_BANDS = ((10.0, "0-10"), (50.0, "10-50"), (100.0, "50-100"), (250.0, "100-250"))
PRICE_BANDS_HIGH = ((500.0, "250-500"), (1000.0, "500-1000"))
UNCATEGORIZED = "uncategorized"
_MAX_ID = 256

_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) UTC$")
_TYPES = {
    "view": ("browse", None),
    "cart": ("cart", "add"),
    "remove_from_cart": ("cart", "remove"),
    "purchase": ("purchase", None),
}


class Row(NamedTuple):
    """One good CSV row of an event file; ``ts`` is already RFC 3339 UTC ('Z')."""

    file: str
    line: int
    ts: str
    event_type: str
    product_id: str
    user_id: str
    session: str
    price: float | None
    category_id: str
    category_code: str
    brand: str


@dataclass
class Conversion:
    events: list[dict[str, Any]] = field(default_factory=list)
    catalog: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Events by type (carts split into ``cart.add`` / ``cart.remove``) and totals."""
        counts: dict[str, int] = {}
        for event in self.events:
            key = event["type"] if event["type"] != "cart" else f"cart.{event['action']}"
            counts[key] = counts.get(key, 0) + 1
        counts["events"] = len(self.events)
        counts["users"] = len({event["user_id"] for event in self.events})
        counts["catalog_items"] = len(self.catalog)
        counts["dead_letters"] = len(self.dead_letters)
        return counts


class _BadRow(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def default_data_dir() -> Path:
    """``../shared/data/rees46`` next to the repository (the parent of the package dir)."""
    repo_root = Path(__file__).resolve().parents[3]
    return (repo_root.parent / "shared" / "data" / "rees46").resolve()


def default_paths(data_dir: Path, *, cosmetics: bool) -> tuple[list[Path], Path | None]:
    """The sample's event files in time order, and the item file for the catalog."""
    if cosmetics:
        folder = data_dir / "cosmetics"
        files = sorted(folder.glob("data_*.csv"), key=lambda p: (_first_time(p), p.name))
        return files, folder / "item.csv"
    return sorted(data_dir.glob("multi-category-*.csv")), None


def _first_time(path: Path) -> str:
    with path.open("rb") as handle:
        handle.readline()
        return handle.readline().split(b",", 1)[0].decode("utf-8", "replace")


def _split(text: str) -> list[str]:
    if '"' not in text:
        return text.split(",")
    return next(csv.reader([text]))


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based numbers, without the line ending."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.rstrip(b"\r\n")
            if line.strip():
                yield number, line


def _header(path: Path, first: bytes | None, required: Sequence[str]) -> dict[str, int]:
    if first is None:
        raise ValueError(f"{path}: empty file, expected a CSV header")
    names = [name.strip() for name in _split(first.decode("utf-8-sig", "replace"))]
    missing = [name for name in required if name not in names]
    if missing:
        raise ValueError(
            f"{path}: not a REES46 file: the header lacks {', '.join(missing)} "
            f"(found {', '.join(names)})"
        )
    return {name: index for index, name in enumerate(names)}


class _TimeParser:
    """'2019-10-01 00:00:00 UTC' -> '2019-10-01T00:00:00Z', validated once per value."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def __call__(self, text: str) -> str:
        done = self._seen.get(text)
        if done is not None:
            return done
        match = _TIME.match(text)
        if match is None:
            raise _BadRow(
                "bad_timestamp", f"event_time {text!r} is not like '2019-10-01 00:00:00 UTC'"
            )
        iso = f"{match.group(1)}T{match.group(2)}"
        try:
            datetime.fromisoformat(iso)
        except ValueError as error:
            raise _BadRow("bad_timestamp", f"event_time {text!r}: {error}") from None
        self._seen[text] = result = iso + "Z"
        return result


def _id(value: str, name: str) -> str:
    if not value:
        raise _BadRow("missing_field", f"column {name!r} is empty")
    if len(value) > _MAX_ID:
        raise _BadRow("invalid_field", f"column {name!r} is longer than {_MAX_ID} characters")
    return value


def _price(text: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise _BadRow("invalid_field", f"price {text!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise _BadRow("invalid_field", f"price {text!r} is not a non-negative finite number")
    return value


def iter_rows(path: Path, dead_letters: list[DeadLetter]) -> Iterator[Row]:
    """The good rows of one REES46 event file; bad ones are appended to ``dead_letters``."""
    lines = _lines(path)
    first = next(lines, None)
    columns = _header(path, first[1] if first else None, EVENT_COLUMNS)
    width = len(columns)
    at = columns.__getitem__
    i_time, i_type, i_product = at("event_time"), at("event_type"), at("product_id")
    i_user, i_session = at("user_id"), at("user_session")
    optional = [columns.get(name) for name in ("price", "category_id", "category_code", "brand")]
    i_price, i_category_id, i_category_code, i_brand = optional
    parse_time = _TimeParser()
    name = path.name
    for number, raw in lines:
        try:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise _BadRow("bad_csv_row", f"not UTF-8 text at byte {error.start}") from None
            cells = _split(text)
            if len(cells) != width:
                raise _BadRow(
                    "bad_csv_row",
                    f"{len(cells)} columns where the header has {width} (a cut or broken row)",
                )
            kind = cells[i_type]
            if kind not in _TYPES:
                raise _BadRow(
                    "unknown_type",
                    f"unknown event_type {kind!r}; expected one of {', '.join(_TYPES)}",
                )
            yield Row(
                name,
                number,
                parse_time(cells[i_time]),
                kind,
                _id(cells[i_product], "product_id"),
                _id(cells[i_user], "user_id"),
                cells[i_session],
                _price(cells[i_price]) if i_price is not None else None,
                cells[i_category_id] if i_category_id is not None else "",
                cells[i_category_code] if i_category_code is not None else "",
                cells[i_brand] if i_brand is not None else "",
            )
        except _BadRow as bad:
            dead_letters.append(
                DeadLetter.of(
                    raw,
                    SourcePosition(file=name, line=number),
                    bad.code,
                    bad.message,
                )
            )


def read_items(path: Path) -> dict[str, tuple[str, str, str]]:
    """``item.csv`` as product_id -> (category_id, category_code, brand).

    A product may have several rows, some with empty cells; each field takes the first
    non-empty value seen.
    """
    items: dict[str, list[str]] = {}
    lines = _lines(path)
    first = next(lines, None)
    columns = _header(path, first[1] if first else None, ITEM_COLUMNS)
    indexes = [columns[name] for name in ITEM_COLUMNS]
    width = len(columns)
    for _number, raw in lines:
        cells = _split(raw.decode("utf-8", "replace"))
        if len(cells) != width:
            continue  # the item file only enriches the catalog; a broken row adds nothing
        product, *values = (cells[index] for index in indexes)
        if not product:
            continue
        known = items.get(product)
        if known is None:
            items[product] = values
        else:
            for index, value in enumerate(values):
                if value and not known[index]:
                    known[index] = value
    return {product: (v[0], v[1], v[2]) for product, v in items.items()}


def order_id(user_id: str, session: str, ts: str) -> str:
    digest = hashlib.sha256(f"{DATASET}|{user_id}|{session}|{ts}".encode()).hexdigest()
    return "o-" + digest[:16]


def price_band(price: float) -> str:
    for bound, label in PRICE_BANDS + PRICE_BANDS_HIGH:
        if price < bound:
            return "price:" + label
    return "price:1000+"


def catalog_item(
    item_id: str, category_id: str, category_code: str, brand: str, price: float | None
) -> dict[str, Any]:
    """One catalog line (``suppressor.wire.catalog.CatalogItem``) from what REES46 tells of an
    item."""
    parts = [part for part in category_code.split(".") if part] if category_code else []
    if parts:
        category = category_code
    elif category_id:
        category = f"cat-{category_id}"
    else:
        category = UNCATEGORIZED
    leaf = parts[-1].replace("_", " ") if parts else ""
    if brand and leaf:
        title = f"{brand} {leaf}"
    elif brand or leaf:
        title = f"{brand or leaf} {item_id}"
    else:
        title = f"item {item_id}"
    tags = ([f"brand:{brand}"] if brand else []) + [f"cat:{part}" for part in parts]
    if price is not None:
        tags.append(price_band(price))
    return {
        "item_id": item_id,
        "title": title,
        "category": category[:_MAX_ID],
        "kind": "product",
        "one_off": bool(parts) and parts[0] in DURABLE_ROOTS,
        "tags": list(dict.fromkeys(tags)),
    }


def convert(paths: Sequence[Path], *, catalog_csv: Path | None = None) -> Conversion:
    """Convert REES46 event files (in the given order) into events, a catalog and dead letters.

    ``catalog_csv`` is the cosmetics ``item.csv``; its data wins over the event rows'.
    Only items that occur in the events go into the catalog, in order of first occurrence.
    """
    stems = [Path(path).stem for path in paths]
    if len(set(stems)) != len(stems):
        raise ValueError(f"two input files share a name, event ids would clash: {stems}")
    result = Conversion()
    events = result.events
    orders: dict[tuple[str, str, str], dict[str, Any]] = {}
    facts: dict[str, list[Any]] = {}  # item_id -> [category_id, category_code, brand, price]
    for path in paths:
        stem = Path(path).stem
        for row in iter_rows(Path(path), result.dead_letters):
            item = row.product_id
            known = facts.get(item)
            if known is None:
                facts[item] = [row.category_id, row.category_code, row.brand, row.price]
            else:
                for index, value in enumerate(
                    (row.category_id, row.category_code, row.brand, row.price)
                ):
                    if known[index] in ("", None) and value not in ("", None):
                        known[index] = value
            event_type, action = _TYPES[row.event_type]
            if event_type == "purchase":
                key = (row.user_id, row.session, row.ts)
                line: dict[str, Any] = {"item_id": item, "quantity": 1}
                if row.price is not None:
                    line["price"] = row.price
                order = orders.get(key)
                if order is not None:
                    for existing in order["items"]:
                        if existing["item_id"] == item:
                            existing["quantity"] += 1
                            break
                    else:
                        order["items"].append(line)
                    continue
                order = {
                    "event_id": f"{DATASET}-{stem}-{row.line}",
                    "type": "purchase",
                    "user_id": row.user_id,
                    "ts": row.ts,
                    "order_id": order_id(row.user_id, row.session, row.ts),
                    "items": [line],
                }
                orders[key] = order
                events.append(order)
            elif event_type == "browse":
                events.append(
                    {
                        "event_id": f"{DATASET}-{stem}-{row.line}",
                        "type": "browse",
                        "user_id": row.user_id,
                        "ts": row.ts,
                        "item_id": item,
                        "page": "product",
                    }
                )
            else:
                events.append(
                    {
                        "event_id": f"{DATASET}-{stem}-{row.line}",
                        "type": "cart",
                        "user_id": row.user_id,
                        "ts": row.ts,
                        "action": action,
                        "item_id": item,
                        "quantity": 1,
                    }
                )
    items = read_items(catalog_csv) if catalog_csv is not None else {}
    for item_id, (category_id, category_code, brand, price) in facts.items():
        listed = items.get(item_id)
        if listed is not None:
            category_id = listed[0] or category_id
            category_code = listed[1] or category_code
            brand = listed[2] or brand
        result.catalog.append(catalog_item(item_id, category_id, category_code, brand, price))
    return result


def dumps(record: dict[str, Any]) -> str:
    """Compact JSON with sorted keys: the same record always gives the same bytes."""
    return json.dumps(record, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def write(conversion: Conversion, out_dir: Path) -> dict[str, Path]:
    """Write ``events.jsonl``, ``catalog.jsonl`` and ``dlq.jsonl`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {
        "events": (out_dir / "events.jsonl", conversion.events),
        "catalog": (out_dir / "catalog.jsonl", conversion.catalog),
        "dlq": (
            out_dir / "dlq.jsonl",
            [dead.model_dump(mode="json") for dead in conversion.dead_letters],
        ),
    }
    for path, records in outputs.values():
        with path.open("w", encoding="utf-8", newline="\n") as handle:
            handle.writelines(dumps(record) + "\n" for record in records)
    return {name: path for name, (path, _records) in outputs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m suppressor.core.datasets.rees46",
        description="Convert REES46 CSV files into events.jsonl, catalog.jsonl and dlq.jsonl.",
    )
    parser.add_argument("files", nargs="*", type=Path, help="event CSV files, in time order")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--cosmetics", action="store_true", help="the cosmetics sample (catalog from item.csv)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the samples are (default: ../shared/data/rees46 from the repo root)",
    )
    parser.add_argument(
        "--catalog-csv", type=Path, default=None, help="item.csv (default with --cosmetics)"
    )
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    files, item_csv = default_paths(data_dir, cosmetics=args.cosmetics)
    if args.files:
        files = args.files
    catalog_csv = args.catalog_csv or item_csv
    missing = [str(p) for p in [*files, *([catalog_csv] if catalog_csv else [])] if not p.is_file()]
    if not files or missing:
        print(f"rees46: no such input file: {', '.join(missing) or data_dir}", file=sys.stderr)
        return 2
    try:
        conversion = convert(files, catalog_csv=catalog_csv)
    except ValueError as error:
        print(f"rees46: {error}", file=sys.stderr)
        return 2
    written = write(conversion, args.out)
    print(json.dumps({"written": {k: str(v) for k, v in written.items()}, **conversion.counts()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
