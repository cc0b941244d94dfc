"""A worker of today restarted on state written by the previous code keeps every user
(issue 19): a version 1 state is a valid version 2 state with no pending similar item."""

from __future__ import annotations

import json
import time
from pathlib import Path

from suppressor.adapters.admin import ensure_topics
from suppressor.adapters.feed import producer
from tests.integration.worker_helpers import REPO, TEST_POLICY, Deployment, WorkerProcess

V1_CHANGELOG = REPO / "tests" / "data" / "changelog-v1.jsonl"


def test_a_worker_restarted_on_version_1_state_keeps_every_user(
    kafka_bootstrap: str, unique_topic_prefix: str, tmp_path: Path
) -> None:
    policy = TEST_POLICY + (REPO / "examples" / "policy.toml").read_text()
    deployment = Deployment(kafka_bootstrap, unique_topic_prefix, tmp_path, policy_text=policy)
    topology = deployment.topology
    assert topology.partitions == 3  # as when the changelog was written
    ensure_topics(kafka_bootstrap, topology.internal_topic_specs())
    records = [json.loads(line) for line in V1_CHANGELOG.read_text().splitlines()]
    users = {r["key"] for r in records if r["topic"] == "users" and r["value"] is not None}
    assert all(json.loads(r["value"])["v"] == 1 for r in records if r["topic"] == "users")
    kafka = producer(kafka_bootstrap)
    for record in records:
        value = None if record["value"] is None else record["value"].encode()
        kafka.send(
            topology.changelog(record["topic"]),
            value,
            key=record["key"].encode(),
            partition=record["partition"],
        )
    kafka.flush()
    kafka.close()
    deployment.feed_catalog(REPO / "examples" / "catalog.jsonl")
    worker = WorkerProcess(deployment, "v2").start()
    try:
        worker.wait_healthy()
        deadline = time.monotonic() + 60
        while worker.metric("suppressor_users") < len(users) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert worker.metric("suppressor_users") == len(users) == 10
        assert worker.metric("suppressor_unreadable_states_total") == 0
        # what the restored states know decides the new events: anna bought the shredder
        # (already_purchased) and owns a one-off shredder (one_off_owned); dan ruled the
        # sandals out; cara's browse of Amsterdam, held when the old worker stopped, is
        # still applied, as past_destination
        new = [
            {"event_id": "v2-1", "type": "browse", "user_id": "anna", "item_id": "shredder-basic",
             "ts": "2025-03-04T12:00:00Z"},
            {"event_id": "v2-2", "type": "browse", "user_id": "anna", "item_id": "shredder-pro",
             "ts": "2025-03-04T12:01:00Z"},
            {"event_id": "v2-3", "type": "browse", "user_id": "dan", "item_id": "sandals-tan",
             "ts": "2025-03-04T12:02:00Z"},
        ]  # fmt: skip
        deployment.feed_events([json.dumps(e).encode() for e in new])
        deployment.feed_sentinels("2025-03-05T00:00:00Z")
        decisions = [
            r.json() for r in deployment.read(topology.decisions, at_least=8, timeout_s=120)
        ]
        product_ads = {
            (d["user_id"], tuple(d["items"])): d["reason"]
            for d in decisions
            if d["trigger"] == "product_ad"
        }
        assert product_ads[("anna", ("shredder-basic",))] == "already_purchased"
        assert product_ads[("anna", ("shredder-pro",))] == "one_off_owned"
        assert product_ads[("dan", ("sandals-tan",))] == "ruled_out"
        assert product_ads[("cara", ("trip-amsterdam",))] == "past_destination"
        worker.assert_alive()
    finally:
        assert worker.stop() == 0
