"""The fault suite's hostile-input, forged-header and erasure scenarios at CI size (``faults/``).

``make faults`` runs them at full scale (100,000 hostile records) on a broker of its own
and writes RELIABILITY.md; here they run at ``small`` scale on the session's broker, so CI
covers every check of the scenarios (the DLQ, equality with replay, far-future records and
stream time, personal fields, the RocksDB table and changelog after ``forget``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from faults import erasure, headers, hostile
from faults.harness import Context, Outcome


def _context(bootstrap: str, tmp_path: Path, name: str) -> Context:
    workdir = tmp_path / name
    workdir.mkdir()
    return Context(bootstrap, None, workdir, "small", log_sink=print)


def _explain(outcome: Outcome) -> str:
    figures = "\n".join(f"  {label}: {value}" for label, value in outcome.figures.items())
    return "\n".join(outcome.notes) + "\n" + figures


@pytest.mark.timeout(400)
def test_hostile_input_at_small_scale(kafka_bootstrap: str, tmp_path: Path) -> None:
    outcome = hostile.run(_context(kafka_bootstrap, tmp_path, "hostile"))
    assert outcome.passed, _explain(outcome)
    assert outcome.figures["hostile records generated"] >= 2_000


@pytest.mark.timeout(300)
def test_erasure_at_small_scale(kafka_bootstrap: str, tmp_path: Path) -> None:
    outcome = erasure.run(_context(kafka_bootstrap, tmp_path, "erasure"))
    assert outcome.passed, _explain(outcome)


@pytest.mark.timeout(300)
def test_forged_internal_headers_at_small_scale(kafka_bootstrap: str, tmp_path: Path) -> None:
    outcome = headers.run(_context(kafka_bootstrap, tmp_path, "headers"))
    assert outcome.passed, _explain(outcome)
