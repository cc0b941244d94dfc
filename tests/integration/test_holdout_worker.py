"""Issue 7: the worker's holdout and attribution counters agree with the replay report.

The demo stream (examples/events.jsonl + examples/catalog.jsonl) under the holdout
policy (examples/policy-holdout.toml, with ``clock = "event"`` and a short idle
timeout as in tests/integration/test_worker.py) goes through a real worker and
through ``suppressor.core.replay.run.replay`` in process. Both get the same sentinel
consents (one per partition) that move stream time past every attribution window,
so every window the input opens is closed on both sides. Then:

- the worker's ``/metrics`` counters ``suppressor_measured_actions_total{kind,group}``
  and ``suppressor_conversions_total{kind,group,converted}`` equal replay's Tally, and
  the rates of ``suppressor.core.replay.report.lifts`` computed from the counters are the
  report's;
- the conversions topic holds one record per closed window, with replay's
  conversion ids and records.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from suppressor.core.codec import conversion_record
from suppressor.core.engine import Engine
from suppressor.core.policy import load_policy
from suppressor.core.replay.files import load_catalog, numbered_lines
from suppressor.core.replay.report import KINDS, lifts
from suppressor.core.replay.run import CollectingSink, replay
from suppressor.core.tally import Tally
from tests.integration.worker_helpers import (
    REPO,
    TEST_POLICY,
    Deployment,
    WorkerProcess,
    last_ts,
    rfc3339,
    sentinel_users,
)

EXAMPLES = REPO / "examples"
GROUPS = ("treated", "holdout")
WINDOWS_CLOSED = timedelta(days=9)
"""Sentinel time after the last event: past every basket deadline (abandon_after + grace,
well under 2 days) plus the attribution window (7 days) plus its grace."""


def sentinel_lines(deployment: Deployment, ts: str) -> list[bytes]:
    """The consents ``Deployment.feed_sentinels`` sends, for replay's input."""
    return [
        json.dumps(
            {"event_id": f"sentinel-{user}", "type": "consent", "user_id": user, "ts": ts}
        ).encode()
        for user in sentinel_users(deployment.topology)
    ]


def replay_demo(
    deployment: Deployment, events: Path, catalog_path: Path, sentinels: list[bytes]
) -> tuple[Tally, list[dict[str, Any]]]:
    """Replay's tally and conversion records for the events followed by the sentinels."""
    policy = load_policy(deployment.policy_path)
    catalog, bad = load_catalog(str(catalog_path))
    assert not bad, bad

    def lines() -> Iterator[tuple[int, bytes]]:
        with events.open("rb") as handle:
            numbered = list(numbered_lines(handle))
        yield from numbered
        last = numbered[-1][0] if numbered else 0
        for offset, line in enumerate(sentinels, start=1):
            yield last + offset, line

    sink = CollectingSink()
    tally = replay(lines(), policy, catalog, sink, source_name=str(events))
    version = Engine(policy, catalog).policy_version
    records = [
        conversion_record(conversion, version)
        for out in sink.outputs
        for conversion in out.conversions
    ]
    return tally, records


# --- the worker's /metrics ----------------------------------------------------------------


def scrape(worker: WorkerProcess) -> dict[str, Counter[tuple[str, ...]]]:
    """measured actions by (kind, group), conversions by (kind, group, converted)."""
    url = f"http://127.0.0.1:{worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    found: dict[str, Counter[tuple[str, ...]]] = {"measured": Counter(), "conversions": Counter()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "suppressor_measured_actions_total":
                found["measured"][labels["kind"], labels["group"]] += int(sample.value)
            elif sample.name == "suppressor_conversions_total":
                key = (labels["kind"], labels["group"], labels["converted"])
                found["conversions"][key] += int(sample.value)
    return found


def expected_counters(tally: Tally) -> dict[str, Counter[tuple[str, ...]]]:
    """Replay's tally in the counters' labels (every series, zeros included)."""
    measured: Counter[tuple[str, ...]] = Counter()
    conversions: Counter[tuple[str, ...]] = Counter()
    for kind in KINDS:
        measured[kind, "treated"] = tally.actions[kind]
        measured[kind, "holdout"] = tally.suppressed[kind, "holdout"]
        for group in GROUPS:
            for converted in (True, False):
                label = "true" if converted else "false"
                conversions[kind, group, label] = tally.conversions[kind, group, converted]
    return {"measured": measured, "conversions": conversions}


