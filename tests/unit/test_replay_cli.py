"""`suppressor replay` as a data engineer runs it (SPEC section 7), on temporary files."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import get_args

import pytest

from suppressor.entrypoints.cli import main
from suppressor.wire import outputs
from suppressor.wire.timefmt import parse_rfc3339
from tests.unit.conftest import (
    add,
    browse,
    catalog_jsonl,
    iso,
    jsonl,
    purchase,
    remove,
    review,
    shop_items,
    wire,
)

REPO = Path(__file__).resolve().parents[2]
UNTIL = iso(3 * 24 * 60)  # past the similar items (due a day after their seeds)


def history() -> list:
    return [
        browse("shredder-1", ts=0, eid="h01"),
        add("shredder-1", ts=1, eid="h02"),
        purchase("shredder-1", ts=2, eid="h03"),
        add("dress-1", user="u2", ts=3, eid="h04"),
        add("shoes-1", user="u2", ts=4, eid="h05"),
        remove("shoes-1", user="u2", ts=5, eid="h06"),
        purchase("ams", user="u3", ts=6, eid="h07"),
        review("shoes-1", 5, user="u4", ts=7, eid="h08"),
        browse("shredder-2", ts=100, eid="h09"),
    ]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "events.jsonl").write_text(jsonl(history()), encoding="utf-8")
    (tmp_path / "catalog.jsonl").write_text(catalog_jsonl(shop_items()), encoding="utf-8")
    (tmp_path / "strict.toml").write_text(
        "max_data_dimensions = 0\n[frequency_cap]\nmax_actions = 1\n", encoding="utf-8"
    )
    return tmp_path


def replay_args(files: Path, *extra: str, events: str | None = None) -> list[str]:
    return [
        "replay",
        events or str(files / "events.jsonl"),
        "--catalog",
        str(files / "catalog.jsonl"),
        *extra,
    ]


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- outputs ------------------------------------------------------------------------------------


def test_actions_go_to_stdout_when_no_actions_file_is_given(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(replay_args(files, "--until", UNTIL)) == 0
    captured = capsys.readouterr()
    actions = [json.loads(line) for line in captured.out.splitlines()]
    assert {a["kind"] for a in actions} == {"similar_item", "basket_recovery"}
    assert [a["user_id"] for a in actions if a["kind"] == "basket_recovery"] == ["u2"]
    for action in actions:
        outputs.Action.model_validate(action)
    assert captured.err.startswith("replay: events: 9 ")
    assert "dlq: 0" in captured.err


def test_actions_decisions_and_dead_letters_go_to_their_files(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = files / "out"
    out.mkdir()
    args = ["--actions", str(out / "a.jsonl"), "--decisions", str(out / "d.jsonl")]
    assert main(replay_args(files, *args, "--dlq", str(out / "q.jsonl"), "--until", UNTIL)) == 0
    assert capsys.readouterr().out == ""
    actions, decisions = lines_of(out / "a.jsonl"), lines_of(out / "d.jsonl")
    assert actions and decisions
    for decision in decisions:
        outputs.Decision.model_validate(decision)
    emitted = {d["action_id"] for d in decisions if d["outcome"] == "emitted"}
    assert emitted == {a["action_id"] for a in actions}
    assert (out / "q.jsonl").read_text() == ""


def test_two_runs_give_byte_identical_outputs(files: Path) -> None:
    produced = []
    for run in ("first", "second"):
        out = files / run
        out.mkdir()
        args = ["--actions", str(out / "a"), "--decisions", str(out / "d"), "--dlq", str(out / "q")]
        assert main(replay_args(files, *args, "--until", UNTIL, "--quiet")) == 0
        produced.append([(out / name).read_bytes() for name in "adq"])
    assert produced[0] == produced[1]
    assert produced[0][0] and produced[0][1]


def test_until_fires_the_deadlines_left_at_the_end_of_input(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = files / "short.jsonl"
    events.write_text(jsonl([add("bin-1", ts=0, eid="s1"), browse("x", ts=10, eid="s2")]))
    assert main(replay_args(files, "--quiet", events=str(events))) == 0
    assert capsys.readouterr().out == ""  # the deadline (1:00) is after the last event
    assert main(replay_args(files, "--quiet", "--until", iso(65), events=str(events))) == 0
    assert capsys.readouterr().out == ""  # stream time reaches 1:05 but must pass it
    assert main(replay_args(files, "--quiet", "--until", iso(65.5), events=str(events))) == 0
    [action] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (action["kind"], action["ts"]) == ("basket_recovery", iso(60))


def test_the_summary_can_be_silenced(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(replay_args(files, "--quiet")) == 0
    assert capsys.readouterr().err == ""


# --- bad input lines --------------------------------------------------------------------------


def test_bad_lines_go_to_the_dlq_with_line_numbers_and_the_run_goes_on(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = jsonl(history()).splitlines()
    bad = [
        "not json",
        json.dumps({**wire(browse("x", eid="b1")), "type": "click"}),
        json.dumps({**wire(browse("x", eid="b2")), "ts": "2025-01-01 00:00:00"}),
        "[1, 2, 3]",
    ]
    mixed = [good[0], bad[0], good[1], "", bad[1], good[2], bad[2], *good[3:], bad[3]]
    events = files / "mixed.jsonl"
    events.write_bytes(("\n".join(mixed) + "\n").encode() + b"\xff\xfe broken\n")
    dlq = files / "dlq.jsonl"
    code = main(replay_args(files, "--dlq", str(dlq), "--until", UNTIL, events=str(events)))
    assert code == 0
    letters = lines_of(dlq)
    assert [(d["source"]["line"], d["error_code"]) for d in letters] == [
        (2, "not_json"),
        (5, "unknown_type"),
        (7, "bad_timestamp"),
        (14, "not_object"),
        (15, "not_utf8"),
    ]
    for letter in letters:
        outputs.DeadLetter.model_validate(letter)
        assert letter["source"]["file"] == str(events)
    assert letters[0]["original"] == "not json"
    assert letters[-1]["encoding"] == "base64"
    captured = capsys.readouterr()
    with_bad = captured.out
    assert main(replay_args(files, "--until", UNTIL, "--quiet")) == 0
    assert with_bad == capsys.readouterr().out  # the good lines around gave the same actions
    assert "dlq: 5" in captured.err


def test_bad_catalog_lines_go_to_the_dlq_and_the_rest_loads(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = files / "catalog.jsonl"
    catalog.write_text(catalog.read_text() + '{"item_id": 5}\nnope\n', encoding="utf-8")
    dlq = files / "dlq.jsonl"
    assert main(replay_args(files, "--dlq", str(dlq), "--until", UNTIL)) == 0
    assert [d["error_code"] for d in lines_of(dlq)] == ["bad_catalog_item"] * 2
    assert capsys.readouterr().out.count("similar_item") >= 2


# --- unusable arguments and files: exit status 2 with a clear message -------------------------


def test_a_missing_events_file_exits_2(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(replay_args(files, events=str(files / "nope.jsonl"))) == 2
    err = capsys.readouterr().err
    assert "nope.jsonl" in err and "cannot open" in err


def test_a_missing_catalog_file_exits_2(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(files / "events.jsonl"), "--catalog", str(files / "no.jsonl")]) == 2
    assert "no.jsonl" in capsys.readouterr().err


def test_a_bad_until_exits_2(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(replay_args(files, "--until", "tomorrow"))
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "--until" in err and "RFC 3339" in err


def test_an_until_without_offset_exits_2(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(replay_args(files, "--until", "2025-01-02T00:00:00"))
    assert raised.value.code == 2
    assert "timezone offset" in capsys.readouterr().err


def test_an_invalid_policy_exits_2_naming_the_field(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = files / "bad.toml"
    policy.write_text('grace = "soon"\n', encoding="utf-8")
    assert main(replay_args(files, "--policy", str(policy))) == 2
    captured = capsys.readouterr()
    assert "bad.toml: grace must be a duration" in captured.err
    assert captured.out == ""


def test_an_unknown_policy_key_exits_2(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = files / "typo.toml"
    policy.write_text("[frequency_cap]\nmax_action = 3\n", encoding="utf-8")
    assert main(replay_args(files, "--policy", str(policy))) == 2
    assert "frequency_cap.max_action is not a policy setting" in capsys.readouterr().err


def test_a_missing_policy_file_exits_2(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(replay_args(files, "--policy", str(files / "none.toml"))) == 2
    assert "none.toml" in capsys.readouterr().err


def test_an_unwritable_output_exits_2(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(replay_args(files, "--actions", str(files / "no-dir" / "a.jsonl"))) == 2
    assert "cannot write" in capsys.readouterr().err


# --- what-if -----------------------------------------------------------------------------------


def test_compare_prints_the_table_and_writes_the_differing_users(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    diff = files / "diff.jsonl"
    args = ["--compare", str(files / "strict.toml"), "--diff", str(diff), "--until", UNTIL]
    assert main(replay_args(files, *args)) == 0
    table = capsys.readouterr().out
    rows = {tuple(line.split()[:2]): line.split()[-3:] for line in table.splitlines()[1:] if line}
    assert rows[("similar_item", "emitted")] == ["2", "0", "-2"]
    assert rows[("basket_recovery", "emitted")] == ["1", "0", "-1"]
    assert ("browse_nudge", "suppressed:") in rows
    assert "users whose actions differ: 3" in table
    differing = lines_of(diff)
    assert [d["user_id"] for d in differing] == ["u1", "u2", "u3"]
    assert all(d["only_a"] and not d["only_b"] for d in differing)


def test_compare_sends_nothing(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    actions = files / "actions.jsonl"
    args = ["--compare", str(files / "strict.toml"), "--actions", str(actions)]
    assert main(replay_args(files, *args)) == 0
    assert not actions.exists() or actions.read_text() == ""
    assert '"action_id"' not in capsys.readouterr().out


def test_compare_a_policy_with_itself_finds_no_difference(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strict = str(files / "strict.toml")
    assert main(replay_args(files, "--policy", strict, "--compare", strict)) == 0
    assert "users whose actions differ: 0" in capsys.readouterr().out


# --- stdin --------------------------------------------------------------------------------------


def stdin_with(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_events_can_come_from_stdin(
    files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(replay_args(files, "--until", UNTIL, "--quiet")) == 0
    from_file = capsys.readouterr().out
    stdin_with(monkeypatch, (files / "events.jsonl").read_bytes())
    assert main(replay_args(files, "--until", UNTIL, "--quiet", events="-")) == 0
    assert capsys.readouterr().out == from_file


def test_compare_reads_stdin_once(
    files: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stdin_with(monkeypatch, (files / "events.jsonl").read_bytes())
    args = ["--compare", str(files / "strict.toml"), "--until", UNTIL]
    assert main(replay_args(files, *args, events="-")) == 0
    assert "users whose actions differ: 3" in capsys.readouterr().out


# --- the demo data set --------------------------------------------------------------------------


def test_the_demo_data_set_shows_every_trigger_and_reason_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under the demo policy and the README's what-if ones (strict, holdout), together."""
    records = []
    for policy in ("policy.toml", "policy-strict.toml", "policy-holdout.toml"):
        decisions = tmp_path / f"{policy}.decisions.jsonl"
        args = [
            "replay",
            str(REPO / "examples" / "events.jsonl"),
            "--catalog",
            str(REPO / "examples" / "catalog.jsonl"),
            "--policy",
            str(REPO / "examples" / policy),
            "--decisions",
            str(decisions),
            "--until",
            "2030-01-01T00:00:00Z",
            "--quiet",
        ]
        assert main(args) == 0
        records += lines_of(decisions)
    reasons = {r["reason"] for r in records} | {x for r in records for x in r["excluded"].values()}
    assert {r["trigger"] for r in records} == {
        "browse_nudge",
        "product_ad",
        "similar_item",
        "basket_recovery",
    }
    assert reasons - {None} == set(get_args(outputs.ReasonCode))
    assert capsys.readouterr().out  # actions on stdout


