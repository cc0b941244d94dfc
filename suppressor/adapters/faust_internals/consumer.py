"""The consumer Faust builds, with its exactly-once and seek bugs worked around.

See README.md in this folder for every patch: what Faust does, the invariant kept, the
upstream issue and the test that proves it.

Commits between a record's sends and its ack. Faust commits from a timer task
while the agent runs, and acks a record only when the agent asks for the next
one; a commit that runs while a record is half-way (its sends in the open
transaction, its offset not yet acked) commits the outputs without the input
offset, and the record is processed again after a rebalance or a crash: a
duplicate. Here the agent holds ``Consumer.record_boundary`` from a record's
first read to its ack (manual acks), and every commit takes the same lock, so a
transaction always ends on a record boundary. ``Consumer.before_commit`` runs
inside that lock, just before the offsets are committed: the place to write
state that belongs with the committed offsets (the stream clocks).

Acks forgotten before the rebalance commit. On a rebalance Faust's consumer
drops its bookkeeping of acked offsets for the revoked partitions (with the
eager protocol: all of them) *before* the app waits for the streams and commits,
so that commit finds nothing to commit; every record since the last periodic
commit is read and processed again, its outputs already in the open
transaction: duplicates, even with exactly_once and no crash. Here the app's
handler runs first and the bookkeeping is dropped afterwards.

Recovery that reads nothing. Under exactly_once Faust takes a changelog's
highwater from the consumer's *cached* last stable offset, which is unknown
(-1) for a partition this consumer has not fetched from yet - a partition just
taken over in a rebalance. Recovery then believes the changelog empty, skips
it, and the worker carries on with that partition's users missing. Here the
highwaters are asked of the broker (ListOffsets, read_committed: the last
stable offset).

Records fetched before a seek. After recovery Faust seeks every partition to
its committed offset, but its fetch loop goes on handing on the batch it had
fetched before (or while) the seek ran, and records the offsets it hands on:
the re-fetched records then look already read and are dropped, or the jump
from the committed offset to the stale batch counts as a gap that is marked
acked and committed: records lost after a restart. Faust's seek is not atomic
either (aiokafka asks the broker for one partition's committed offset at a time and
seeks it at once), so no moment
on the event loop separates records fetched before it from those fetched after;
telling them apart by timing lost good records twice (a restarted worker never
read some inputs again). Here, after Faust's seek, every stream partition is
sought to its committed offset once more in one step *in the consumer thread*,
which counts the step (the epoch); the thread also stamps every batch it
fetches with the epoch of the moment it fetched it, and fetches and seeks run
there one at a time. From the start of Faust's seek until ours is done, no stream
record is handed on, and after it only those of batches fetched after it (the
seek moved the partitions back: the others come again); handing on records
fetched in between let the agent process some out of order, and the seek then
made the skipped ones look processed (931 actions changed in one kill -9 run).
Records handed on before are marked stale (the stream skips a record of
another generation), and the fetch loop's bookkeeping of them is ignored.

What is still to come (not Faust's, the clock's: ``Consumer.has_backlog``). An
input partition with records still to come is never idle (suppressor.core.clock); that
includes the records of a batch Faust has taken from aiokafka and not yet handed
on, which aiokafka's position is already past.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP, Message
from faust.types.transports import TPorTopicSet
from rocksdict import WriteBatch

from suppressor.adapters.faust_internals.producer import Producer

log = logging.getLogger(__name__)


class _ReadOffsets(defaultdict[TP, int | None]):
    """Faust's ``Consumer._read_offset``, refusing the one write that would undo a seek:
    the fetch loop's "read up to here" for a record it took before the seek."""

    def __init__(self, consumer: Consumer) -> None:
        super().__init__(lambda: None)
        self._consumer = consumer

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        if not self._consumer._is_stale(tp, offset):
            super().__setitem__(tp, offset)

    def reset(self, tp: TP, offset: int | None) -> None:
        """After a seek of ours: whatever the fetch loop recorded before."""
        super().__setitem__(tp, offset)


