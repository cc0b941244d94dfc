"""The policy: a TOML file validated once at start (SPEC section 6).

Durations are written like '90s', '30m', '1h', '7d' or '1h30m' and held as
integer milliseconds. `policy_version` is a hash of the effective policy.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from suppressor.core.errors import ConfigError, InputFileError

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w))+$")
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")


def parse_duration(value: object) -> int:
    """'1h30m' -> 5_400_000 ms. Raises ValueError naming the expected form."""
    if isinstance(value, str) and _DURATION.match(value.strip()):
        return sum(int(n) * _UNITS_MS[unit] for n, unit in _PART.findall(value))
    raise ValueError(f"must be a duration like '30m', '1h' or '7d', got {value!r}")


def format_duration(ms: int) -> str:
    for unit in ("d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


DurationMs = Annotated[int, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class FrequencyCap(_Section):
    max_actions: int = Field(default=3, ge=0)
    per: DurationMs = Field(default=parse_duration("7d"), gt=0)
    reserve_for_basket: int = Field(
        default=1,
        ge=0,
        description="the last slots of a user's effective cap a similar item may not take "
        "(a basket recovery may); at most the effective cap minus one",
    )


class DefaultConsent(_Section):
    basket_recovery: bool = True
    similar_item: bool = True


class StateLimits(_Section):
    """How much one user's state may hold (SPEC section 8, bounded state): one user id
    shared by many people ("guest") or a hostile producer must never grow a state record
    past what the changelog can take. Each collection keeps its newest entries; what
    evicting the oldest means for the rules is in the README ("State limits")."""

    purchased_items: int = Field(default=200, ge=1, description="items bought")
    ruled_out_items: int = Field(default=100, ge=1, description="items removed or reviewed <= 2")
    visited_destinations: int = Field(default=50, ge=1)
    owned_one_off_categories: int = Field(default=50, ge=1)
    recent_actions: int = Field(
        default=20,
        ge=1,
        description="actions remembered for the frequency cap and dedupe, and attribution "
        "windows open; at least frequency_cap.max_actions",
    )
    basket_items: int = Field(default=20, ge=1, description="lines of the current basket")
    similar_seeds: int = Field(
        default=20, ge=1, description="seeds of the pending similar-item message"
    )
    held_events: int = Field(
        default=100, ge=1, description="events held in the user's reorder buffer"
    )
    held_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="encoded size of the events held in the user's reorder buffer",
    )


class Policy(_Section):
    abandon_after: DurationMs = Field(default=parse_duration("1h"), gt=0)
    grace: DurationMs = Field(default=parse_duration("5m"), ge=0)
    similar_after: DurationMs = Field(
        default=parse_duration("1d"),
        ge=0,
        description="a similar-item message is due this long after its first seed",
    )
    session_gap: DurationMs = Field(default=parse_duration("30m"), gt=0)
    max_basket_reminders: int = Field(default=1, ge=0)
    frequency_cap: FrequencyCap = FrequencyCap()
    dedupe_window: DurationMs = Field(default=parse_duration("30d"), ge=0)
    max_similar_items: int = Field(default=3, ge=1, le=50)
    max_data_dimensions: int = Field(default=3, ge=0)
    candidates_examined: int = Field(
        default=30,
        ge=1,
        description="similar-item candidates looked at, in rank order, before giving up; "
        "keeps the work and the decision's `excluded` map bounded",
    )
    default_consent: DefaultConsent = DefaultConsent()
    clock: Literal["hybrid", "event"] | None = Field(
        default=None, description="None: hybrid in the worker, event in replay"
    )
    idle_timeout: DurationMs = Field(default=parse_duration("30s"), gt=0)
    max_future_skew: DurationMs = Field(
        default=parse_duration("1h"),
        gt=0,
        description="events further ahead than this are refused (future_timestamp): one bad "
        "clock must not move stream time forward and fire everyone's deadlines",
    )
    holdout_percent: float = Field(
        default=0.0, ge=0, le=100, description="share of users whose actions are held out"
    )
    holdout_salt: str = Field(
        default="retarget-suppressor", min_length=1, description="change it to redraw the split"
    )
    attribution_window: DurationMs = Field(default=parse_duration("7d"), gt=0)
    state_limits: StateLimits = StateLimits()

    @model_validator(mode="after")
    def _cap_fits_the_memory(self) -> Policy:
        if self.state_limits.recent_actions < self.frequency_cap.max_actions:
            raise ValueError(
                "state_limits.recent_actions must be at least frequency_cap.max_actions "
                f"({self.frequency_cap.max_actions}), got {self.state_limits.recent_actions}: "
                "the cap counts the actions a user's state remembers"
            )
        return self

    @property
    def version(self) -> str:
        """A short hash of the effective policy (every field, defaults included)."""
        canonical = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def describe(self) -> dict[str, Any]:
        data = self.model_dump()
        durations = (
            "abandon_after",
            "grace",
            "similar_after",
            "session_gap",
            "dedupe_window",
            "idle_timeout",
        )
        for key in (*durations, "attribution_window", "max_future_skew"):
            data[key] = format_duration(data[key])
        data["frequency_cap"]["per"] = format_duration(data["frequency_cap"]["per"])
        return data


def policy_from_mapping(data: dict[str, Any], origin: str = "policy") -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_explain(error, origin)) from None


def load_policy(path: str | Path | None) -> Policy:
    """The policy in the TOML file at `path`, or the defaults when path is None."""
    if path is None:
        return Policy()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InputFileError(f"{path}: cannot read the policy file: {error.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    return policy_from_mapping(data, origin=str(path))


def _explain(error: ValidationError, origin: str) -> str:
    lines = []
    for problem in error.errors(include_url=False):
        field = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if not field:  # a rule across fields: its message names them
            lines.append(f"{origin}: {message}")
            continue
        if problem["type"] == "extra_forbidden":
            message = "is not a policy setting (check the spelling; see README 'Policy')"
        elif "got" not in message:
            message = f"{message}, got {problem.get('input')!r}"
        lines.append(f"{origin}: {field} {message}")
    return "\n".join(lines)
