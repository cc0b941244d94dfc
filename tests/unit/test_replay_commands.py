"""Issue 21 around replay: progress on a terminal only, --summary-json, --version, the
policy from SUPPRESSOR_POLICY, --jobs from the command line, catalog files marking deletes."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from suppressor.core.replay.files import load_catalog
from suppressor.entrypoints.cli import main, package_version

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "examples" / "events.jsonl"
CATALOG = REPO / "examples" / "catalog.jsonl"
UNTIL = "2025-03-08T00:00:00Z"
REPLAY = [sys.executable, "-m", "suppressor.entrypoints.cli", "replay", str(EVENTS)]
REPLAY += ["--catalog", str(CATALOG), "--until", UNTIL, "--actions", os.devnull]


def stderr_on_a_terminal(command: list[str]) -> str:
    """Runs ``command`` with its stderr on a pseudo-terminal; what it wrote there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    try:
        process = subprocess.Popen(command, stderr=slave, stdout=subprocess.DEVNULL)
        os.close(slave)
        chunks = []
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert process.wait(timeout=60) == 0
    finally:
        os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_progress_is_drawn_on_a_terminal(jobs: str) -> None:
    shown = stderr_on_a_terminal([*REPLAY, "--jobs", jobs])
    assert "replay" in shown and "100%" in shown
    assert "B/s" in shown  # the rate (tqdm shows ?B/s before it knows it)
    assert "replay: events: 41" in shown  # and the summary after it


def test_no_progress_in_a_pipe() -> None:
    done = subprocess.run([*REPLAY, "--jobs", "2"], capture_output=True, text=True, check=True)
    assert done.stderr.startswith("replay: events: 41")
    assert "\r" not in done.stderr and "%" not in done.stderr


def test_summary_json(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    args = ["replay", str(EVENTS), "--catalog", str(CATALOG), "--until", UNTIL]
    args += ["--actions", os.devnull, "--quiet", "--summary-json", str(out)]
    assert main(args) == 0
    summary = json.loads(out.read_text())
    assert summary["events"] == 41 and summary["actions"] == 8
    assert summary["dlq_by_code"]["not_json"] == 1
    assert summary["suppressed_by_reason"]["browse_nudge"] == 7
    assert summary["input"] == str(EVENTS) and summary["jobs"] == 1 and summary["seconds"] >= 0


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"suppressor {package_version()}"
    assert package_version() == "0.1.0"


def test_replay_policy_falls_back_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def policy_versions(tag: str) -> set[str]:
        out = tmp_path / f"{tag}.jsonl"
        args = ["replay", str(EVENTS), "--catalog", str(CATALOG), "--until", UNTIL]
        args += ["--actions", os.devnull, "--decisions", str(out), "--quiet"]
        assert main(args) == 0
        return {json.loads(line)["policy_version"] for line in out.read_text().splitlines()}

    defaults = policy_versions("defaults")
    monkeypatch.setenv("SUPPRESSOR_POLICY", str(REPO / "examples" / "policy-strict.toml"))
    strict = policy_versions("strict")
    assert len(strict) == 1 and strict != defaults


def test_jobs_from_the_command_line_write_the_same_files(tmp_path: Path) -> None:
    def files(jobs: str) -> list[bytes]:
        names = [tmp_path / f"{jobs}.{kind}.jsonl" for kind in ("a", "d", "q")]
        args = ["replay", str(EVENTS), "--catalog", str(CATALOG), "--until", UNTIL, "--quiet"]
        args += ["--actions", str(names[0]), "--decisions", str(names[1]), "--dlq", str(names[2])]
        assert main([*args, "--jobs", jobs]) == 0
        return [name.read_bytes() for name in names]

    assert files("1") == files("3")


def test_bad_jobs_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(EVENTS), "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_a_catalog_file_line_can_delete_an_item(tmp_path: Path) -> None:
    lines = CATALOG.read_bytes().splitlines()
    first = json.loads(lines[0])["item_id"]
    path = tmp_path / "catalog.jsonl"
    extra = [
        json.dumps({"item_id": first, "deleted": True}).encode(),
        b'{"item_id": "x", "deleted": "yes"}',
        b'{"deleted": true}',
    ]
    path.write_bytes(b"\n".join([*lines, *extra]) + b"\n")
    catalog, dead = load_catalog(str(path))
    assert catalog.get(first) is None and len(catalog) == len(lines) - 1
    assert [d.error_code for d in dead] == ["bad_catalog_item", "bad_catalog_item"]
