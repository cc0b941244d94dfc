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
import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
    """Records in memory as replay input, in (timestamp, topic, partition, offset) order
    (``RangeReader`` gives the same order streaming, for partitions whose timestamps do
    not go back)."""
    return [as_line(r) for r in sorted(records, key=order_key)]


def order_key(record: KafkaRecord) -> tuple[int, str, int, int]:
    return (record.timestamp, record.topic, record.partition, record.offset)


def as_line(record: KafkaRecord) -> tuple[SourcePosition, bytes]:
    where = SourcePosition(topic=record.topic, partition=record.partition, offset=record.offset)
    return where, record.value or b""


class RangeReader:
    """The records of the input topics with ``since <= timestamp < until`` (no upper bound
    when ``until`` is None), as far as the end offsets at start, streamed in replay order.

    The order: a k-way merge of the partitions, each read in offset order, that always
    takes the partition whose next record has the least (timestamp, topic, partition,
    offset). Why this order: the engine's result depends on the order of events (stream
    time, lateness, reordering), so it must be a function of the topic contents alone,
    never of fetch timing. The Kafka timestamp is the one clock every record of every topic
    and partition shares, and it is close to the order a live worker reads the records in
    (by arrival), so late events stay late as they were live. Topic, partition and offset
    break ties, all together unique: the order is total. When every partition's timestamps
    only grow (LogAppendTime, or CreateTime from producers that stamp in order) it is the
    sort of all the records by that key; where a partition's timestamp goes back, its
    records stay in offset order (as a worker reads them) and the merge goes on from there.

    Memory: at most ``buffer`` fetched records per partition, and one poll's (partitions
    whose buffer is full are not fetched), whatever the length of the range. Time: no limit
    on the whole read; ``stall_s`` without a single record or position change is an error (a
    broker gone).
    """

    def __init__(
        self,
        settings: Settings,
        since: int,
        until: int | None,
        *,
        topics: Sequence[str] | None = None,
        buffer: int = 2000,
        stall_s: float = 120.0,
        bounds: RangeReader | None = None,
    ) -> None:
        """``bounds``: read the offsets another reader read (a second pass, ``--compare``),
        whatever has been written since."""
        self.settings = settings
        self.since = since
        self.until = until
        self.buffer = buffer
        self.stall_s = stall_s
        self.consumer = _consumer(settings)
        self.starts: dict[TopicPartition, int]
        self.stops: Mapping[TopicPartition, int]
        self.partitions: int
        if bounds is not None:
            self.starts, self.stops = dict(bounds.starts), dict(bounds.stops)
            self.partitions = bounds.partitions
            return
        try:
            parts = _partitions(self.consumer, topics or settings.input_topics)
            ends = self.consumer.end_offsets(parts)
            self.starts = _offsets_at(self.consumer, parts, since, ends)
            self.stops = ends if until is None else _offsets_at(self.consumer, parts, until, ends)
        except BaseException:
            self.consumer.close()
            raise
        self.partitions = len(parts)

    @property
    def total(self) -> int:
        """Offsets in the range, all partitions (records, plus transaction markers)."""
        return sum(self.stops[tp] - self.starts[tp] for tp in self.starts)

    def close(self) -> None:
        self.consumer.close()

    def __iter__(self) -> Iterator[KafkaRecord]:
        return self.records()

    def records(self, on_offsets: Callable[[int], None] | None = None) -> Iterator[KafkaRecord]:
        """The records in order; ``on_offsets(n)``: n more offsets of the range read.

        A partition whose buffer is full is left out of the consumer's assignment until half
        of it is used, then assigned again at the offset it had reached (not
        ``KafkaConsumer.pause``: in kafka-python 3.0.12 a partition paused while its fetched
        records wait in the fetcher can stay parked after ``resume`` for good)."""
        consumer, stops = self.consumer, self.stops
        wanted = [tp for tp in self.starts if self.starts[tp] < stops[tp]]
        if not wanted:
            return
        buffers: dict[TopicPartition, deque[KafkaRecord]] = {tp: deque() for tp in wanted}
        reached = {tp: self.starts[tp] for tp in wanted}  # the offset each has been read to
        open_parts = set(wanted)  # not yet read to their stop
        full: set[TopicPartition] = set()  # open, left out of the assignment
        heads: list[tuple[tuple[int, str, int, int], TopicPartition]] = []
        waiting = set(wanted)  # open, with an empty buffer: the merge cannot go on
        assigned: list[TopicPartition] = []
        last_progress = time.monotonic()

        def assign() -> None:
            nonlocal assigned
            assigned = [tp for tp in wanted if tp in open_parts and tp not in full]
            consumer.assign(assigned)
            for tp in assigned:
                consumer.seek(tp, reached[tp])

        def fill() -> None:
            nonlocal last_progress
            for tp, batch in consumer.poll(timeout_ms=500).items():
                buffer = buffers[tp]
                was_empty = not buffer
                for message in batch:
                    if message.offset >= stops[tp]:
                        break
                    buffer.append(
                        KafkaRecord(message.timestamp, tp.topic, tp.partition, message.offset,
                                    message.key, message.value)
                    )  # fmt: skip
                if was_empty and buffer:
                    heapq.heappush(heads, (order_key(buffer[0]), tp))
                    waiting.discard(tp)
            changed = False
            for tp in assigned:
                if tp not in open_parts:
                    continue
                position = consumer.position(tp)
                if position != reached[tp]:
                    if on_offsets is not None:
                        on_offsets(min(position, stops[tp]) - reached[tp])
                    reached[tp] = position
                    last_progress = time.monotonic()
                if position >= stops[tp]:
                    open_parts.discard(tp)
                    changed = True
                    if not buffers[tp]:
                        waiting.discard(tp)
                elif len(buffers[tp]) >= self.buffer:
                    full.add(tp)
                    changed = True
            if changed:
                assign()
            if time.monotonic() - last_progress > self.stall_s:
                stuck = sorted(f"{tp.topic}[{tp.partition}]" for tp in open_parts)
                raise SuppressorError(
                    f"no record from Kafka for {self.stall_s:.0f} s; still open: {stuck}"
                )

        assign()
        while True:
            while waiting:
                fill()
            if not heads:
                return
            _, tp = heapq.heappop(heads)
            buffer = buffers[tp]
            record = buffer.popleft()
            if buffer:
                heapq.heappush(heads, (order_key(buffer[0]), tp))
            elif tp in open_parts:
                waiting.add(tp)
            if tp in full and len(buffer) <= self.buffer // 2:
                full.discard(tp)
                assign()
            if record.timestamp >= self.since and (
                self.until is None or record.timestamp < self.until
            ):
                yield record


def read_range(
    settings: Settings,
    since: int,
    until: int | None,
    *,
    topics: Sequence[str] | None = None,
) -> list[KafkaRecord]:
    """The records of ``RangeReader``, in a list (small ranges, tests)."""
    reader = RangeReader(settings, since, until, topics=topics)
    try:
        return list(reader)
    finally:
        reader.close()


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
