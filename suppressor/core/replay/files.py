"""Reading the inputs of a replay: a catalog JSONL file and an events JSONL file (or stdin)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from suppressor.core.catalog import Catalog
from suppressor.core.codec import item_from_wire
from suppressor.core.errors import InputFileError
from suppressor.wire.catalog import CATALOG_ITEM
from suppressor.wire.outputs import DeadLetter, SourcePosition


def open_input(path: str) -> tuple[BinaryIO, int | None]:
    """The file (or stdin for '-') and its size when known, for progress."""
    if path == "-":
        return sys.stdin.buffer, None
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as error:
        raise InputFileError(f"{path}: cannot open: {error.strerror}") from None
    return handle, Path(path).stat().st_size


def numbered_lines(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(handle, start=1):
        stripped = line.rstrip(b"\r\n")
        if stripped.strip():
            yield number, stripped


def load_catalog(path: str | None) -> tuple[Catalog, list[DeadLetter]]:
    """The catalog in a JSONL file; bad lines become dead letters, the rest load."""
    catalog, dead = Catalog(), list[DeadLetter]()
    if path is None:
        return catalog, dead
    handle, _ = open_input(path)
    with handle:
        for number, line in numbered_lines(handle):
            where = SourcePosition(file=path, line=number)
            try:
                catalog.upsert(item_from_wire(CATALOG_ITEM.validate_json(line)))
            except ValidationError as error:
                first = error.errors(include_url=False)[0]
                field = ".".join(str(p) for p in first["loc"]) or "record"
                message = f"{field}: {first['msg']}"
                dead.append(DeadLetter.of(line, where, "bad_catalog_item", message))
            except (ValueError, RecursionError):
                dead.append(DeadLetter.of(line, where, "not_json", "not usable JSON"))
    return catalog, dead
