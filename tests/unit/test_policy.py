"""The policy file (SPEC section 6): defaults, durations, validation, version hash."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from suppressor.core.errors import ConfigError, InputFileError
from suppressor.core.policy import Policy, load_policy, parse_duration, policy_from_mapping
from tests.unit.conftest import DAY, HOUR, MINUTE

REPO = Path(__file__).resolve().parents[2]


def test_the_defaults_are_those_of_spec_section_6() -> None:
    p = Policy()
    assert p.abandon_after == HOUR
    assert p.grace == 5 * MINUTE
    assert p.session_gap == 30 * MINUTE
    assert p.max_basket_reminders == 1
    assert p.frequency_cap.max_actions == 3
    assert p.frequency_cap.per == 7 * DAY
    assert p.dedupe_window == 30 * DAY
    assert p.max_similar_items == 3
    assert p.max_data_dimensions == 3
    assert p.default_consent.basket_recovery is True
    assert p.default_consent.similar_item is True
    assert p.clock is None  # hybrid in the worker, event time in replay
    assert p.idle_timeout == 30_000


def test_describe_writes_durations_back_in_their_short_form() -> None:
    described = Policy().describe()
    assert described["abandon_after"] == "1h"
    assert described["grace"] == "5m"
    assert described["frequency_cap"]["per"] == "7d"
    assert described["dedupe_window"] == "30d"
    assert policy_from_mapping(Policy().describe()) == Policy()


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1h30m", 90 * MINUTE),
        ("7d", 7 * DAY),
        ("90s", 90_000),
        ("30m", 30 * MINUTE),
        ("250ms", 250),
        ("2w", 14 * DAY),
        ("1d12h", 36 * HOUR),
        ("0s", 0),
    ],
)
def test_durations_parse(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("bad", ["weekly", "1 h", "1H", "", "-5m", "5", "m", "1.5h", 5, None, []])
def test_bad_durations_are_refused_naming_the_expected_form(bad: object) -> None:
    with pytest.raises(ValueError, match="duration like '30m', '1h' or '7d'"):
        parse_duration(bad)


def test_durations_set_every_duration_field() -> None:
    p = policy_from_mapping(
        {
            "abandon_after": "2h",
            "grace": "0s",
            "session_gap": "1h30m",
            "dedupe_window": "1d",
            "idle_timeout": "1m",
            "frequency_cap": {"max_actions": 1, "per": "12h"},
        }
    )
    assert (p.abandon_after, p.grace, p.session_gap, p.dedupe_window, p.idle_timeout) == (
        2 * HOUR,
        0,
        90 * MINUTE,
        DAY,
        MINUTE,
    )
    assert (p.frequency_cap.max_actions, p.frequency_cap.per) == (1, 12 * HOUR)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"frequency_cap": {"per": "weekly"}}, "frequency_cap.per"),
        ({"frequency_cap": {"per": "0s"}}, "frequency_cap.per"),
        ({"frequency_cap": {"max_actions": -1}}, "frequency_cap.max_actions"),
        ({"frequency_cap": {"max_actions": "3"}}, "frequency_cap.max_actions"),
        ({"abandon_after": "0s"}, "abandon_after"),
        ({"abandon_after": 3600}, "abandon_after"),
        ({"grace": "-5m"}, "grace"),
        ({"session_gap": "soon"}, "session_gap"),
        ({"dedupe_window": "30 days"}, "dedupe_window"),
        ({"max_basket_reminders": -1}, "max_basket_reminders"),
        ({"max_basket_reminders": "1"}, "max_basket_reminders"),
        ({"max_similar_items": 0}, "max_similar_items"),
        ({"max_data_dimensions": 1.5}, "max_data_dimensions"),
        ({"default_consent": {"similar_item": "yes"}}, "default_consent.similar_item"),
        ({"default_consent": {"basket_recovery": 1}}, "default_consent.basket_recovery"),
        ({"clock": "wall"}, "clock"),
        ({"idle_timeout": "0s"}, "idle_timeout"),
        ({"frequency_cap": "3 per week"}, "frequency_cap"),
    ],
)
def test_invalid_values_are_refused_naming_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as raised:
        policy_from_mapping(data, origin="policy.toml")
    message = str(raised.value)
    assert message.startswith(f"policy.toml: {field} "), message
    assert "got" in message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"frequency_cap": {"max_action": 3}}, "frequency_cap.max_action"),
        ({"default_consent": {"email": True}}, "default_consent.email"),
        ({"grace_period": "5m"}, "grace_period"),
    ],
)
def test_unknown_keys_are_refused(data: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=rf"policy.toml: {field} is not a policy setting"):
        policy_from_mapping(data, origin="policy.toml")


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        policy_from_mapping({"grace": "x", "max_similar_items": 0, "colour": 1}, origin="p")
    lines = str(raised.value).splitlines()
    assert [line.split()[1] for line in lines] == ["grace", "max_similar_items", "colour"]


# --- policy_version -----------------------------------------------------------------------------


def test_policy_version_is_stable_for_the_same_effective_policy() -> None:
    assert Policy().version == Policy().version == policy_from_mapping({}).version
    same = policy_from_mapping({"abandon_after": "60m", "frequency_cap": {"per": "1w"}})
    assert same.version == Policy().version  # written differently, the same policy
    explicit = policy_from_mapping({"grace": "5m", "default_consent": {"similar_item": True}})
    assert explicit.version == Policy().version


@pytest.mark.parametrize(
    "change",
    [
        {"abandon_after": "2h"},
        {"grace": "1m"},
        {"session_gap": "31m"},
        {"max_basket_reminders": 2},
        {"frequency_cap": {"max_actions": 4}},
        {"frequency_cap": {"per": "6d"}},
        {"dedupe_window": "29d"},
        {"max_similar_items": 4},
        {"max_data_dimensions": 2},
        {"default_consent": {"basket_recovery": False}},
        {"default_consent": {"similar_item": False}},
        {"clock": "event"},
        {"idle_timeout": "31s"},
    ],
)
def test_policy_version_changes_when_a_setting_changes(change: dict) -> None:
    changed = policy_from_mapping(change)
    assert changed.version != Policy().version
    assert len(changed.version) == len(Policy().version) >= 8


def test_policy_version_is_the_same_in_another_process() -> None:
    code = "from suppressor.core.policy import Policy; print(Policy().version)"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert other.stdout.strip() == Policy().version


# --- the TOML file ------------------------------------------------------------------------------


def test_load_policy_reads_a_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        'abandon_after = "2h"\nmax_similar_items = 5\n\n'
        '[frequency_cap]\nmax_actions = 1\nper = "1d"\n\n'
        "[default_consent]\nsimilar_item = false\n",
        encoding="utf-8",
    )
    p = load_policy(path)
    assert p.abandon_after == 2 * HOUR
    assert p.max_similar_items == 5
    assert (p.frequency_cap.max_actions, p.frequency_cap.per) == (1, DAY)
    assert p.default_consent.similar_item is False
    assert p.default_consent.basket_recovery is True  # a key left out keeps its default
    assert p.grace == 5 * MINUTE


def test_load_policy_without_a_file_gives_the_defaults() -> None:
    assert load_policy(None) == Policy()


def test_the_example_policy_spells_out_the_defaults() -> None:
    assert load_policy(REPO / "examples" / "policy.toml").version == Policy().version


def test_an_invalid_policy_file_is_refused_naming_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[frequency_cap]\nper = "weekly"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml: frequency_cap\.per must be a duration"):
        load_policy(path)


def test_a_file_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("grace = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.toml: not valid TOML"):
        load_policy(path)


def test_a_missing_policy_file_is_an_input_file_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot read the policy file"):
        load_policy(tmp_path / "nope.toml")
