"""The worker's own work outside Faust: a measurement for issue 4's design question (bench).

Not the product. The worker reads its inputs through Faust's per-record stream path, and
the bench shows that path alone at 0.10 to 0.17 of a raw aiokafka passthrough, under the
0.25 target. Would a worker that reads outside it (a batch loop on the consumer) meet
the target? This runs the worker's per-partition logic as it is (``PartitionRuntime``:
the clock, ``parse_event``, the processor, user states in RocksDB with their at-least-once
origins, the clock's snapshot) from a plain aiokafka ``getmany`` loop, committed like the
at-least-once passthrough: every ``COMMIT_INTERVAL`` the outputs are flushed, then each
user's latest state and the clock go to their changelog topics, then the offsets.

What it leaves out, so its figure is an upper bound for such a worker: no Faust (no
tables, rebalance handling, recovery, web server), no exactly-once, no ticks or
watermarks, no repartitioning (the bench's producer keys by user id), no metrics. RocksDB
is rocksdict with its default options. Bad records are counted, not sent to the DLQ (the
bench's backlog has none).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from aiokafka.structs import TopicPartition as AioTP
from rocksdict import Options, Rdict

from suppressor.adapters.partition import PartitionRuntime
from suppressor.adapters.settings import Settings
from suppressor.adapters.state import PartitionKV, RocksTable
from suppressor.core.clock import PartitionClock
from suppressor.core.codec import event_from_wire, output_records
from suppressor.core.engine import Engine
from suppressor.wire.events import parse_event
from suppressor.wire.outputs import DeadLetter, SourcePosition

COMMIT_INTERVAL: float = Settings.model_fields["commit_interval"].default
"""The worker's default ``commit_interval``; the passthroughs commit as often."""
LINGER_MS = round(Settings.model_fields["producer_linger"].default * 1000)
"""The worker's default ``producer_linger``."""


class RdictStore:
    """What ``PartitionKV`` uses of the worker's RocksDB table, on a rocksdict database of
    its own (no Faust table here)."""

    def __init__(self, path: Path) -> None:
        self.store = self  # PartitionKV reads ``table.store``
        self._db = Rdict(str(path), options=Options(raw_mode=True))

    def partition_db(self, partition: int) -> Rdict:
        return self._db

    def mark_dirty(self, partition: int) -> None:
        pass

    def visible_items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items():
            assert isinstance(key, bytes) and isinstance(value, bytes)
            yield key, value

    def close(self) -> None:
        self._db.close()


async def commit_window(
    consumer: AIOKafkaConsumer, wanted: int
) -> AsyncIterator[tuple[AioTP, list[ConsumerRecord[bytes, bytes]]]]:
    """The batches read in one ``COMMIT_INTERVAL``, until ``wanted`` records are read."""
    window_end = time.monotonic() + COMMIT_INTERVAL
    read = 0
    while read < wanted and time.monotonic() < window_end:
        batches = await consumer.getmany(timeout_ms=200, max_records=2000)
        for tp, messages in batches.items():
            read += len(messages)
            yield tp, messages


def backlog_consumer(bootstrap: str, inputs: Sequence[str], group: str) -> AIOKafkaConsumer:
    """A consumer of ``inputs`` from their first offsets, committing only when told."""
    return AIOKafkaConsumer(
        *inputs,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )


@asynccontextmanager
async def started(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> AsyncIterator[None]:
    """Both clients started for the block, and both stopped after it, even on error."""
    try:
        await consumer.start()
        await producer.start()
        yield
    finally:
        await producer.stop()
        await consumer.stop()


async def flush_and_commit(
    producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, offsets: dict[AioTP, int]
) -> None:
    """At least once: everything sent is on the broker before the offsets read are committed."""
    await producer.flush()
    if offsets:
        await consumer.commit(offsets)


async def batch_loop(
    bootstrap: str,
    inputs: Sequence[str],
    prefix: str,
    engine: Engine,
    total: int,
    workdir: Path,
) -> dict[str, Any]:
    """Read ``total`` records of ``inputs`` from the start; write ``prefix``-named outputs."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    consumer = backlog_consumer(bootstrap, inputs, f"{prefix}group")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=LINGER_MS)
    policy = engine.policy
    hybrid = policy.clock != "event"
    index = {topic: number for number, topic in enumerate(inputs)}
    runtimes: dict[int, PartitionRuntime] = {}
    stores: list[RdictStore] = []

    def runtime(partition: int) -> PartitionRuntime:
        found = runtimes.get(partition)
        if found is None:
            now = time.monotonic()
            user_store = RdictStore(workdir / f"users-{partition}")
            clock_store = RdictStore(workdir / f"clock-{partition}")
            stores.extend((user_store, clock_store))
            users = PartitionKV(cast(RocksTable, user_store), partition)
            clocks = PartitionKV(cast(RocksTable, clock_store), partition)
            clock = PartitionClock(inputs, policy.idle_timeout, hybrid, now)
            found = runtimes[partition] = PartitionRuntime(
                engine, users, clocks, clock, now, track_origins=True
            )
        return found

    done = bad = records_out = 0
    send = producer.send

    async def handle(partition: int, messages: list[ConsumerRecord[bytes, bytes]]) -> None:
        nonlocal bad, records_out
        partition_runtime = runtime(partition)
        for message in messages:
            position = SourcePosition(
                topic=message.topic, partition=message.partition, offset=message.offset
            )
            parsed = parse_event(message.value or b"", position)
            if isinstance(parsed, DeadLetter):
                bad += 1
                continue
            origin = (f"{index[message.topic]}.{message.partition}", message.offset)
            work = partition_runtime.on_event(
                message.topic, event_from_wire(parsed), time.monotonic(), origin
            )
            for kind, key, value in output_records(work.outcome, policy.version):
                await send(prefix + kind, value, key=key)
            records_out += len(work.outcome.actions) + len(work.outcome.decisions)

    async def save_states() -> None:
        """The outputs first, then the latest states that hold them, and the clocks."""
        await producer.flush()
        for partition, partition_runtime in runtimes.items():
            for key, state in partition_runtime.flush_users():
                await send(f"{prefix}users-changelog", state, key=key, partition=partition)
            for key, clock in runtimes[partition].save_clock():
                await send(f"{prefix}clock-changelog", clock, key=key, partition=partition)

    first: float | None = None
    try:
        async with started(consumer, producer):
            while done < total:
                offsets: dict[AioTP, int] = {}
                async for tp, messages in commit_window(consumer, total - done):
                    first = first or time.monotonic()
                    await handle(tp.partition, messages)
                    offsets[tp] = messages[-1].offset + 1
                    done += len(messages)
                await save_states()
                await flush_and_commit(producer, consumer, offsets)
            seconds = time.monotonic() - (first or time.monotonic())
    finally:
        for store in stores:
            store.close()
    return {
        "events": done,
        "bad": bad,
        "seconds": seconds,
        "events_per_s": done / seconds,
        "records_out": records_out,
    }


OUTPUTS = ("actions", "decisions", "conversions", "users-changelog", "clock-changelog")
"""The loop's topics, each ``prefix`` + name."""
