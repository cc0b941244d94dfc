"""What the agent does with each record: parse, route, process, send.

One agent reads every input topic, the repartition topic and the ticks topic.
All three kinds of record land here, and everything they cause is sent in the
transaction of that record (``SourceSender``), so exactly-once covers it all:

- an input event whose user lives on another partition (the producer did not
  key by user_id, or used another partitioner) is forwarded, as it came, to the
  internal repartition topic on the user's partition, and processed there;
- a good event on its user's partition goes through the partition's processor;
- a bad record goes to the dead-letter topic with its topic/partition/offset;
- a tick (see ``suppressor.adapters.app``) advances the partition's stream time with the
  wall clock, firing due deadlines inside the agent, where table writes and
  sends belong to a transaction. A timer cannot do that itself: outside an
  agent Faust has no current event, hence no partition for table writes, and a
  transactional send from it would sit in a transaction that only commits when
  that partition next commits input offsets - never, on a quiet partition;
- each tick also sends the partition's *watermark* (how far its inputs have
  got) to every other partition on the repartition topic. A partition's stream
  time waits for the other partitions' watermarks as for any input topic, so an
  event that takes the detour through the repartition topic (a commit later,
  after its source raced ahead in a catch-up) is not late; with the hybrid clock,
  a live partition's watermarks hold the others back only while it forwards them
  events (``Pipeline._fresh``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import faust
from faust.types import TP

from suppressor.adapters.faust_internals.consumer import Consumer
from suppressor.adapters.faust_internals.redelivery import Deliveries
from suppressor.adapters.faust_internals.sender import SourceSender
from suppressor.adapters.observe import WorkerObserver
from suppressor.adapters.partition import IDLE, PartitionRuntime, RecordOutcome
from suppressor.adapters.state import UNLIMITED, Origin, PartitionKV, RocksTable
from suppressor.adapters.stopping import STOPPER, is_kafka_error
from suppressor.adapters.topology import Topology
from suppressor.core.admission import (
    INTERNAL_ERROR,
    MAX_KEY_BYTES,
    admit,
    admit_fast,
    describe,
    failure_dead_letter,
    traceback_without_values,
    user_hash,
)
from suppressor.core.clock import PartitionClock
from suppressor.core.codec import (
    ACTIONS,
    CONVERSIONS,
    DECISIONS,
    dead_letter_bytes,
    event_bytes,
    output_records,
)
from suppressor.core.engine import Engine, Failure
from suppressor.core.model import Event
from suppressor.wire.outputs import DeadLetter, SourcePosition

log = logging.getLogger(__name__)

Record = Any
"""A record as the consumer fetched it: aiokafka's ``ConsumerRecord`` (``topic``,
``partition``, ``offset``, ``key``, ``value``, ``headers``, ``timestamp`` in ms)."""


class Pipeline:
    def __init__(
        self,
        app: faust.App,
        topology: Topology,
        engine: Engine,
        users: RocksTable,
        clocks: RocksTable,
        observer: WorkerObserver,
        hybrid: bool,
        now: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.topology = topology
        self.engine = engine
        self.users = users
        self.clocks = clocks
        self.observer = observer
        self.hybrid = hybrid
        self.now = now
        self.wall_ms = wall_ms
        self.sender = SourceSender(app)
        self.app = app
        self.runtimes: dict[int, PartitionRuntime] = {}
        self.records = 0
        self.redelivered = 0
        self.max_state_bytes = UNLIMITED
        """The largest encoded user state the changelog takes (set at start, see
        suppressor.adapters.app)."""
        self._started = 0.0
        self._owners: dict[str, int] = {}
        self._sent: list[tuple[PartitionKV, Any]] = []  # changelog sends of this commit
        self.crashed: str | None = None
        """The error class that last stopped the agent, until it processes a record again."""
        self._positions = Deliveries()
        self._input_index = {topic: i for i, topic in enumerate(topology.inputs)}
        self.policy_version = engine.policy.version
        self._output_topics = {
            ACTIONS: topology.actions,
            DECISIONS: topology.decisions,
            CONVERSIONS: topology.conversions,
        }

    @property
    def at_least_once(self) -> bool:
        """Read when records flow, never before: Faust caches ``App.in_transaction``, and
        it is False until the app runs in a worker (read at construction, it stayed False
        and the whole worker ran at least once)."""
        return not self.app.in_transaction

    # --- records ---------------------------------------------------------------------

    async def handle_batch(
        self, tp: TP, records: Sequence[Record], current: Callable[[], bool]
    ) -> int | None:
        """Records of one partition, in order (the consumer's batch path, under the record
        boundary): the offset of the last one done, None when none was (stopping)."""
        done: int | None = None
        await self.sender.begin(tp)  # no commit runs until the chunk is done
        for record in records:
            if not current():  # a seek or a rebalance: the rest comes again
                break
            if not await self.handle(tp, record):
                break
            done = record.offset
        self.observer.on_chunk_done()
        return done

    async def handle(self, tp: TP, message: Record) -> bool:
        """Process one record; False when the worker is stopping (the record is not done).
        An error of the record's own processing costs this record only: it goes to the
        dead-letter topic as ``internal_error``. A Kafka error (a send refused, a fenced
        producer, an authorization) stops the worker: some of the record's sends may be
        out, so only a restart from the committed offsets (aborting the open transaction,
        or, at least once, skipping what the restored states hold) keeps the outputs
        exact (see suppressor.adapters.stopping)."""
        try:
            await self._handle(tp, message)
            return True
        except Exception as error:
            if not is_kafka_error(error):
                try:
                    await self._internal_error(tp, message, error)
                    return True
                except Exception as again:  # the dead letter could not be sent either
                    error = again
            STOPPER.stop_fatally(error)
            return False

    async def _handle(self, tp: TP, message: Record) -> None:
        self._started = self.now()  # the decision latency counts the engine's own time
        self.records += 1
        if not self._positions.first(tp, message.offset):
            return
        runtime = self.runtime(message.partition)
        if message.topic == self.topology.ticks:
            await self._tick(tp, runtime)
            return
        internal: RepartitionHeaders | None = None
        if message.topic == self.topology.repartition:
            checked = _internal_headers(
                message, self.topology.partitions, len(self.topology.inputs)
            )
            if isinstance(checked, RepartitionHeaders) and checked.watermark is not None:
                checked = self._plausible(checked)
            if isinstance(checked, str):
                dead = DeadLetter.of(
                    message.value or b"", _position(message), BAD_INTERNAL_RECORD, checked
                )
                await self._dead_letter(tp, dead, message.key)
                return
            internal = checked
            if internal.is_watermark:
                source = self.topology.source(internal.source)
                fresh = self._fresh(internal.watermark)
                work = runtime.on_watermark(source, internal.watermark, self.now(), fresh)
                await self._finish(tp, work)
                return
        reference = None if internal is not None else self.wall_ms()
        skew = self.engine.policy.max_future_skew
        key = message.key if internal is None else None
        raw = message.value or b""
        # A good record builds no SourcePosition (a pydantic model): only a dead letter needs it.
        fast = key is None or len(key) <= MAX_KEY_BYTES
        event = (fast and admit_fast(raw, reference, skew)) or admit(
            raw, _position(message), reference, skew, key
        )
        if isinstance(event, DeadLetter):
            await self._dead_letter(tp, event, message.key)
            return
        if internal is not None:  # admitted by the partition that forwarded it
            source = self.topology.source(internal.source)
            work = runtime.on_forwarded(source, event, self.now(), internal.origin)
            if not work.redelivered:
                self.observer.on_event(message.partition, event, message.timestamp / 1000)
            await self._finish(tp, work, message, event)
            return
        owner = self._owner(event.user_id)
        origin = (f"{self._input_index[message.topic]}.{message.partition}", message.offset)
        if owner != message.partition:
            runtime.observe_only(message.topic, event.ts, self.now())
            await self._forward(tp, event_bytes(event), event.user_id, owner, origin)
            return
        work = runtime.on_event(message.topic, event, self.now(), origin)
        if not work.redelivered:
            self.observer.on_event(message.partition, event, message.timestamp / 1000)
        await self._finish(tp, work, message, event)

    def _owner(self, user_id: str) -> int:
        """The user's partition (murmur2 in pure Python: remembered for recent users)."""
        owners = self._owners
        owner = owners.get(user_id)
        if owner is None:
            if len(owners) >= OWNERS_REMEMBERED:
                owners.clear()
            owner = owners[user_id] = self.topology.partition_for(user_id)
        return owner

    def _plausible(self, internal: RepartitionHeaders) -> RepartitionHeaders | str:
        """A watermark is bounded by the wall clock as an input event's ts is: a forged one
        far ahead would move stream time on and fire every deadline of the partition."""
        skew = self.engine.policy.max_future_skew
        reference = self.wall_ms()
        if internal.watermark is not None and internal.watermark > reference + skew:
            return (
                f"header {WATERMARK} is more than max_future_skew ahead of the wall clock "
                f"({internal.watermark} > {reference} + {skew} ms)"
            )
        return internal

    async def _internal_error(self, tp: TP, message: Record, error: Exception) -> None:
        """An error of this record's own processing: to the dead-letter topic, and on."""
        self.observer.on_failure("internal_error", "record")
        log.error(
            "internal error on %s[%d]@%d; the record goes to the dead-letter topic:\n%s",
            message.topic,
            message.partition,
            message.offset,
            traceback_without_values(error),
        )
        where = _position(message)
        dead = DeadLetter.of(message.value or b"", where, INTERNAL_ERROR, describe(error))
        await self._dead_letter(tp, dead, message.key)

    async def _failed(
        self, source: TP, failure: Failure, message: Record | None, event: Event | None
    ) -> None:
        """A user's step that raised inside the processor (nothing of it was applied): the
        event at fault to the dead-letter topic (``event`` is the record's own event)."""
        stage = "event" if failure.event is not None else "deadline"
        self.observer.on_failure(failure.code, stage)
        detail = (
            traceback_without_values(failure.error)
            if failure.code == INTERNAL_ERROR
            else describe(failure.error)
        )
        log.error(
            "partition %d: %s while applying %s of user %s; the state before it stays:\n%s",
            source.partition,
            failure.code,
            "an event" if failure.event is not None else "due deadlines",
            user_hash(failure.user_id),
            detail,
        )
        raw, where = None, SourcePosition()
        if message is not None:
            raw = message.value or b""
            where = _position(message)
        current = event.event_id if event is not None else None
        dead = failure_dead_letter(failure, raw, where, current)
        if dead is not None:
            key = message.key if message is not None and dead.source.topic else None
            await self._dead_letter(source, dead, key)

    async def _tick(self, source: TP, runtime: PartitionRuntime) -> None:
        """Advance by the wall clock, and tell every other partition how far this one's
        inputs have got (see PartitionRuntime.on_watermark)."""
        now = self.now()
        await self._finish(source, runtime.on_tick(now))
        watermark = runtime.watermark(self.topology.inputs, now)
        if watermark is IDLE:
            return  # silence: the other partitions leave this one out after idle_timeout
        headers = [
            (SOURCE, str(source.partition).encode()),
            (WATERMARK, b"" if watermark is None else str(watermark).encode()),
        ]
        for partition in range(self.topology.partitions):
            if partition != source.partition:
                await self.sender.send(
                    source, self.topology.repartition, None, b"", partition, headers
                )

    def _fresh(self, watermark: int | None) -> bool:
        """With the hybrid clock: whether another partition's watermark is within
        ``idle_timeout`` of the wall clock, so that partition is live, not catching up. It
        then holds this partition's stream time back only while it forwards events here
        (``PartitionRuntime.on_watermark``). A live worker whose producers key by user id
        forwards nothing, and waiting for every other partition's watermark to come round
        through the repartition topic (a commit later under exactly_once) kept its stream
        time, hence its decisions, hundreds of ms to seconds behind the wall clock. In a
        catch-up, of the inputs or of this partition's share of the repartition topic, the
        watermarks read are far behind: they keep holding it back, since an event
        forwarded late there would be late by the whole backlog. After a quiet spell, a
        forwarded event can be late by its trip through the repartition topic, as the next
        event of an input topic left out as idle can (SPEC section 5)."""
        if not self.hybrid or watermark is None:
            return False
        return watermark >= self.wall_ms() - self.engine.policy.idle_timeout

    def runtime(self, partition: int) -> PartitionRuntime:
        """The partition's runtime, built on its first record (recovery is complete by then)."""
        runtime = self.runtimes.get(partition)
        if runtime is None:
            now = self.now()
            clock = PartitionClock(
                self.topology.clock_topics(partition),
                self.engine.policy.idle_timeout,
                self.hybrid,
                now,
                lambda topic: self._has_backlog(topic, partition),
            )
            runtime = PartitionRuntime(
                self.engine,
                PartitionKV(self.users, partition),
                PartitionKV(self.clocks, partition),
                clock,
                now,
                track_origins=self.at_least_once,
                max_state_bytes=self.max_state_bytes,
            )
            log.info(
                "partition %d: %d users with pending work indexed, stream time %d",
                partition,
                runtime.tracked_users,
                runtime.clock.time,
            )
            self.runtimes[partition] = runtime
        return runtime

    def _has_backlog(self, topic: str, partition: int) -> bool:
        """For the clock: an input topic with records still to read is never idle."""
        if topic not in self.topology.inputs:
            return False  # another partition's forwarding: its watermarks tell
        consumer = self.app.consumer
        if not isinstance(consumer, Consumer):
            return False
        tp = TP(topic, partition)
        return consumer.has_backlog(tp, self._positions.last(tp))

    def forget_partitions(self, revoked: set[TP]) -> None:
        """Revoked partitions: their runtimes go; a later assignment rebuilds from the table.
        Their sends not yet committed are forgotten too: the rebalance's commit is done,
        and what it did not commit is aborted (exactly once) or read again."""
        mine = set(self.topology.consumed)
        gone: set[int] = set()
        for tp in revoked:
            if tp.topic in mine:
                runtime = self.runtimes.pop(tp.partition, None)
                if runtime is not None:
                    gone |= {id(runtime.users), id(runtime.clocks)}
                self._positions.forget(tp)
        if gone:
            self._sent = [(kv, future) for kv, future in self._sent if id(kv) not in gone]

    # --- sends -------------------------------------------------------------------------

    async def _finish(
        self,
        source: TP,
        work: RecordOutcome,
        message: Record | None = None,
        event: Event | None = None,
    ) -> None:
        partition = source.partition
        send = self.sender.send
        if work.redelivered:
            self.redelivered += 1
        topics = self._output_topics
        for kind, key, value in output_records(work.outcome, self.policy_version):
            # keyed by user id, and every user of this record is this partition's: the
            # partition the producer's partitioner would pick (without hashing again)
            await send(source, topics[kind], key, value, partition)
        for failure in work.outcome.failures:
            await self._failed(source, failure, message, event)
        self.observer.on_work(self.runtimes[partition], work, self._started)

    async def before_commit(self) -> None:
        """The users' state and each partition's moved clock go into the commit about to
        happen, once per changed key (``PartitionKV.take``); ``after_commit`` writes them
        to RocksDB once the commit is done.

        Exactly once, they are sent in the partition's transaction, which commits them with
        the outputs and the input offsets. At least once, they go only once every output
        sent so far is delivered: a state in the changelog then never holds an event whose
        actions could still be lost. After a crash, the records since the committed offsets
        are read again; those already in a user's restored state are skipped
        (``UserStateStore.claim``), the others are processed on the state they were first
        processed on, so their actions come out again with the same ids, as duplicates.
        The clock follows the states it goes with. The commit itself (Faust's) flushes
        again before committing offsets."""
        users = self.users.changelog_topic.get_topic_name()
        clocks = self.clocks.changelog_topic.get_topic_name()
        runtimes = list(self.runtimes.items())
        sent = self._sent
        if self.at_least_once and any(runtime.users.held for _, runtime in runtimes):
            await self.app.producer.flush()
            for partition, runtime in runtimes:
                for key, value in runtime.users.take():
                    future = await self.sender.send_plain(users, key, value, partition)
                    sent.append((runtime.users, future))
            await self.app.producer.flush()
        for partition, runtime in runtimes:
            source = TP(self.topology.ticks, partition)  # any of the partition's topics will do
            writes = [] if self.at_least_once else runtime.users.take()
            clock = runtime.save_clock()
            if writes or clock:
                await self.sender.begin(source)
            for key, value in writes:
                future = await self.sender.send(source, users, key, value, partition)
                sent.append((runtime.users, future))
            for key, value in clock:
                future = await self.sender.send(source, clocks, key, value, partition)
                sent.append((runtime.clocks, future))

    async def after_commit(self, committed: bool) -> None:
        """The commit is done: what ``before_commit`` sent is in the changelogs (their
        offsets known), so it goes to RocksDB with its checkpoint. When nothing was
        committed (no input offset had moved) it waits for the next commit, which commits
        the transaction it is in."""
        if not committed:
            return
        sent, self._sent = self._sent, []
        applied: set[int] = set()
        for kv, future in sent:
            metadata = await future  # done: the commit waited for every send
            kv.sent(metadata.offset)
        for _, runtime in list(self.runtimes.items()):
            for kv in (runtime.users, runtime.clocks):
                if id(kv) not in applied:
                    applied.add(id(kv))
                    kv.apply()

    async def _forward(
        self, source: TP, value: bytes, user_id: str, owner: int, origin: Origin
    ) -> None:
        """To the owner's partition: the event as parsed (known fields only, so nothing
        personal a producer added is copied to another topic), and where it was read."""
        headers = [
            (SOURCE, str(source.partition).encode()),
            (ORIGIN, f"{origin[0]}.{origin[1]}".encode()),
        ]
        await self.sender.send(
            source, self.topology.repartition, user_id.encode(), value, owner, headers
        )

    async def _dead_letter(self, source: TP, dead: DeadLetter, key: bytes | None) -> None:
        """The key goes with it only when it is a plausible user id (see MAX_KEY_BYTES)."""
        if key is not None and len(key) > MAX_KEY_BYTES:
            key = None
        await self.sender.send(source, self.topology.dlq, key, dead_letter_bytes(dead))
        self.observer.on_dead_letter(dead)
        where = dead.source
        log.warning(
            "record refused to the dead-letter topic: %s",
            dead.error_code,
            extra={
                "topic": where.topic,
                "partition": where.partition,
                "offset": where.offset,
                "code": dead.error_code,
            },
        )

    async def send_catalog_dead_letter(self, dead: DeadLetter, partition: int) -> None:
        """A bad catalog record: outside any transaction (suppressor.adapters.catalog_reader)."""
        await self.sender.send_plain(self.topology.dlq, None, dead_letter_bytes(dead), partition)
        self.observer.on_dead_letter(dead)


