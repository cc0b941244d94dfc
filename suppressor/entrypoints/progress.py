"""Progress bars for long commands (tqdm), on stderr and only on a terminal: piped or
redirected, a run prints nothing but its closing summary."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm

tqdm.monitor_interval = 0  # no monitor thread: bars are updated from the loop itself


class Bar:
    """A ``suppressor.core.replay.run.Meter`` drawn as a tqdm bar with rate and ETA."""

    def __init__(
        self, desc: str, total: int | None, unit: str, stream: TextIO | None = None
    ) -> None:
        stream = sys.stderr if stream is None else stream
        self.bar = tqdm(
            desc=desc,
            total=total,
            unit=unit,
            unit_scale=True,
            unit_divisor=1024 if unit == "B" else 1000,
            file=stream,
            disable=not _is_terminal(stream),
            mininterval=0.5,
            dynamic_ncols=True,
        )

    def advance(self, units: int) -> None:
        self.bar.update(units)

    def note(self, **values: Any) -> None:
        self.bar.set_postfix(values, refresh=False)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Bar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
