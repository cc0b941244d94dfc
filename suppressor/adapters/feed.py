"""Put JSONL files on the input and catalog topics, and read topics back as an ad platform does.

    python -m suppressor.adapters.feed events EVENTS.jsonl   [--broker ...] [--input-topics ...]
    python -m suppressor.adapters.feed catalog CATALOG.jsonl [--broker ...] [--catalog-topic ...]
    (``suppressor catalog load CATALOG.jsonl`` validates the lines first: ``load_catalog_file``)
    python -m suppressor.adapters.feed read actions          [--broker ...] [--follow]

Events go to the input topic of their type (browse, cart, purchase, review,
then consent and forget to preferences: the order of ``--input-topics``), keyed
by ``user_id``. A line that is not a usable event goes, as it is, to the first
input topic, so the worker's dead-letter topic shows what a bad producer does.

Reading uses ``isolation_level=read_committed``: only what committed
transactions wrote, exactly what an ad platform must see.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from suppressor.adapters.settings import add_settings_arguments, settings_from_args
from suppressor.core.catalog_lines import Deleted, catalog_line
from suppressor.core.codec import dead_letter_bytes
from suppressor.core.errors import SuppressorError
from suppressor.core.replay.files import numbered_lines, open_input
from suppressor.wire.outputs import DeadLetter, SourcePosition

EVENT_TYPES_BY_INPUT = (
    ("browse",),
    ("cart",),
    ("purchase",),
    ("review",),
    ("consent", "forget"),
)
"""Which event types go to the 1st, 2nd, ... input topic (the default topics' order)."""


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def json(self) -> Any:
        return None if self.value is None else json.loads(self.value)


@dataclass
class FeedReport:
    sent: int = 0
    bad: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


def route_by_type(inputs: Sequence[str]) -> dict[str, str]:
    """Event type -> input topic, by position; with fewer topics the last one takes the rest."""
    routes: dict[str, str] = {}
    for position, types in enumerate(EVENT_TYPES_BY_INPUT):
        for event_type in types:
            routes[event_type] = inputs[min(position, len(inputs) - 1)]
    return routes


def producer(bootstrap: str, client_config: Mapping[str, Any] | None = None) -> KafkaProducer:
    """kafka-python's producer; ``client_config`` (security, or batching) wins over these."""
    config: dict[str, Any] = {"acks": "all", "linger_ms": 20, "batch_size": 256 * 1024}
    return KafkaProducer(
        bootstrap_servers=bootstrap.split(","), **{**config, **(client_config or {})}
    )


def feed_events(
    bootstrap: str,
    lines: Iterable[bytes],
    inputs: Sequence[str],
    *,
    client_config: Mapping[str, Any] | None = None,
    key_of: Callable[[dict[str, Any]], str] | None = None,
) -> FeedReport:
    """Send event lines to their topics; ``key_of(event)`` replaces the user_id key (to play
    a producer that does not key by user)."""
    routes = route_by_type(inputs)
    report = FeedReport()
    kafka = producer(bootstrap, client_config)
    try:
        for line in lines:
            event = _event_or_none(line, routes)
            if event is None:
                topic, key = inputs[0], None
                report.bad += 1
            else:
                topic = routes[event["type"]]
                key = (key_of(event) if key_of else str(event.get("user_id", ""))).encode()
            kafka.send(topic, key=key, value=line)
            report.sent += 1
            report.by_topic[topic] = report.by_topic.get(topic, 0) + 1
        kafka.flush()
    finally:
        kafka.close()
    return report


def _event_or_none(line: bytes, routes: Mapping[str, str]) -> dict[str, Any] | None:
    """The line as a JSON object with a known type and a string user_id, else None."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("type") not in routes:
        return None
    return event if isinstance(event.get("user_id"), str) else None


def feed_catalog(
    bootstrap: str,
    lines: Iterable[bytes],
    topic: str,
    *,
    client_config: Mapping[str, Any] | None = None,
) -> FeedReport:
    """Send catalog lines keyed by item_id (a compacted topic needs a key on every record)."""
    report = FeedReport()
    kafka = producer(bootstrap, client_config)
    try:
        for number, line in enumerate(lines, start=1):
            kafka.send(topic, key=_item_key(line, number), value=line)
            report.sent += 1
        kafka.flush()
    finally:
        kafka.close()
    report.by_topic[topic] = report.sent
    return report


@dataclass
class CatalogLoadReport:
    items: int = 0
    tombstones: int = 0
    dead_letters: int = 0


def load_catalog_file(
    bootstrap: str,
    path: str,
    topic: str,
    *,
    dlq_topic: str | None,
    dlq_file: BinaryIO | None = None,
    client_config: Mapping[str, Any] | None = None,
) -> CatalogLoadReport:
    """``suppressor catalog load``: every good line of a catalog file on the catalog topic
    keyed by its item_id, a tombstone for a line marking an item deleted
    (suppressor.core.catalog_lines), and each bad line as a dead letter (the worker's
    codes) to ``dlq_file`` when given, else to ``dlq_topic``. Returns once all is acked."""
    report = CatalogLoadReport()
    handle, _ = open_input(path)
    kafka = producer(bootstrap, client_config)
    try:
        with handle:
            for number, line in numbered_lines(handle):
                found = catalog_line(line, SourcePosition(file=path, line=number))
                if isinstance(found, DeadLetter):
                    report.dead_letters += 1
                    if dlq_file is not None:
                        dlq_file.write(dead_letter_bytes(found) + b"\n")
                    elif dlq_topic is not None:
                        kafka.send(dlq_topic, key=None, value=dead_letter_bytes(found))
                elif isinstance(found, Deleted):
                    kafka.send(topic, key=found.item_id.encode(), value=None)
                    report.tombstones += 1
                else:
                    kafka.send(topic, key=found.item_id.encode(), value=line)
                    report.items += 1
        kafka.flush()
    except KafkaError as error:
        raise SuppressorError(f"Kafka at {bootstrap}: {error}") from None
    finally:
        kafka.close()
    return report


def _item_key(line: bytes, number: int) -> bytes:
    try:
        item = json.loads(line)
    except ValueError:
        item = None
    if isinstance(item, dict) and isinstance(item.get("item_id"), str):
        return str(item["item_id"]).encode()
    return f"bad-line-{number}".encode()


def jsonl_lines(path: str | Path) -> Iterator[bytes]:
    with Path(path).open("rb") as handle:
        for line in handle:
            if line.strip():
                yield line.rstrip(b"\r\n")


# --- reading -------------------------------------------------------------------------


def consumer(
    bootstrap: str,
    *,
    committed_only: bool = True,
    client_config: Mapping[str, Any] | None = None,
) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=500,
        **dict(client_config or {}),
    )


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    settle_s: float = 3.0,
    timeout_s: float = 60.0,
    at_least: int = 0,
    committed_only: bool = True,
    client_config: Mapping[str, Any] | None = None,
) -> list[Record]:
    """Every record of ``topic`` from the beginning, once ``at_least`` are there and no more
    arrived for ``settle_s`` (or ``timeout_s`` passed)."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    for record in follow_topic(
        bootstrap,
        topic,
        committed_only=committed_only,
        client_config=client_config,
        idle_yield=True,
    ):
        now = time.monotonic()
        if record is not None:
            records.append(record)
            quiet_since = now
        if now > deadline or (len(records) >= at_least and now - quiet_since >= settle_s):
            break
    return records


