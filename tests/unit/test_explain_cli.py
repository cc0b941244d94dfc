"""`suppressor explain` offline (from files) and its refusals; from a running worker it is
tested against real workers in tests/integration/test_admin_path.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suppressor.entrypoints.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILES = [
    "--events", str(EXAMPLES / "events.jsonl"),
    "--catalog", str(EXAMPLES / "catalog.jsonl"),
    "--policy", str(EXAMPLES / "policy.toml"),
    "--until", "2025-03-10T00:00:00Z",
]  # fmt: skip


def test_offline_the_person_and_their_decisions_in_plain_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["explain", "anna", *FILES]) == 0
    out = capsys.readouterr().out
    assert out.startswith("What we hold about anna\n")
    assert "customer (has bought something)" in out
    assert "an ad for shredder-basic: not sent: bought on 3 March 2025" in out
    assert "an ad for shredder-pro: not sent: already owns one of this kind" in out
    assert "left out shredder-basic: the item the suggestions start from" in out
    assert "anna@example.com" not in out and "Anna Example" not in out  # dropped at parse


def test_offline_json_export_is_the_worker_answer_plus_the_decisions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["explain", "anna", *FILES, "--json"]) == 0
    export = json.loads(capsys.readouterr().out)
    assert export["user_id"] == "anna" and export["state_held"] is True
    assert export["purchased_items"] == ["shredder-basic"]
    assert export["stream_time"] == "2025-03-10T00:00:00Z"
    reasons = [(d["trigger"], d["reason"]) for d in export["decisions"]]
    assert ("product_ad", "already_purchased") in reasons
    assert all(d["words"] for d in export["decisions"])


def test_offline_someone_never_seen_has_no_state(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "nobody", *FILES]) == 0
    out = capsys.readouterr().out
    assert "none held: never seen, or erased at the person's request" in out
    assert "Decisions about nobody (0)" in out


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--events", str(EXAMPLES / "events.jsonl")], "explain --events needs --catalog FILE"),
        ([*FILES, "--token-file", "t"], "--token-file goes with --worker"),
        (["--worker", "http://127.0.0.1:9", "--until", "2025-01-01T00:00:00Z"],
         "--catalog, --policy and --until go with --events"),
        (["--worker", "http://127.0.0.1:9"], "needs the worker's admin token"),
    ],
)  # fmt: skip
def test_unusable_arguments_say_what_to_do(
    args: list[str],
    words: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SUPPRESSOR_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("SUPPRESSOR_ADMIN_TOKEN_FILE", raising=False)
    assert main(["explain", "anna", *args]) == 2
    assert words in capsys.readouterr().err


def test_a_worker_that_cannot_be_reached_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUPPRESSOR_ADMIN_TOKEN", "x" * 32)
    assert main(["explain", "anna", "--worker", "127.0.0.1:9"]) == 2
    assert "cannot reach the worker at http://127.0.0.1:9" in capsys.readouterr().err
