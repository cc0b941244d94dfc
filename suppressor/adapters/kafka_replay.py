"""Replay input from Kafka: a time range of the input topics, and the catalog topic.

``suppressor replay --from-kafka --since TS [--until TS]`` reads, on every partition of
every input topic, the records whose Kafka timestamp is in ``[since, until)``: it starts
at ``offsets_for_times(since)`` and stops at ``offsets_for_times(until)`` (the end offset
when no record is that late, or when there is no ``--until``). Nothing is written to
Kafka and no consumer group is used (no offsets are committed).

The catalog, when no ``--catalog`` file is given, is the whole compacted catalog topic,
read from the beginning to the end offsets seen at start.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from suppressor.adapters.settings import OPTIONS, Settings, settings_from_args
from suppressor.core.catalog import Catalog
from suppressor.core.errors import SuppressorError
from suppressor.wire.outputs import DeadLetter, SourcePosition

KAFKA_FIELDS = (
    "broker",
    "input_topics",
    "catalog_topic",
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
)
"""The worker settings a replay from Kafka needs (not ``policy``: replay has its own)."""


class KafkaRecord(NamedTuple):
    timestamp: int
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    """The worker's flags for the broker, the topics and security (same env variables)."""
    group = parser.add_argument_group(
        "kafka (with --from-kafka)", "each flag falls back to its SUPPRESSOR_* variable"
    )
    for option in OPTIONS:
        if option.field in KAFKA_FIELDS:
            group.add_argument(
                option.flag,
                dest=option.field,
                default=None,
                metavar=option.metavar,
                help=f"{option.help} (env {option.env})",
            )


def kafka_settings(args: argparse.Namespace) -> Settings:
    """The worker's Settings from these flags, the environment and the defaults."""
    only = argparse.Namespace(**{field: getattr(args, field, None) for field in KAFKA_FIELDS})
    return settings_from_args(only)


def ordered(records: Iterable[KafkaRecord]) -> list[tuple[SourcePosition, bytes]]:
    """The records as replay input, in (Kafka timestamp, topic, partition, offset) order.

    Why this order: the engine's result depends on the order of events (stream time,
    lateness, reordering), so it must be a function of the topic contents alone, never of
    fetch timing. The Kafka timestamp is the one clock every record of every topic and
    partition shares, and it is close to the order a live worker reads the records in (by
    arrival), so late events stay late as they were live. Topic, partition and offset break
    ties, all three together unique: the order is total. Within a partition whose timestamps
    only grow (CreateTime from one producer, or LogAppendTime) it is the offset order.
    """
    return [
        (SourcePosition(topic=r.topic, partition=r.partition, offset=r.offset), r.value or b"")
        for r in sorted(records, key=lambda r: (r.timestamp, r.topic, r.partition, r.offset))
    ]


def read_range(
    settings: Settings,
    since: int,
    until: int | None,
    *,
    topics: Sequence[str] | None = None,
    timeout_s: float = 60.0,
) -> list[KafkaRecord]:
    """The records of the input topics with ``since <= timestamp < until`` (no upper bound
    when ``until`` is None), as far as the end offsets at start."""
    consumer = _consumer(settings)
    try:
        parts = _partitions(consumer, topics or settings.input_topics)
        ends = consumer.end_offsets(parts)
        starts = _offsets_at(consumer, parts, since, ends)
        stops = ends if until is None else _offsets_at(consumer, parts, until, ends)
        records = _read(consumer, starts, stops, timeout_s)
    finally:
        consumer.close()
    return [r for r in records if r.timestamp >= since and (until is None or r.timestamp < until)]


def read_catalog(
    settings: Settings, *, timeout_s: float = 60.0
) -> tuple[Catalog, list[DeadLetter]]:
    """The whole compacted catalog topic into a Catalog; bad records become dead letters."""
    from suppressor.adapters.catalog_reader import (
        CatalogFeed,
    )  # the worker's rules for catalog records

    async def no_send(dead: DeadLetter, partition: int) -> None:  # pragma: no cover
        return None

    catalog, dead = Catalog(), list[DeadLetter]()
    feed = CatalogFeed(catalog, no_send)
    consumer = _consumer(settings)
    try:
        parts = _partitions(consumer, [settings.catalog_topic])
        starts = consumer.beginning_offsets(parts)
        for r in _read(consumer, starts, consumer.end_offsets(parts), timeout_s):
            problem = feed.apply(r.key, r.value, r.topic, r.partition, r.offset)
            if problem is not None:
                dead.append(problem)
    finally:
        consumer.close()
    return catalog, dead


def _consumer(settings: Settings) -> KafkaConsumer:
    try:
        return KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers.split(","),
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
            **settings.kafka_client_config(),
        )
    except KafkaError as error:
        raise SuppressorError(f"Kafka at {settings.bootstrap_servers}: {error}") from None


def _partitions(
    consumer: KafkaConsumer, topics: Sequence[str], timeout_s: float = 30.0
) -> list[TopicPartition]:
    found: list[TopicPartition] = []
    for topic in topics:
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise SuppressorError(f"topic {topic!r} does not exist (or has no partitions)")
        found.extend(TopicPartition(topic, p) for p in sorted(partitions))
    return found


def _offsets_at(
    consumer: KafkaConsumer,
    parts: list[TopicPartition],
    ms: int,
    ends: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """The first offset with a timestamp >= ms on each partition; its end offset if none."""
    found = consumer.offsets_for_times({tp: ms for tp in parts})
    return {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in parts}


def _read(
    consumer: KafkaConsumer,
    starts: Mapping[TopicPartition, int],
    stops: Mapping[TopicPartition, int],
    timeout_s: float,
) -> list[KafkaRecord]:
    """Records at offsets [start, stop) of each partition. With read_committed, transaction
    markers and aborted records take offsets too: a partition is done once its position
    reaches the stop."""
    wanted = [tp for tp in starts if starts[tp] < stops[tp]]
    if not wanted:
        return []
    consumer.assign(wanted)
    for tp in wanted:
        consumer.seek(tp, starts[tp])
    records: list[KafkaRecord] = []
    open_parts = set(wanted)
    deadline = time.monotonic() + timeout_s
    while open_parts:
        if time.monotonic() > deadline:
            raise SuppressorError(
                f"reading the topics took more than {timeout_s:.0f} s; "
                f"still open: {sorted(f'{tp.topic}[{tp.partition}]' for tp in open_parts)}"
            )
        for tp, batch in consumer.poll(timeout_ms=500).items():
            for message in batch:
                if message.offset >= stops[tp]:
                    break
                records.append(
                    KafkaRecord(
                        message.timestamp,
                        tp.topic,
                        tp.partition,
                        message.offset,
                        message.key,
                        message.value,
                    )
                )
        for tp in list(open_parts):
            if consumer.position(tp) >= stops[tp]:
                open_parts.discard(tp)
                consumer.pause(tp)
    return records
