"""Reading the inputs of a replay: a catalog JSONL file and an events JSONL file (or stdin)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from suppressor.core.catalog import Catalog
from suppressor.core.catalog_lines import Deleted, catalog_line
from suppressor.core.codec import item_from_wire
from suppressor.core.errors import InputFileError
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
    """The catalog in a JSONL file; bad lines become dead letters, the rest load (a line
    marking an item deleted removes it: suppressor.core.catalog_lines)."""
    catalog, dead = Catalog(), list[DeadLetter]()
    if path is None:
        return catalog, dead
    handle, _ = open_input(path)
    with handle:
        for number, line in numbered_lines(handle):
            found = catalog_line(line, SourcePosition(file=path, line=number))
            if isinstance(found, DeadLetter):
                dead.append(found)
            elif isinstance(found, Deleted):
                catalog.remove(found.item_id)
            else:
                catalog.upsert(item_from_wire(found))
    return catalog, dead
