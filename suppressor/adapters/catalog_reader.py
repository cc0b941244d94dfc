"""The catalog: every worker reads the whole compacted ``catalog`` topic into the domain Catalog.

A global table in the plain sense: each worker has its own consumer (no
consumer group) on every catalog partition, reads from the beginning, and is
*ready* once it has reached the end offsets it saw at start; the agent waits
for that before its first record, so the first event already sees the whole
catalog. Later records keep arriving and update the in-memory ``Catalog``
incrementally (``upsert`` / ``remove``, which drop only the similarity
rankings of the item's category).

Why not Faust's GlobalTable: in faust-streaming 0.15.3 its assignor looks up a
global table's changelog by the default name (``<app>-<table>-changelog``), so a
table over an existing topic (``catalog``) fails every rebalance with a
KeyError, and Faust documents recovery loops for global tables with several
partitions and several workers. The catalog holds nothing the worker writes,
so a plain consumer is all it takes.

A record that is not a valid catalog item, or whose key is not its ``item_id``
(a tombstone could never remove it), goes to the dead-letter topic. That send
is outside any transaction (catalog reading commits no offsets), and each
worker reports each bad record once per process: dead-letter consumers can
dedupe on source topic/partition/offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from mode import Service

from suppressor.core.catalog import Catalog
from suppressor.core.catalog_lines import validate_catalog_item
from suppressor.core.codec import item_from_wire
from suppressor.wire.outputs import DeadLetter, SourcePosition

log = logging.getLogger(__name__)

DeadLetterSink = Callable[[DeadLetter, int], Awaitable[None]]
"""Sends a dead letter; the int is the source partition."""


class CatalogFeed:
    """Catalog records into the domain Catalog; bad ones to the dead-letter sink."""

    def __init__(self, catalog: Catalog, dead_letters: DeadLetterSink) -> None:
        self.catalog = catalog
        self.dead_letters = dead_letters
        self.applied = 0
        self._reported: set[tuple[str, int, int]] = set()

    async def on_record(self, record: ConsumerRecord[bytes, bytes]) -> None:
        where = (record.topic, record.partition, record.offset)
        dead = self.apply(record.key, record.value, *where)
        if dead is not None and where not in self._reported:
            self._reported.add(where)
            log.warning("bad catalog record at %s[%d]@%d: %s", *where, dead.error)
            await self.dead_letters(dead, record.partition)

    def apply(
        self, key: bytes | None, value: bytes | None, topic: str, partition: int, offset: int
    ) -> DeadLetter | None:
        """Update the catalog from one record; a DeadLetter when the record is unusable."""
        source = SourcePosition(topic=topic, partition=partition, offset=offset)
        if value is None:
            if key:
                self.catalog.remove(key.decode("utf-8", "replace"))
                self.applied += 1
            return None
        item = validate_catalog_item(value, source)  # as replay's and `catalog load`'s
        if isinstance(item, DeadLetter):
            return item
        if key is None or key != item.item_id.encode():
            message = (
                f"the record's key {key!r} is not its item_id {item.item_id!r}; "
                "key catalog records by item_id so that a tombstone can remove them"
            )
            return DeadLetter.of(value, source, "key_mismatch", message)
        self.catalog.upsert(item_from_wire(item))
        self.applied += 1
        return None


class CatalogReader(Service):
    """Reads every partition of the catalog topic, for as long as the worker runs."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        feed: CatalogFeed,
        client_config: Mapping[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bootstrap = bootstrap
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.feed = feed
        self.client_config = dict(client_config)
        self.ready = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._end: dict[TopicPartition, int] = {}

    async def on_start(self) -> None:
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap.split(","),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            **self.client_config,
        )
        await consumer.start()
        consumer.assign(self.partitions)
        await consumer.seek_to_beginning(*self.partitions)
        self._end = await consumer.end_offsets(self.partitions)

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    @Service.task
    async def _read(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self.should_stop:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for records in batches.values():
                for record in records:
                    await self.feed.on_record(record)
            if not self.ready.is_set() and await self._caught_up(consumer):
                log.info("catalog: %d items read, ready", len(self.feed.catalog))
                self.ready.set()

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> bool:
        for tp, end in self._end.items():
            if await consumer.position(tp) < end:
                return False
        return True