def wait_for_counters(
    worker: WorkerProcess, expected: dict[str, Counter[tuple[str, ...]]], timeout_s: float
) -> dict[str, Counter[tuple[str, ...]]]:
    """The scraped counters once they equal ``expected`` and stay so (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    found = scrape(worker)
    while time.monotonic() < deadline:
        worker.assert_alive()
        found = scrape(worker)
        if found == expected:
            time.sleep(3.0)  # nothing more arrives afterwards
            return scrape(worker)
        time.sleep(0.5)
    return found


def lifts_from_counters(
    found: dict[str, Counter[tuple[str, ...]]],
) -> dict[str, tuple[int, int, int, int]]:
    """The report's counts (treated windows, converted, holdout windows, converted)."""
    conv = found["conversions"]
    table = {}
    for kind in KINDS:
        t_yes, h_yes = conv[kind, "treated", "true"], conv[kind, "holdout", "true"]
        t_all = t_yes + conv[kind, "treated", "false"]
        h_all = h_yes + conv[kind, "holdout", "false"]
        table[kind] = (t_all, t_yes, h_all, h_yes)
    return table


# --- the test -------------------------------------------------------------------------------


def test_worker_counters_and_conversions_agree_with_the_replay_report(
    kafka_bootstrap: str, unique_topic_prefix: str, tmp_path: Path
) -> None:
    policy_text = TEST_POLICY + (EXAMPLES / "policy-holdout.toml").read_text()
    deployment = Deployment(kafka_bootstrap, unique_topic_prefix, tmp_path, policy_text=policy_text)
    events, catalog = EXAMPLES / "events.jsonl", EXAMPLES / "catalog.jsonl"
    until = rfc3339(last_ts(events) + WINDOWS_CLOSED)
    sentinels = sentinel_lines(deployment, until)

    tally, expected_records = replay_demo(deployment, events, catalog, sentinels)
    expected = expected_counters(tally)
    for kind in KINDS:  # the demo stream exercises both groups
        assert expected["measured"][kind, "treated"] + expected["measured"][kind, "holdout"], kind
    assert sum(v for (_, g), v in expected["measured"].items() if g == "holdout"), expected
    assert expected_records, "the demo stream closes attribution windows"
    assert len(expected_records) == sum(tally.conversions.values())
    measured_total = sum(expected["measured"].values())
    assert len(expected_records) == measured_total, "every measured action's window closed"

    deployment.feed_catalog(catalog)
    deployment.feed_events(events.read_bytes().splitlines())
    deployment.feed_events(sentinels)  # the same lines as Deployment.feed_sentinels(until)
    worker = WorkerProcess(deployment, "holdout").start()
    try:
        worker.wait_healthy()
        found = wait_for_counters(worker, expected, timeout_s=180)
        assert found["measured"] == expected["measured"], (
            f"measured actions: worker {dict(found['measured'])} "
            f"!= replay {dict(expected['measured'])}"
        )
        assert found["conversions"] == expected["conversions"], (
            f"conversions: worker {dict(found['conversions'])} "
            f"!= replay {dict(expected['conversions'])}"
        )
        report = lifts(tally)
        counted = lifts_from_counters(found)
        for kind in KINDS:
            t_all, t_yes, h_all, h_yes, result = report[kind]
            assert counted[kind] == (t_all, t_yes, h_all, h_yes), kind
            assert result.treated_rate == (t_yes / t_all if t_all else None), kind
            assert result.holdout_rate == (h_yes / h_all if h_all else None), kind

        records = [
            record.json()
            for record in deployment.read(
                deployment.topology.conversions, at_least=len(expected_records)
            )
        ]
        ids = Counter(record["conversion_id"] for record in records)
        duplicates = {cid: n for cid, n in ids.items() if n > 1}
        assert not duplicates, f"conversion records more than once: {duplicates}"
        expected_by_id = {record["conversion_id"]: record for record in expected_records}
        assert len(expected_by_id) == len(expected_records), "replay's ids are unique"
        actual_by_id = {record["conversion_id"]: record for record in records}
        missing = sorted(expected_by_id.keys() - actual_by_id.keys())
        extra = sorted(actual_by_id.keys() - expected_by_id.keys())
        assert not missing and not extra, f"missing {missing}, extra {extra}"
        assert actual_by_id == expected_by_id
        worker.assert_alive()
    finally:
        assert worker.stop() == 0
