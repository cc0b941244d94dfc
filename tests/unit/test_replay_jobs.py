"""`replay --jobs N` writes the very bytes of one process (suppressor.core.replay.parallel):
on hypothesis histories with late events, forgets, bad lines and deadlines of users run by
different jobs, and on the REES46 conversion."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suppressor.core.catalog import Catalog
from suppressor.core.datasets import rees46
from suppressor.core.model import Event
from suppressor.core.policy import Policy
from suppressor.core.replay.files import load_catalog, numbered_lines
from suppressor.core.replay.parallel import job_of, replay_parallel
from suppressor.core.replay.run import FileSink, replay
from suppressor.core.tally import Tally
from tests.unit.conftest import BASE_MS, DAY, jsonl, wire
from tests.unit.test_properties import (
    CATALOG,
    NONZERO_GRACE,
    POLICIES,
    arrival_order,
    merged,
    user_history,
)

NOW = BASE_MS + 400 * DAY
SPLIT = [0, 2, 2, 2, 2]
FILES = ("actions", "decisions", "conversions", "dlq")


def sink() -> FileSink:
    return FileSink(io.BytesIO(), io.BytesIO(), io.BytesIO(), io.BytesIO())


def outputs(sink_: FileSink) -> dict[str, bytes]:
    return {name: getattr(sink_, name).getvalue() for name in FILES}


def one_and_many(
    path: Path, policy: Policy, catalog: Catalog, jobs: int, until: int | None
) -> tuple[dict[str, bytes], Tally, dict[str, bytes], Tally]:
    single = sink()
    with path.open("rb") as handle:
        tally_1 = replay(
            numbered_lines(handle), policy, catalog, single, source_name=str(path),
            until=until, now_ms=NOW,
        )  # fmt: skip
    many = sink()
    tally_n = replay_parallel(str(path), policy, catalog, many, jobs=jobs, until=until, now_ms=NOW)
    return outputs(single), tally_1, outputs(many), tally_n


BAD_LINES = [
    b"not json",
    b'{"event_id":"x","type":"teleport","user_id":"u0","ts":"2019-10-01T00:00:00Z"}',
    b'{"event_id":"y","type":"browse","user_id":"u1","ts":"9999-01-01T00:00:00Z","item_id":"a"}',
    b"",
]


@st.composite
def history_file(draw: st.DrawFn) -> tuple[bytes, Policy, int | None]:
    users = draw(st.integers(2, 7))
    per_user: list[list[Event]] = [draw(user_history(f"u{i}", max_size=12)) for i in range(users)]
    events = merged(per_user, draw(st.lists(st.integers(0, 9), min_size=1, max_size=5)))
    delays = draw(st.lists(st.sampled_from([0, 0, 0, 60_000, 600_000, 3_600_000]), min_size=1))
    lines = [json.dumps(wire(e)).encode() for e in arrival_order(events, delays)]
    for bad in draw(st.lists(st.sampled_from(BAD_LINES), max_size=3)):
        lines.insert(draw(st.integers(0, len(lines))), bad)
    policy = draw(st.sampled_from(POLICIES + NONZERO_GRACE))
    until = draw(st.none() | st.integers(0, 3 * DAY).map(lambda d: BASE_MS + d))
    return b"\n".join(lines) + b"\n", policy, until


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(history_file(), st.sampled_from([2, 3, 5]))
def test_jobs_write_the_bytes_of_one_process(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[bytes, Policy, int | None], jobs: int
) -> None:
    data, policy, until = case
    path = tmp_path_factory.mktemp("jobs") / "events.jsonl"
    path.write_bytes(data)
    single, tally_1, many, tally_n = one_and_many(path, policy, CATALOG, jobs, until)
    assert many == single
    assert tally_n == tally_1


def test_users_are_split_by_a_stable_hash() -> None:
    """crc32 of the UTF-8 id: the same split in every process and Python version."""
    assert [job_of(user, 3) for user in ("anna", "ben", "cara", "u0", "u1")] == SPLIT
    assert {job_of(f"u{i}", 3) for i in range(30)} == {0, 1, 2}


@pytest.mark.parametrize("cosmetics", [False, True])
def test_jobs_on_the_rees46_conversion(tmp_path: Path, cosmetics: bool) -> None:
    files, items = rees46.default_paths(rees46.default_data_dir(), cosmetics=cosmetics)
    rees46.write(rees46.convert(files, catalog_csv=items), tmp_path)
    catalog, _ = load_catalog(str(tmp_path / "catalog.jsonl"))
    until = BASE_MS + 2000 * DAY
    single, tally_1, many, tally_n = one_and_many(
        tmp_path / "events.jsonl", Policy(), catalog, 3, until
    )
    assert single["actions"] and single["decisions"]
    assert many == single
    assert tally_n == tally_1


def test_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(jsonl([]).encode())
    single, tally_1, many, tally_n = one_and_many(path, Policy(), CATALOG, 3, None)
    assert many == single and tally_n == tally_1