# --- known gap ----------------------------------------------------------------------------------


EDGE_TIMESTAMPS = ["9999-12-31T23:59:59-10:00", "0001-01-01T00:00:00+10:00"]


@pytest.mark.parametrize("ts", EDGE_TIMESTAMPS)
def test_a_timestamp_at_the_edge_of_the_calendar_cannot_crash_the_replay(
    files: Path, ts: str
) -> None:
    events = files / "far.jsonl"
    record = {**wire(add("bin-1", eid="f1")), "ts": ts}
    events.write_text(json.dumps(record) + "\n", encoding="utf-8")
    args = ["--decisions", str(files / "d.jsonl"), "--dlq", str(files / "q.jsonl"), "--quiet"]
    assert (
        main(replay_args(files, *args, "--until", "9999-12-31T23:59:59Z", events=str(events))) == 0
    )


@pytest.mark.parametrize("ts", EDGE_TIMESTAMPS)
def test_a_timestamp_outside_the_utc_calendar_is_refused_or_written_as_rfc3339(
    files: Path, ts: str
) -> None:
    events = files / "far.jsonl"
    record = {**wire(browse("bin-1", eid="f1")), "ts": ts}
    events.write_text(json.dumps(record) + "\n", encoding="utf-8")
    decisions, dlq = files / "d.jsonl", files / "q.jsonl"
    args = ["--decisions", str(decisions), "--dlq", str(dlq), "--quiet"]
    assert main(replay_args(files, *args, events=str(events))) == 0
    refused = [d["error_code"] for d in lines_of(dlq)] == ["bad_timestamp"]
    for decision in lines_of(decisions):
        parse_rfc3339(decision["ts"])
    assert refused or lines_of(decisions)