def follow_topic(
    bootstrap: str,
    topic: str,
    *,
    committed_only: bool = True,
    client_config: Mapping[str, Any] | None = None,
    idle_yield: bool = False,
) -> Iterator[Record | None]:
    """Records of every partition of ``topic`` from the beginning, forever (None when idle,
    if ``idle_yield``)."""
    kafka = consumer(bootstrap, committed_only=committed_only, client_config=client_config)
    try:
        partitions = _partitions(kafka, topic)
        kafka.assign([TopicPartition(topic, p) for p in partitions])
        kafka.seek_to_beginning()
        while True:
            batches = kafka.poll(timeout_ms=200)
            for batch in batches.values():
                for message in batch:
                    yield Record(
                        topic, message.partition, message.offset, message.key, message.value
                    )
            if not batches and idle_yield:
                yield None
    finally:
        kafka.close()


def _partitions(kafka: KafkaConsumer, topic: str, timeout_s: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        partitions = kafka.partitions_for_topic(topic)
        if partitions:
            return sorted(partitions)
        time.sleep(0.2)
    raise SuppressorError(f"topic {topic!r} does not exist (or has no partitions)")


# --- command line ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m suppressor.adapters.feed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("what", choices=("events", "catalog", "read"))
    parser.add_argument("source", help="a JSONL file (events, catalog) or a topic (read)")
    parser.add_argument("--follow", action="store_true", help="read: keep reading")
    add_settings_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
        bootstrap, client = settings.bootstrap_servers, settings.kafka_client_config()
        if args.what == "events":
            report = feed_events(
                bootstrap, jsonl_lines(args.source), settings.input_topics, client_config=client
            )
            print(json.dumps(report.__dict__))
        elif args.what == "catalog":
            report = feed_catalog(
                bootstrap, jsonl_lines(args.source), settings.catalog_topic, client_config=client
            )
            print(json.dumps(report.__dict__))
        else:
            records = (
                follow_topic(bootstrap, args.source, client_config=client)
                if args.follow
                else read_topic(bootstrap, args.source, settle_s=2.0, client_config=client)
            )
            for record in records:
                if record is not None:
                    print((record.value or b"").decode("utf-8", "replace"), flush=True)
    except (SuppressorError, OSError) as error:
        print(f"feed: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