OWNERS_REMEMBERED = 100_000
"""Users whose partition ``Pipeline._owner`` keeps (cleared when full: a few MB at most)."""

SOURCE = "suppressor-source"
"""Header of a repartition record: the partition that forwarded it."""
WATERMARK = "suppressor-watermark"
"""Header of a watermark record on the repartition topic: ms, or empty for unknown."""
ORIGIN = "suppressor-origin"
"""Header of a forwarded event: where it was read, ``<input index>.<partition>.<offset>``."""


BAD_INTERNAL_RECORD = "bad_internal_record"
"""Dead-letter code: a repartition-topic record whose headers this worker did not write."""


class RepartitionHeaders(NamedTuple):
    """A repartition-topic record's headers: who forwarded it, and for a watermark record
    the watermark (ms, or None for unknown)."""

    source: int
    is_watermark: bool = False
    watermark: int | None = None
    origin: Origin | None = None


def _internal_headers(message: Record, partitions: int, inputs: int) -> RepartitionHeaders | str:
    """The repartition topic's headers, checked (a string says what is wrong). Read on
    that topic only: on an input topic they are whatever a producer put there."""
    raw = message.headers
    pairs = (raw.items() if isinstance(raw, Mapping) else raw) if raw else ()
    headers = {str(key): bytes(value or b"") for key, value in pairs}
    if SOURCE not in headers:
        return f"no {SOURCE} header"
    try:
        source = int(headers[SOURCE])
        mark = headers.get(WATERMARK)
        watermark = int(mark) if mark else None
    except ValueError:
        return f"header {SOURCE} or {WATERMARK} is not a number"
    if not 0 <= source < partitions or source == message.partition:
        return f"header {SOURCE} names no other partition: {source}"
    origin: Origin | None = None
    if ORIGIN in headers:
        parts = headers[ORIGIN].split(b".")
        if len(parts) != 3 or not all(part.isdigit() for part in parts):
            return f"header {ORIGIN} is not <input>.<partition>.<offset>"
        index, partition, offset = (int(part) for part in parts)
        if index >= inputs or partition != source:
            return f"header {ORIGIN} names no input partition of {SOURCE}: {headers[ORIGIN]!r}"
        origin = (f"{index}.{partition}", offset)
    return RepartitionHeaders(source, mark is not None, watermark, origin)


def _position(message: Record) -> SourcePosition:
    return SourcePosition(topic=message.topic, partition=message.partition, offset=message.offset)
