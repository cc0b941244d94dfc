"""The local broker, topic administration and transactions, end to end on a real Kafka."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from suppressor.adapters.admin import (
    TopicMismatch,
    TopicSpec,
    ensure_topics,
    list_topics,
    topic_config,
)


def test_default_topics_have_their_partitions_and_a_compacted_catalog(
    kafka_bootstrap: str, default_topics: dict[str, str], topic_partitions: int
) -> None:
    topics = list_topics(kafka_bootstrap)
    policies = {
        default_name: topic_config(kafka_bootstrap, name)["cleanup.policy"]
        for default_name, name in default_topics.items()
    }

    assert {topics[name] for name in default_topics.values()} == {topic_partitions}
    assert policies.pop("catalog") == "compact"
    assert set(policies.values()) == {"delete"}
    assert len(policies) == 8


def test_ensuring_topics_twice_creates_nothing_the_second_time(
    kafka_bootstrap: str, unique_topic_prefix: str
) -> None:
    specs = [
        TopicSpec(unique_topic_prefix + "events.cart", 2),
        TopicSpec(unique_topic_prefix + "catalog", 2, compacted=True),
    ]

    assert ensure_topics(kafka_bootstrap, specs) == [spec.name for spec in specs]
    assert ensure_topics(kafka_bootstrap, specs) == []


def test_an_existing_topic_with_other_partitions_is_refused_with_the_fix(
    kafka_bootstrap: str, unique_topic_prefix: str
) -> None:
    name = unique_topic_prefix + "events.cart"
    ensure_topics(kafka_bootstrap, [TopicSpec(name, 2)])

    with pytest.raises(TopicMismatch, match=r"partitions 2, but 4 is configured.*configure 2"):
        ensure_topics(kafka_bootstrap, [TopicSpec(name, 4)])


def test_an_event_keyed_by_user_id_comes_back_unchanged(
    kafka_bootstrap: str, default_topics: dict[str, str]
) -> None:
    topic = default_topics["events.cart"]
    event = {
        "event_id": "e-1",
        "type": "cart",
        "user_id": "u-42",
        "ts": "2026-03-01T10:00:00+00:00",
        "action": "add",
        "item_id": "shredder-1",
        "quantity": 1,
    }
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        producer.send(topic, key=b"u-42", value=json.dumps(event).encode()).get(timeout=30)
    finally:
        producer.close()

    records = _read_all(kafka_bootstrap, topic, expected=1)

    assert [(r.key, json.loads(r.value)) for r in records] == [(b"u-42", event)]


def test_a_transaction_is_seen_by_read_committed_consumers_only_once_committed(
    kafka_bootstrap: str, default_topics: dict[str, str], unique_topic_prefix: str
) -> None:
    topic = default_topics["actions"]

    asyncio.run(_commit_one_abort_one(kafka_bootstrap, topic, unique_topic_prefix + "tx"))

    committed = _read_all(kafka_bootstrap, topic, expected=1)
    everything = _read_all(kafka_bootstrap, topic, expected=2, isolation="read_uncommitted")
    assert [r.value for r in committed] == [b"committed"]
    assert sorted(r.value for r in everything) == [b"aborted", b"committed"]


async def _commit_one_abort_one(bootstrap: str, topic: str, transactional_id: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id)
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed", key=b"u-1")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", key=b"u-1")
        await producer.abort_transaction()
    finally:
        await producer.stop()


def _read_all(
    bootstrap: str,
    topic: str,
    expected: int,
    isolation: str = "read_committed",
    timeout_s: float = 30,
) -> list[Any]:
    """Every record of ``topic`` from the start: waits for ``expected``, then a little more."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation,
        enable_auto_commit=False,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        for batch in consumer.poll(timeout_ms=1000).values():  # anything unexpected after it
            records.extend(batch)
        return records
    finally:
        consumer.close()
