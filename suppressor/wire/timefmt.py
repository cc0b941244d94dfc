"""RFC 3339 timestamps: strict parsing (an offset is required) and UTC formatting.

Event time is carried as integer milliseconds since the Unix epoch everywhere
inside the product: cheap to compare, exact to hash, the same in every process.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp; raise ValueError naming the expected form."""
    if not _RFC3339.match(text):
        raise ValueError(
            f"expected an RFC 3339 timestamp with a timezone offset like "
            f"'2019-10-01T00:00:00Z' or '2019-10-01T02:00:00+02:00', got {text!r}"
        )
    fraction = re.search(r"\.(\d+)", text)
    if fraction and len(fraction.group(1)) > 6:  # datetime keeps microseconds only
        text = text.replace(fraction.group(0), "." + fraction.group(1)[:6])
    moment = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is outside the years 0001-9999 in UTC") from None
    return moment


def to_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _MS


@lru_cache(maxsize=8192)
def format_ms(ms: int) -> str:
    """UTC RFC 3339 with a 'Z'; milliseconds only when they are not zero."""
    seconds, millis = divmod(ms, 1000)
    t = time.gmtime(seconds)
    # Not strftime("%Y"): glibc writes year 1 as "1", and RFC 3339 needs four digits.
    text = (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


def parse_to_ms(text: str) -> int:
    return to_ms(parse_rfc3339(text))
