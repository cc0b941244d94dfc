"""Records Faust delivers twice after an assignment, processed once. See README.md here."""

from __future__ import annotations

import logging

from faust.types import TP

log = logging.getLogger(__name__)


class Deliveries:
    """The offset last processed per partition since it was assigned.

    Faust's consumer drops re-fetched records with ``offset >= last read`` (``>=``, not
    ``>``), so when the fetcher returns the last record again after the seek that follows
    an assignment, it is delivered twice; processing it twice would apply the event twice
    (its first effects are in the transaction already)."""

    def __init__(self) -> None:
        self._last: dict[TP, int] = {}

    def first(self, tp: TP, offset: int) -> bool:
        """False for a record this process already processed since ``tp`` was assigned."""
        last = self._last.get(tp)
        if last is not None and offset <= last:
            log.warning(
                "%s[%d]: offset %d delivered again (processed up to %d): skipped",
                tp.topic,
                tp.partition,
                offset,
                last,
            )
            return False
        self._last[tp] = offset
        return True

    def last(self, tp: TP) -> int | None:
        return self._last.get(tp)

    def forget(self, tp: TP) -> None:
        """``tp`` was revoked: a later assignment starts again."""
        self._last.pop(tp, None)
