"""The transactional producer Faust builds, beginning transactions only when none is open.

Ended transactions. To wait for streams to finish, at every rebalance and at a
graceful stop, Faust commits each partition's transaction *without beginning
the next one*, and begins them again only once the new assignment arrives. Its
periodic commit can run in between, or a record still being processed can ack,
and the commit then fails with ``IllegalOperation('Not in the middle of a
transaction')``: the consumer crashes and a graceful stop exits with status 1.
Here a commit (and every send, see ``SourceSender``) first begins the
transaction of its transactional id when none is open; an empty transaction
costs nothing on the broker.

No producer spans a rebalance. Faust keeps the producer of a partition that it finds
still assigned (its ``TransactionManager.on_rebalance`` stops only those of partitions
it sees leave), and with it (1) any transaction still open after the rebalance's commit,
whose records would be committed later with the second processing of the same input
(read again from the committed offsets): duplicates; and (2) a producer fenced in the
meantime: when a partition moves away and back between two assignments Faust compares,
the new owner's ``init_transactions`` fenced it, and its first send after the partition
comes back fails with ``ProducerFenced``, which stops the worker. Here, once the
rebalance's commit is done, every transaction still open is aborted and every
transactional producer is stopped (``end_transactions``): each assigned partition then
gets a fresh producer, and its ``init_transactions``, at the assignment.

A transaction coordinator lookup cut by a closed connection. aiokafka's ``Sender.
_find_coordinator`` retries a lookup that fails with "coordinator not available", "node
not ready" or a timeout, but turns any other Kafka error into a plain ``KafkaError``,
which ends the producer's sender routine: every pending send fails and the worker stops
(the fault suite's ``broker_restart``: the broker went down while a lookup was on the
wire, ``KafkaConnectionError``). Here a lookup whose cause Kafka marks retriable is
retried after the producer's backoff, as aiokafka does for the others; authorization
errors still end it.

Commits one partition after another. Faust commits each partition's
transaction in turn while the agent waits (record boundary); here they run
side by side.

See README.md in this folder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.producer.transaction_manager import TransactionState
from faust.exceptions import ProducerSendError
from faust.transport.drivers.aiokafka import Producer as AIOKafkaProducer
from faust.types import TP

log = logging.getLogger(__name__)

OPEN = (TransactionState.IN_TRANSACTION, TransactionState.ABORTABLE_ERROR)
"""aiokafka's transaction states that ``abort_transaction`` ends."""


class Producer(AIOKafkaProducer):
    def _new_producer(self, transactional_id: str | None = None) -> Any:
        """Faust's, with the transaction coordinator's lookup retried (see above)."""
        producer = super()._new_producer(transactional_id)
        if transactional_id is not None:
            retry_coordinator_lookups(producer._sender)
        return producer

    def target(self, transactional_id: str | None) -> Any:
        """The aiokafka producer a send goes to: the transaction's (which must have been
        started: Faust's rebalance starts one per assigned partition), or the plain one."""
        if transactional_id is None:
            return self._ensure_producer()
        producer = self._transaction_producers.get(transactional_id)
        if producer is None:
            raise ProducerSendError(f"no transaction producer for {transactional_id}")
        return producer

    async def ensure_transaction(self, transactional_id: str) -> None:
        """Begin the transaction of ``transactional_id`` if its producer has none open."""
        producer = self._transaction_producers.get(transactional_id)
        if producer is None:
            return
        async with self._trn_locks[transactional_id]:
            if producer._txn_manager.state == TransactionState.READY:
                await producer.begin_transaction()

    async def end_transactions(self) -> list[str]:
        """Abort every transaction still open, then stop every transactional producer;
        return the ids of the transactions that held records.

        Called once a rebalance's commit is done: whatever a transaction still holds then
        was not committed with its input offsets, and those records are read and processed
        again from the committed offsets. The producers are stopped too, so that the
        assignment starts a fresh one (with ``init_transactions``) for every partition:
        one kept from before may have been fenced by another worker's in between."""
        held: list[str] = []
        for transactional_id, producer in list(self._transaction_producers.items()):
            async with self._trn_locks[transactional_id]:
                manager = producer._txn_manager
                if manager.state in OPEN:
                    if manager._txn_partitions or manager._pending_txn_partitions:
                        held.append(transactional_id)
                    try:
                        await producer.abort_transaction()
                    except Exception as error:  # fenced: the partition's new owner aborted it
                        log.warning("could not abort transaction %s: %r", transactional_id, error)
                self._transaction_producers.pop(transactional_id, None)
                try:
                    await producer.stop()
                except Exception as error:  # a fenced producer's stop may raise: it is gone
                    log.warning("could not stop producer %s: %r", transactional_id, error)
        return held

    async def maybe_begin_transaction(self, transactional_id: str) -> None:
        """At a rebalance Faust begins every kept partition's transaction, open or not
        (and logs a warning for each open one): begin only those that are not."""
        await self.ensure_transaction(transactional_id)
        if transactional_id not in self._transaction_producers:
            await super().maybe_begin_transaction(transactional_id)  # a new partition

    async def commit_transactions(
        self,
        tid_to_offset_map: Mapping[str, Mapping[TP, int]],
        group_id: str,
        start_new_transaction: bool = True,
    ) -> None:
        """Faust's, with the partitions' transactions committed side by side rather than
        one after the other: each is a few broker round trips, and the agent waits for
        the whole commit (record boundary), so with N partitions it waited N times."""

        async def commit(transactional_id: str, offsets: Mapping[TP, int]) -> None:
            await self.ensure_transaction(transactional_id)
            one = {transactional_id: offsets}
            await super(Producer, self).commit_transactions(one, group_id, start_new_transaction)

        await asyncio.gather(*(commit(tid, offsets) for tid, offsets in tid_to_offset_map.items()))


def new_producer(app: Any) -> Producer:
    """What ``App._new_producer`` returns, with the fixed class."""
    return Producer(app.transport, loop=app.loop, beacon=app.beacon)


def retry_coordinator_lookups(sender: Any) -> None:
    """Wrap ``sender._find_coordinator`` (aiokafka ``Sender``) so that a lookup failing for
    a retriable reason is tried again after the sender's backoff instead of ending the
    sender routine."""
    find = sender._find_coordinator

    async def find_coordinator(coordinator_type: Any, coordinator_key: str) -> Any:
        while True:
            try:
                return await find(coordinator_type, coordinator_key)
            except KafkaError as error:
                cause = error.__cause__
                if not (isinstance(cause, KafkaError) and cause.retriable):
                    raise
                log.warning("transaction coordinator lookup failed, retrying: %r", cause)
                await sender.client.force_metadata_update()
                await asyncio.sleep(sender._retry_backoff)

    sender._find_coordinator = find_coordinator