RECENT = 50_000
"""At most this many records handed on and not yet acked are remembered (more than the
agent's buffer and a fetch hold); acked ones are forgotten as they come."""

STALE = -1
"""Generation id given to a record fetched before a seek: Faust's streams skip it."""


BatchHandler = Callable[[TP, Sequence[Any], Callable[[], bool]], Awaitable[int | None]]
"""``(tp, records, current) -> last offset processed`` (None: none, the worker is stopping):
the app's work on a batch of one partition's records (aiokafka ``ConsumerRecord``s), under
the record boundary; ``current()`` turns False when a seek or a rebalance made the rest
stale."""

CHUNK = 500
"""Records of one partition handled under one hold of the record boundary: commits and
the ticks' records get their turn between chunks, so a large fetch delays them little."""


class Consumer(AIOKafkaConsumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_topics: frozenset[str] = frozenset()
        """Topics whose records go to ``batch_handler`` a fetched batch at a time, instead
        of through Faust's conductor, stream and agent one by one (see ``_drain_messages``)."""
        self.batch_handler: BatchHandler | None = None
        self._processed: dict[TP, int] = {}  # last offset done through the batch path
        self._fetched_positions: dict[TP, int | None] = {}  # after the last fetched batch
        self.record_boundary = asyncio.Lock()
        self.before_commit: Callable[[], Awaitable[None]] | None = None
        self.after_commit: Callable[[bool], Awaitable[None]] | None = None
        """Run under the record boundary just before and just after each commit (True:
        offsets were committed, with the transaction under exactly_once)."""
        self._epoch = 0  # seeks of ours done, counted in the consumer thread as it seeks
        self._wanted = 0  # the epoch a record must be fetched in to be handed on
        self._fetched_epoch = 0  # the epoch when the thread last fetched a batch
        self._in_flight: tuple[TP, int, int] | None = None  # (tp, offset, epoch) yielded last
        self._since_seek: deque[Message] = deque(maxlen=RECENT)  # handed on, not acked yet
        self._taken: dict[TP, int] = {}  # last offset per tp in the batches taken since the seek
        self._reads = _ReadOffsets(self)
        self._read_offset = self._reads
        self.fetch_hold: tuple[int, int] | None = None
        """(fetch_min_bytes, fetch_max_wait_ms) for the worker's aiokafka consumer; None:
        Faust's (1 byte, 1,500 ms: the broker answers at the first record)."""

    def _new_consumer_thread(self) -> Any:
        """Faust's thread, stamping each fetched batch with the seek epoch it was fetched
        in: the stamp is taken in the thread, where fetches and seeks run one at a time."""
        thread = super()._new_consumer_thread()
        fetch = thread._fetch_records

        async def fetch_stamped(*args: Any, **kwargs: Any) -> Any:
            records = await fetch(*args, **kwargs)
            self._fetched_epoch = self._epoch
            if records:  # what the batch drained up to, control records included
                state = thread._ensure_consumer()._subscription.subscription.assignment
                self._fetched_positions = {
                    tp: getattr(state.state_value(tp), "position", None) for tp in records
                }
            return records

        thread._fetch_records = fetch_stamped  # type: ignore[method-assign]
        create = thread._create_worker_consumer

        def create_holding(*args: Any, **kwargs: Any) -> Any:
            consumer = create(*args, **kwargs)
            if self.fetch_hold is not None:  # read by consumer.start(); Faust passes neither
                min_bytes, max_wait_ms = self.fetch_hold
                consumer._fetch_min_bytes, consumer._fetch_max_wait_ms = min_bytes, max_wait_ms
                log.info("fetches held up to %d ms for %d bytes", max_wait_ms, min_bytes)
            return consumer

        thread._create_worker_consumer = create_holding  # type: ignore[method-assign]
        return thread

    async def _wait_next_records(
        self, timeout: float
    ) -> tuple[Mapping[TP, list[Any]] | None, set[TP] | None]:
        """Faust's, noting each stream partition's last offset in the batch it takes from
        aiokafka (see ``has_backlog``): from here on aiokafka's position is past the whole
        batch, though the records are handed on to the agent one by one, for seconds
        when a batch is large."""
        records, active = await super()._wait_next_records(timeout)
        if records and self._fetched_epoch >= self._wanted:  # a stale batch is not handed on
            taken = self._taken
            for tp, batch in records.items():
                if batch and not tp.topic.endswith("-changelog"):
                    taken[tp] = batch[-1].offset
        return records, active

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        """Faust's, without the stream records of a batch fetched before the seek under
        way or done last (that seek moves or moved their partitions back: they come
        again), and remembering the records handed on, to be marked stale at the next."""
        epoch: int | None = None
        since = self._since_seek
        async for tp, message in super().getmany(timeout):
            if epoch is None:
                epoch = self._fetched_epoch  # this batch's: no other fetch runs meanwhile
            changelog = tp.topic.endswith("-changelog")
            if not changelog and epoch < self._wanted:
                self._in_flight = None
                continue
            self._in_flight = (tp, message.offset, epoch)
            if not changelog:
                while since and since[0].acked:
                    since.popleft()  # processed: nothing to mark any more
                since.append(message)
            yield tp, message

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's fetch loop, handing the records of ``batch_topics`` to ``batch_handler``
        a fetched batch at a time, partition by partition, a chunk per hold of the record
        boundary. Faust's own path costs several tasks, a queue and four sensor calls per
        record (two thirds of a catching-up worker's CPU, BENCHMARKS.md); its bookkeeping
        is replaced: no ``Message`` is made or acked, the offset to commit is the last one
        done (``_new_offset``). Other records (the tables' changelogs, recovery and
        standbys) take Faust's path as before. A batch fetched before the seek under way or
        done last, or by an older consumer generation, is dropped: it comes again."""
        if self.batch_handler is None:
            await super()._drain_messages(fetcher)
            return
        stopped, fetcher_stopped = self._stopped.is_set, fetcher._stopped.is_set
        try:
            while not (stopped() or fetcher_stopped()):
                records, active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:  # as Faust's getmany: back to the committed offsets
                    await self._rewind_changelogs(records)
                    try:
                        await self.perform_seek()
                    except Exception as error:  # as Faust's getmany: the rebalance seeks again
                        # A rebalance may have taken a partition away meanwhile (aiokafka:
                        # "No current assignment for partition"): the seek after the next
                        # recovery puts every partition back at its committed offset; till
                        # then no stream record is handed on (changelogs are, _hand_on).
                        log.warning(
                            "seek while the flow is stopped failed (stream records wait "
                            "for the seek after recovery): %r",
                            error,
                        )
                    continue
                await self._hand_on(records, active)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    async def _hand_on(self, records: Mapping[TP, list[Any]], active: set[TP] | None) -> None:
        epoch, generation = self._fetched_epoch, self.app.consumer_generation_id
        app = self.app

        def live() -> bool:
            return (
                app.consumer_generation_id == generation
                and self.flow_active
                and not self.should_stop
            )

        def current() -> bool:
            return epoch >= self._wanted and live()

        handed: set[TP] = set()
        await self._hand_on_current(records, active, live, current, handed)
        if len(handed) < len(records):
            await self._rewind_changelogs(
                {tp: batch for tp, batch in records.items() if tp not in handed}
            )

    async def _hand_on_current(
        self,
        records: Mapping[TP, list[Any]],
        active: set[TP] | None,
        live: Callable[[], bool],
        current: Callable[[], bool],
        handed: set[TP],
    ) -> None:
        """``live()``: same generation, flow running, not stopping; ``current()``: that,
        and fetched after the last seek of ours. The seek epoch is the stream partitions'
        alone (``_seek_again`` never moves a changelog partition): a changelog batch goes
        to recovery whatever the epoch. Gated by it too, a seek that failed part-way (a
        rebalance took a partition away while the flow was stopped: ``_drain_messages``)
        left the epoch behind until the next seek of ours, which comes only after
        recovery: every changelog batch was dropped, fetched again and dropped again, and
        recovery stalled (the production storm: 411 and 428 deadline actions lost)."""
        for tp, batch in records.items():
            if not batch:
                continue
            if not live():
                return
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                # paused since the fetch (Faust's active set is changed in place): not
                # handed on, so a changelog's records are fetched again (_rewind_changelogs)
                continue
            if tp.topic not in self.batch_topics:
                handed.add(tp)
                if not self._restore(tp, batch):
                    await self._hand_on_one_by_one(tp, batch)
                continue
            if not current():
                continue  # fetched before the seek under way or done last: it comes again
            handed.add(tp)
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            for start in range(0, len(batch), CHUNK):
                async with self.record_boundary:
                    if not current():
                        return
                    chunk = batch[start : start + CHUNK]
                    done = await self._handle_chunk(tp, chunk, current)
                if done is None or not current():
                    return

    async def _rewind_changelogs(self, records: Mapping[TP, list[Any]]) -> None:
        """Changelog records fetched and not handed on (the flow stopped, a seek or a new
        generation made the batch stale, or the partition was paused since the fetch) are
        fetched again: each such changelog partition goes back to its batch's first
        offset, if nothing has sought it since the fetch (its position is still the one
        the fetch left). Only the stream partitions are sought to their committed offsets
        after such a drop; a changelog batch dropped with them was never read again, and
        a standby then skipped those records while its checkpoint moved on past them
        (the production storm: a standby that became active fired deadlines its changelog
        had already fired). A partition sought since (recovery seeks each changelog
        partition to its checkpoint) is left where that seek put it: going back to a
        batch fetched before the seek read the changelog again from its start."""
        fetched = self._fetched_positions
        firsts = {
            tp: (batch[0].offset, fetched.get(tp))
            for tp, batch in records.items()
            if batch and self._is_changelog_tp(tp)
        }
        if not firsts:
            return
        thread = self._thread
        client = thread._ensure_consumer()

        async def rewind() -> None:
            assignment = client._subscription.subscription.assignment
            still = client._subscription.assigned_partitions()
            for tp, (first, left) in firsts.items():  # no await from here on: one step
                state = assignment.state_value(tp) if tp in still else None
                position = getattr(state, "position", None) if state is not None else None
                if position is not None and position == left and position > first:
                    client.seek(tp, first)
                    log.debug("changelog %s back from %d to %d: not handed on", tp, left, first)

        try:
            await thread.call_thread(rewind)
        except Exception as error:  # revoked meanwhile: the next assignment seeks it
            log.warning("rewinding changelog partitions failed: %r", error)

    async def _handle_chunk(
        self, tp: TP, chunk: Sequence[Any], current: Callable[[], bool]
    ) -> int | None:
        """The batch handler over one chunk, never left half-way by a cancellation.

        A graceful stop cancels the fetch loop (Faust's Fetcher) and only then commits. A
        record cut off between its state change (held for the commit) and its outputs
        then had its state committed without its outputs or its offset: the next owner
        processed it again on a state that already held it, and its actions were lost
        (the fault suite's rebalance_storm, 32 basket reminders). Here the chunk runs as
        a task of its own: a cancellation waits for it (the record boundary still held),
        records what it did, and only then goes on."""
        assert self.batch_handler is not None
        work = asyncio.ensure_future(self.batch_handler(tp, chunk, current))
        try:
            done = await asyncio.shield(work)
        except asyncio.CancelledError:
            while not work.done():  # however often the stop cancels again
                try:
                    await asyncio.shield(work)
                except asyncio.CancelledError:
                    continue
            self._chunk_done(tp, chunk, work.result())
            raise
        self._chunk_done(tp, chunk, done)
        return done

    def _chunk_done(self, tp: TP, chunk: Sequence[Any], done: int | None) -> None:
        """What the commit needs (the offset done) and the monitor counts."""
        if done is not None:
            self._processed[tp] = done
            handled = (
                len(chunk)
                if done == chunk[-1].offset
                else sum(1 for record in chunk if record.offset <= done)
            )
            self._batch_in(tp, handled, done)

    def _restore(self, tp: TP, batch: list[Any]) -> bool:
        """A changelog batch of a partition under recovery (active or standby), written to
        its table's RocksDB in one WriteBatch with its last offset (the checkpoint, see
        store.py), and Faust's recovery told how far it got; False for any other. Faust's
        own recovery takes each record through the conductor, a queue and its loop, and
        checks after each whether every partition is done (about 2,000 records a second
        here); its loop stays, for anything that still comes that way, and for the end of
        recovery when it is detected there first."""
        recovery: Any = getattr(self.app.tables, "recovery")  # noqa: B009 - TableManagerT lacks it
        table = recovery.tp_to_table.get(tp)
        if tp in recovery.active_tps:
            offsets, highwaters = recovery.active_offsets, recovery.active_highwaters
        elif tp in recovery.standby_tps:
            offsets, highwaters = recovery.standby_offsets, recovery.standby_highwaters
        else:
            return False
        store = getattr(table, "data", None)
        if not isinstance(store, RocksDBStore):
            return False
        if any(recovery.buffers.values()):  # what Faust's loop holds goes first
            recovery.flush_buffers()
        seen = offsets.get(tp)
        fresh = [r for r in batch if seen is None or r.offset > seen]
        if fresh:
            writes = WriteBatch(raw_mode=True)
            for record in fresh:
                if record.value is None:
                    writes.delete(record.key)
                else:
                    writes.put(record.key, record.value)
            writes.put(store.offset_key, str(fresh[-1].offset).encode())
            store._db_for_partition(tp.partition).write(writes)
            offsets[tp] = fresh[-1].offset
        position = self._fetched_positions.get(tp)
        highwater = highwaters.get(tp)
        if position is not None and highwater is not None and position > highwater:
            # read to the end, transaction markers and aborted records included
            offsets[tp] = max(offsets.get(tp) or -1, highwater)
        if _reading_done(recovery):
            recovery.flush_buffers()
            recovery._set_recovery_ended()
            recovery.signal_recovery_end.set()
        if not recovery.tables.standbys_ready and not recovery.standby_remaining_total():
            recovery.tables.on_standbys_ready()
        return True

    def _forget_recovery_end(self) -> None:
        """A rebalance begins: the end of the last recovery, set by ``_restore``, must not
        end the next one. Faust's recovery waits for ``signal_recovery_end`` and never
        clears it; its own loop clears it only when it next takes a record or times out
        (5 s), and ``_restore`` takes every record from it, so a recovery starting within
        5 s of the last one found the signal set, skipped reading the changelogs of the
        partitions just taken over, and their users started empty (the fault suite's
        ``rebalance_storm``: 499 actions lost, 403 changed)."""
        recovery: Any = getattr(self.app.tables, "recovery", None)
        if recovery is not None:
            recovery.signal_recovery_end.clear()

    def _batch_in(self, tp: TP, count: int, offset: int) -> None:
        """The monitor's counters for a handled chunk (ours has ``on_batch_in``; a plain
        faust monitor only gets the read offset that the lag is computed from)."""
        monitor = self.app.monitor
        on_batch_in = getattr(monitor, "on_batch_in", None)
        if on_batch_in is not None:
            on_batch_in(tp, count, offset)
        else:
            monitor.tp_read_offsets[tp] = offset

    async def _hand_on_one_by_one(self, tp: TP, batch: list[Any]) -> None:
        """Faust's path for one partition's records (changelogs: recovery, standbys)."""
        callback, get_read_offset = self.callback, self._read_offset.__getitem__
        for record in batch:
            message = self._to_message(tp, record)
            read = get_read_offset(tp)
            if read is None or message.offset >= read:
                await self.wait_first(callback(message), self.suspend_flow.wait())
                self._read_offset[tp] = message.offset

    def _filter_tps_with_pending_acks(self, topics: TPorTopicSet | None = None) -> Iterator[TP]:
        """Faust's (the partitions with acks), and those done through the batch path."""
        yield from super()._filter_tps_with_pending_acks(topics)
        acked = self._acked
        for tp in list(self._processed):
            if tp not in acked and (topics is None or tp in topics or tp.topic in topics):
                yield tp

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit: after the last record done through the batch path for its
        topics (no acks there), Faust's acked offsets for the others."""
        if tp.topic in self.batch_topics:
            done = self._processed.get(tp)
            return None if done is None else done + 1
        offset: int | None = super()._new_offset(tp)
        return offset

    def ack(self, message: Message) -> bool:
        """Faust's, except for a record of another generation (a stale one included):
        the stream skips it and acks it, but it is read again from the committed offset,
        and counting this ack could let a commit pass it before its new copy is done."""
        if message.generation_id != self.app.consumer_generation_id:
            message.acked = True
            return False
        return bool(super().ack(message))

    def _is_stale(self, tp: TP, offset: int | None) -> bool:
        flight = self._in_flight
        return flight is not None and flight[2] < self._wanted and flight[:2] == (tp, offset)

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets, then ours (see above). Every record handed
        on before ours is stale: those still on their way to the agent are marked so that
        the stream skips them, and the fetch loop's bookkeeping of them is ignored."""
        self._wanted = self._epoch + 1  # nothing is handed on until our seek is done
        self._mark_stale()
        await super().perform_seek()
        await self._seek_again({tp for tp in self.assignment() if not self._is_changelog_tp(tp)})

    def _mark_stale(self) -> None:
        """Mark every record handed on so far: from here until our seek is done nothing
        more is handed on, and after it only records fetched after it."""
        for message in self._since_seek:
            message.generation_id = STALE
        self._since_seek.clear()
        self._taken.clear()

    async def _seek_again(self, partitions: set[TP]) -> None:
        """Every stream partition back to the committed offset (as Faust's seek left it),
        in one step in the consumer thread, which also moves the epoch on and the fetch
        loop's "read up to" back: the records marked stale, and those fetched while Faust's
        seek ran and not handed on, may lie before aiokafka's position."""
        thread = self._thread
        client = thread._ensure_consumer()
        committed = {tp: self._committed_offset.get(tp) for tp in partitions}

        async def seek() -> None:
            fresh = [tp for tp, offset in committed.items() if offset is None]
            starts = await client.beginning_offsets(fresh) if fresh else {}
            still = client._subscription.assigned_partitions()
            for tp, offset in committed.items():  # no await from here on: one step
                target = offset if offset is not None else starts.get(tp)
                if target is not None and tp in still:
                    client.seek(tp, target)
                self._reads.reset(tp, offset)
                # ``_processed`` stays: the flow stops (and this seek runs) when a rebalance
                # begins, before the rebalance's commit, which must still commit what was
                # done; its outputs are in the open transaction. Dropping it here left them
                # there uncommitted; a partition kept through the rebalance then committed
                # them later with the records' second processing (the storm's duplicates).
            self._epoch += 1

        await thread.call_thread(seek)
        self.log.info(
            "sought %d partitions to their committed offsets again: %s",
            len(partitions),
            _offsets_text(committed),
        )

    def has_backlog(self, tp: TP, processed: int | None) -> bool:
        """Whether records of ``tp`` are still to come without waiting for new ones: not
        yet fetched from Kafka (fetch position behind the partition's end, the last stable
        offset under exactly_once), or fetched and on their way to the agent (in a batch
        taken from aiokafka, after ``processed``, the offset the agent last processed).
        Unknown counts as a backlog, except for a partition this consumer no longer has.

        The batch counts from when it is taken, not as its records are handed on: a batch
        can hold thousands of records of one partition (Kafka returns a producer's whole
        record batch, up to 1 MB from librdkafka, whatever the fetch size) and aiokafka's
        position is past all of them at once. Counting handed-on records only, such a
        partition looked caught up while most of its records still waited in the batch,
        was left out of stream time as idle, and those records then came late (the fault
        suite's burst scenario shows it)."""
        taken = self._taken.get(tp)
        if taken is not None and (processed is None or taken > processed):
            return True
        try:
            client = self._thread._ensure_consumer()
            state = client._subscription.subscription.assignment.state_value(tp)
        except Exception:
            return False  # not assigned (any more)
        if state is None:
            return False
        end = state.lso if self.in_transaction else state.highwater
        if end is None or end < 0 or not state.has_valid_position:
            return True
        return bool(state.position < end)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Faust's, with the app's handler (wait for streams, commit) first; then, under
        exactly_once, every transaction still open is aborted and every transactional
        producer stopped (``Producer.end_transactions``): what a transaction holds then was
        not committed, and its records are processed again from the committed offsets; and
        the assignment starts a fresh producer for each partition, none kept fenced."""
        self._forget_recovery_end()
        await self._on_partitions_revoked(revoked)
        # what the rebalance's commit left committed: with the seek's line at the next
        # assignment, the log shows where each input partition changed hands
        log.info(
            "rebalance: committed offsets of the inputs: %s",
            _offsets_text(
                {
                    tp: off
                    for tp, off in self._committed_offset.items()
                    if tp.topic in self.batch_topics
                }
            ),
        )
        producer = self.app.producer
        if self.app.in_transaction and not self.app.should_stop and isinstance(producer, Producer):
            held = await producer.end_transactions()
            if held:
                log.warning(
                    "rebalance: aborted %d transactions the rebalance's commit left open "
                    "(their input is processed again from the committed offsets): %s",
                    len(held),
                    ", ".join(sorted(held)),
                )
        if self._active_partitions is not None:
            self._active_partitions.difference_update(revoked)
        self._paused_partitions.difference_update(revoked)
        for tp in revoked:
            self._taken.pop(tp, None)
            self._processed.pop(tp, None)
            self._gap.pop(tp, None)
            self._acked.pop(tp, None)
            self._acked_index.pop(tp, None)
            self._read_offset.pop(tp, None)
            self._committed_offset.pop(tp, None)

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        thread = self._thread
        end_offsets = thread._ensure_consumer().end_offsets
        result: Mapping[TP, int] = await thread.call_thread(end_offsets, partitions)
        return result

    async def force_commit(
        self, topics: TPorTopicSet | None = None, start_new_transaction: bool = True
    ) -> bool:
        async with self.record_boundary:
            if self.before_commit is not None:
                await self.before_commit()
            committed = bool(
                await super().force_commit(topics, start_new_transaction=start_new_transaction)
            )
            if self.after_commit is not None:
                await self.after_commit(committed)
            return committed


def _offsets_text(offsets: Mapping[TP, int | None]) -> str:
    """``topic[partition=offset ...]`` per topic, sorted, for the log (no personal data)."""
    by_topic: dict[str, list[str]] = defaultdict(list)
    for tp in sorted(offsets):
        by_topic[tp.topic].append(f"{tp.partition}={offsets[tp]}")
    return " ".join(f"{topic}[{' '.join(pairs)}]" for topic, pairs in by_topic.items()) or "-"


def _reading_done(recovery: Any) -> bool:
    """Whether Faust's recovery is reading the changelogs and every active partition has
    been read to its end: its highwaters are built for every active partition (a partition
    just assigned has none until then, and ``need_recovery`` would not count it) and no
    new recovery is pending."""
    if not recovery.in_recovery or recovery.signal_recovery_start.is_set():
        return False
    highwaters = recovery.active_highwaters
    if any(tp not in highwaters for tp in recovery.active_tps):
        return False
    return not recovery.need_recovery()


def new_consumer(app: Any) -> Consumer:
    """What ``App._new_consumer`` returns, with the fixed class."""
    return Consumer(
        app.transport,
        callback=app.topics.on_message,
        on_partitions_revoked=app._on_partitions_revoked,
        on_partitions_assigned=app._on_partitions_assigned,
        beacon=app.beacon,
        loop=app.transport.loop,
    )
