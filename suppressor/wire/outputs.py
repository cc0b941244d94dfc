"""What the product writes: actions, decisions, conversions and dead-letter records.

Contract version 2 (SPEC section 3). Within one `schema_version` a field is only ever added,
never removed, renamed or given another meaning, and consumers must ignore fields they do
not know: the published JSON Schemas allow additional properties. Version 2 added
`seed_items` to actions and changed when similar-item actions are due (one per order, after
`similar_after`); docs/consumers.md is the guide for the ad platforms that read them.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[2] = 2

ActionKind = Literal["basket_recovery", "similar_item"]
Trigger = Literal["browse_nudge", "product_ad", "similar_item", "basket_recovery"]
ReasonCode = Literal[
    # product_ad / browse_nudge
    "browse_nudge",
    "product_ad",
    "past_destination",
    "already_purchased",
    "one_off_owned",
    "ruled_out",
    # candidate exclusions
    "seed",
    "unavailable",
    # guards
    "no_consent",
    "prospect",
    "no_candidates",
    "frequency_cap",
    "duplicate",
    "too_personal",
    "basket_converted",
    "basket_emptied",
    "already_reminded",
    # measurement
    "holdout",
]
DataDimension = Literal["basket", "purchase_history", "travel_history", "reviews"]


Timestamp = Annotated[
    str,
    Field(
        description="RFC 3339, UTC, milliseconds only when not zero",
        json_schema_extra={"format": "date-time"},
    ),
]


class _Record(BaseModel):
    """An output record. Consumers must ignore fields they do not know (the schemas say so:
    additional properties allowed), so fields can be added within a contract version."""

    model_config = ConfigDict(extra="allow", frozen=True)


class Action(_Record):
    """One message on the `actions` topic (key: user_id). Version 2 of the contract."""

    action_id: str = Field(description="deterministic: same input, same id; dedupe on it")
    kind: ActionKind
    user_id: str
    ts: Timestamp = Field(
        description="RFC 3339, UTC: event time of the decision (a basket's deadline, a "
        "similar item's due time)"
    )
    items: list[str] = Field(min_length=1)
    seed_item: str | None = Field(
        description="seed_items[0], kept for consumers of version 1; null for a basket recovery"
    )
    seed_items: list[str] = Field(
        description="every seed of a similar-item action in the order they joined; empty for a "
        "basket recovery (added in version 2)"
    )
    data_dimensions: list[DataDimension]
    source_event_ids: list[str]
    policy_version: str
    schema_version: Literal[2] = SCHEMA_VERSION


class Decision(_Record):
    """One record per trigger considered, on the `decisions` topic (key: user_id)."""

    decision_id: str
    user_id: str
    ts: Timestamp
    trigger: Trigger
    outcome: Literal["emitted", "suppressed"]
    reason: ReasonCode | None
    items: list[str]
    excluded: dict[str, ReasonCode]
    action_id: str | None
    source_event_ids: list[str]
    policy_version: str
    schema_version: Literal[2] = SCHEMA_VERSION


class Conversion(_Record):
    """One record on `conversions` (key: user_id), written when an action's attribution
    window closes: did the person buy an item the action offered (or, for basket recovery,
    an item of the basket) within the window? Held-out actions (reason `holdout`) get one
    too, so treated and holdout conversion rates can be compared.
    """

    conversion_id: str
    action_id: str = Field(description="the emitted action, or the held-out one's would-be id")
    kind: ActionKind
    user_id: str
    group: Literal["treated", "holdout"]
    action_ts: Timestamp
    window_end: Timestamp
    converted: bool
    converted_at: Timestamp | None
    seconds_to_convert: float | None
    policy_version: str
    schema_version: Literal[2] = SCHEMA_VERSION


class SourcePosition(_Record):
    """Where a bad record came from: a topic position, or a line of a file."""

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    file: str | None = None
    line: int | None = None


class DeadLetter(_Record):
    """One record on `events.dlq`: the input we could not use, and why."""

    original: str = Field(description="the original bytes, as text or base64 (see encoding)")
    encoding: Literal["text", "base64"]
    source: SourcePosition
    error_code: str = Field(description="short, stable code for dashboards and alerts")
    error: str = Field(description="what was wrong, in words")
    truncated_from: int | None = Field(
        default=None,
        description="set when the record was larger than MAX_ORIGINAL_BYTES: its size in "
        "bytes; `original` then holds only its first MAX_ORIGINAL_BYTES bytes",
    )
    schema_version: Literal[2] = SCHEMA_VERSION

    @classmethod
    def of(cls, raw: bytes, source: SourcePosition, code: str, message: str) -> DeadLetter:
        """The dead letter for `raw`: kept as text when it is UTF-8, else as base64.

        A record over MAX_ORIGINAL_BYTES (a 1 MB `too_large` one) keeps only its head: the
        whole of it would not fit in a Kafka record of the broker's default size limit
        (the dead-letter producer would fail on it), and the head is what shows the bug.
        """
        size = len(raw)
        if size > MAX_ORIGINAL_BYTES:
            text, encoding = encode_original(_utf8_head(raw, MAX_ORIGINAL_BYTES))
            return cls(
                original=text,
                encoding=encoding,
                source=source,
                error_code=code,
                error=message,
                truncated_from=size,
            )
        text, encoding = encode_original(raw)
        return cls(original=text, encoding=encoding, source=source, error_code=code, error=message)


MAX_ORIGINAL_BYTES = 128 * 1024
"""The most of a bad record a dead letter carries: twice the event size limit, so a record
refused `too_large` just over it is kept whole, and small enough that even escaped as JSON
(at most 6 bytes per byte, for control characters) the dead letter stays under 1 MB."""


def _utf8_head(raw: bytes, limit: int) -> bytes:
    """The first ``limit`` bytes, less a multi-byte character the cut would split."""
    head = raw[:limit]
    for trim in range(4):
        try:
            head[: len(head) - trim].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return head[: len(head) - trim]
    return head  # not UTF-8 anyway: base64


def encode_original(raw: bytes) -> tuple[str, Literal["text", "base64"]]:
    try:
        return raw.decode("utf-8"), "text"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"
