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
from typing import Any

import faust
from faust.types import TP

from suppressor.adapters.faust_internals.producer import Producer
from suppressor.adapters.stopping import STOPPER

log = logging.getLogger(__name__)


class SourceSender:
    def __init__(self, app: faust.App) -> None:
        self.app = app

    @property
    def _producer(self) -> Producer:
        producer = self.app.producer
        assert isinstance(producer, Producer)
        return producer

    def transactional_id(self, source: TP) -> str | None:
        """The id faust's TransactionManager.commit uses for ``source``'s offsets."""
        if not self.app.in_transaction:
            return None
        group = self.app.assignor.group_for_topic(source.topic)
        return f"{self.app.conf.id}-{group}-{source.partition}"

    async def send(
        self,
        source: TP,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        transactional_id = self.transactional_id(source)
        if transactional_id is not None:
            await self._producer.ensure_transaction(
                transactional_id
            )  # see suppressor.adapters.faust_internals.consumer
        future = await self._producer.send(
            topic, key, value, partition, None, headers, transactional_id=transactional_id
        )
        asyncio.ensure_future(future).add_done_callback(self._check_delivery)

    async def send_plain(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int
    ) -> None:
        """Outside any transaction: visible at once, even on a partition nothing commits."""
        future = await self._producer.send(topic, key, value, partition, None, None)
        asyncio.ensure_future(future).add_done_callback(self._check_delivery)

    def _check_delivery(self, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:
            log.error("a record could not be delivered: %r", error)
            STOPPER.stop_fatally(error)
