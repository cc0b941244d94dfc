"""Sends that belong to the input record being processed: its transaction, or at least once.

Faust's exactly-once keeps one transactional producer per (topic group,
partition number) and commits a partition's input offsets through it. Faust's
own ``topic.send`` picks the producer by the *destination* partition and the
destination topic's group, which fails for a topic the worker does not consume
(``actions``: KeyError in ``group_for_topic``) and puts a send in the wrong
partition's transaction whenever the partitions differ. Here the producer is
picked by the *source* record, exactly as the consumer's commit picks it, so
everything a record causes (changelog, outputs, DLQ, repartitioned copies) is
committed or aborted together with that record's offset.

Under ``at_least_once`` the plain producer is used; faust flushes it before it
commits offsets.

Delivery futures are not awaited per record (the transaction commit, or the
flush before an at-least-once commit, waits for them), but a failed delivery
stops the worker (``suppressor.adapters.stopping``): committing past a lost output
would drop it silently, and a fenced producer must stop sending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import faust
from faust.types import TP

from suppressor.adapters.faust_internals.producer import Producer
from suppressor.adapters.stopping import STOPPER

log = logging.getLogger(__name__)


SAMPLE_EVERY = 64
"""One send in this many is timed to its delivery (``latency``): timing every one costs more
than the send itself."""


class SourceSender:
    """Sends straight to the aiokafka producer of the source record's transaction (or the
    plain one, at least once), without Faust's producer wrapper: its per-send sensor calls
    and lock cost more than aiokafka's own ``send``. The transaction is begun, when none is
    open, by ``begin`` (once per chunk of records, under the record boundary, where no
    commit can run) rather than before every send."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.latency: Callable[[float], None] | None = None
        """Called with the seconds from send to delivery of every ``SAMPLE_EVERY``th send."""
        self._ids: dict[TP, str] = {}
        self._count = 0

    @property
    def _producer(self) -> Producer:
        producer = self.app.producer
        assert isinstance(producer, Producer)
        return producer

    def transactional_id(self, source: TP) -> str | None:
        """The id faust's TransactionManager.commit uses for ``source``'s offsets."""
        if not self.app.in_transaction:
            return None
        found = self._ids.get(source)
        if found is None:
            group = self.app.assignor.group_for_topic(source.topic)
            found = self._ids[source] = f"{self.app.conf.id}-{group}-{source.partition}"
        return found

    async def begin(self, source: TP) -> None:
        """Make sure ``source``'s transaction is open (exactly once); a no-op at least once."""
        transactional_id = self.transactional_id(source)
        if transactional_id is not None:
            await self._producer.ensure_transaction(transactional_id)

    async def send(
        self,
        source: TP,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        """In ``source``'s transaction, which ``begin`` opened (or at least once); the
        future of the record's metadata (offset), done once it is delivered."""
        producer = self._producer.target(self.transactional_id(source))
        future = await producer.send(topic, value, key=key, partition=partition, headers=headers)
        self._watch(future)
        return future

    async def send_plain(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int
    ) -> asyncio.Future[Any]:
        """Outside any transaction: visible at once, even on a partition nothing commits."""
        future = await self._producer.target(None).send(topic, value, key=key, partition=partition)
        self._watch(future)
        return future

    def _watch(self, future: asyncio.Future[Any]) -> None:
        self._count += 1
        if self.latency is not None and self._count % SAMPLE_EVERY == 0:
            sent = time.monotonic()
            latency = self.latency

            def timed(done: asyncio.Future[Any]) -> None:
                if not done.cancelled() and done.exception() is None:
                    latency(time.monotonic() - sent)

            future.add_done_callback(timed)
        future.add_done_callback(self._check_delivery)

    def _check_delivery(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.error("a record could not be delivered: %r", error)
            STOPPER.stop_fatally(error)
