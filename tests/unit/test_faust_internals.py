"""The patches in suppressor/adapters/faust_internals that a unit test can show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faust.transport.consumer import TransactionManager
from faust.types import TP

from suppressor.adapters.faust_internals.redelivery import Deliveries
from suppressor.adapters.settings import settings_from_values


def test_a_record_delivered_twice_is_processed_once() -> None:
    deliveries = Deliveries()
    tp = TP("events.cart", 2)
    assert deliveries.first(tp, 10) and deliveries.first(tp, 11)
    assert not deliveries.first(tp, 11)  # Faust's ">=" hands the last one on again
    assert not deliveries.first(tp, 5) and deliveries.last(tp) == 11
    deliveries.forget(tp)  # revoked: a later assignment starts again
    assert deliveries.first(tp, 5)


def test_the_app_mounts_none_of_fausts_pages(tmp_path: Path) -> None:
    from suppressor.adapters.app import build_app

    settings = settings_from_values({"data_dir": str(tmp_path)}, {})
    app = build_app(settings)
    assert app.web.blueprints._enabled == []  # no /table, /router, /graph, stats, index
    assert not app.conf.web_tables_enabled and not app.conf.web_router_enabled


def test_the_source_senders_transactional_id_is_fausts_format() -> None:
    """SourceSender names the producer of a source partition as Faust's TransactionManager
    does when it commits that partition's offsets."""
    from suppressor.adapters.faust_internals import sender

    assert TransactionManager.transactional_id_format == "{group_id}-{tpg.group}-{tpg.partition}"
    assert 'f"{self.app.conf.id}-{group}-{source.partition}"' in Path(sender.__file__).read_text()


class _Recovery:
    """The parts of Faust's Recovery service that ``_reading_done`` reads."""

    def __init__(self) -> None:
        import asyncio

        self.in_recovery = True
        self.signal_recovery_start = asyncio.Event()
        self.active_tps = {TP("users-changelog", 0), TP("users-changelog", 2)}
        self.active_highwaters = {TP("users-changelog", 0): 9344}
        self.active_offsets = {TP("users-changelog", 0): 9344, TP("users-changelog", 2): -1}

    def need_recovery(self) -> bool:
        return any(
            high - self.active_offsets[tp] > 0 for tp, high in self.active_highwaters.items()
        )


def test_a_recovery_is_not_ended_before_every_active_partition_has_its_highwater() -> None:
    """A partition just taken over has no highwater until Faust builds it, and
    ``need_recovery`` does not count it: ending the recovery then skipped its changelog
    (the fault suite's rebalance_storm lost and changed actions)."""
    from suppressor.adapters.faust_internals.consumer import _reading_done

    recovery = _Recovery()
    assert not _reading_done(recovery)
    recovery.active_highwaters[TP("users-changelog", 2)] = 9556
    assert not _reading_done(recovery)
    recovery.active_offsets[TP("users-changelog", 2)] = 9556
    assert _reading_done(recovery)
    recovery.signal_recovery_start.set()  # a new rebalance: that recovery starts again
    assert not _reading_done(recovery)


class _TransactionManager:
    def __init__(self, state: str, partitions: set[TP]) -> None:
        from aiokafka.producer.transaction_manager import TransactionState

        self.state = TransactionState[state]
        self._txn_partitions = partitions
        self._pending_txn_partitions: set[TP] = set()


class _TransactionalProducer:
    """The parts of an aiokafka transactional producer that ``end_transactions`` uses."""

    def __init__(self, state: str, partitions: set[TP]) -> None:
        self._txn_manager = _TransactionManager(state, partitions)
        self.aborted = 0
        self.stopped = 0

    async def abort_transaction(self) -> None:
        from aiokafka.producer.transaction_manager import TransactionState

        self.aborted += 1
        self._txn_manager.state = TransactionState.READY

    async def stop(self) -> None:
        self.stopped += 1


def _producer_with(producers: dict[str, _TransactionalProducer]) -> Any:
    import asyncio

    from suppressor.adapters.faust_internals.producer import Producer

    producer = Producer.__new__(Producer)
    producer._transaction_producers = dict(producers)  # type: ignore[assignment]
    producer._trn_locks = {tid: asyncio.Lock() for tid in producers}
    return producer


def test_no_transaction_stays_open_through_a_rebalance() -> None:
    """What a rebalance's commit left in a transaction is aborted, not committed later with
    the second processing of the same input (the production storm's duplicates)."""
    import asyncio

    producers = {
        "app-0-6": _TransactionalProducer("IN_TRANSACTION", {TP("actions", 6)}),
        "app-0-5": _TransactionalProducer("IN_TRANSACTION", set()),  # begun, nothing sent
        "app-0-4": _TransactionalProducer("READY", set()),  # committed by the rebalance
    }
    producer = _producer_with(producers)

    held = asyncio.run(producer.end_transactions())

    assert held == ["app-0-6"]
    assert [p.aborted for p in producers.values()] == [1, 1, 0]


def test_no_producer_is_kept_through_a_rebalance() -> None:
    """Faust keeps the producer of a partition it finds still assigned, though the
    partition may have been another worker's in between (which fenced it): the first send
    after it came back failed with ProducerFenced and stopped the worker. Every producer
    is stopped, so that the assignment starts a fresh one (with init_transactions) for
    every partition it assigns."""
    import asyncio

    producers = {
        "app-0-2": _TransactionalProducer("READY", set()),  # fenced: this worker cannot know
        "app-0-3": _TransactionalProducer("IN_TRANSACTION", {TP("actions", 3)}),
    }
    producer = _producer_with(producers)

    asyncio.run(producer.end_transactions())

    assert [p.stopped for p in producers.values()] == [1, 1]
    assert producer._transaction_producers == {}


def test_a_partition_back_after_a_rebalance_gets_a_fresh_producer(monkeypatch: Any) -> None:
    """After ``end_transactions``, the assignment's ``maybe_begin_transaction`` starts a new
    producer for the partition rather than beginning on the one it had."""
    import asyncio

    from faust.transport.drivers.aiokafka import Producer as FaustProducer

    producers = {"app-0-2": _TransactionalProducer("READY", set())}
    producer = _producer_with(producers)
    started: list[str] = []

    async def begin_on_a_new_producer(self: Any, transactional_id: str) -> None:
        started.append(transactional_id)

    monkeypatch.setattr(FaustProducer, "maybe_begin_transaction", begin_on_a_new_producer)

    async def rebalance() -> None:
        await producer.end_transactions()
        await producer.maybe_begin_transaction("app-0-2")

    asyncio.run(rebalance())

    assert started == ["app-0-2"]
    assert producers["app-0-2"]._txn_manager.state.name == "READY"  # the old one untouched


def test_a_seek_at_a_rebalance_keeps_what_the_rebalances_commit_must_commit() -> None:
    """The flow stops when a rebalance begins, and the fetch loop then seeks back to the
    committed offsets before the rebalance's commit runs: that commit must still commit
    the records done through the batch path, whose outputs are in the open transaction."""
    import asyncio
    import logging
    from types import SimpleNamespace

    from suppressor.adapters.faust_internals.consumer import Consumer, _ReadOffsets

    tp = TP("events.cart", 6)
    sought: dict[TP, int] = {}

    async def beginning_offsets(tps: Any) -> dict[TP, int]:
        return {}

    client = SimpleNamespace(
        beginning_offsets=beginning_offsets,
        seek=sought.__setitem__,
        _subscription=SimpleNamespace(assigned_partitions=lambda: {tp}),
    )

    async def call_thread(function: Any, *args: Any) -> Any:
        return await function(*args)

    consumer = Consumer.__new__(Consumer)
    consumer._thread = SimpleNamespace(_ensure_consumer=lambda: client, call_thread=call_thread)
    consumer.log = logging.getLogger("test")  # type: ignore[assignment]
    consumer.batch_topics = frozenset({tp.topic})
    consumer._committed_offset = {tp: 30}
    consumer._processed = {tp: 41}
    consumer._in_flight, consumer._wanted, consumer._epoch = None, 1, 0
    consumer._reads = _ReadOffsets(consumer)

    asyncio.run(consumer._seek_again({tp}))

    assert sought == {tp: 30} and consumer._epoch == 1
    assert consumer._new_offset(tp) == 42


def test_a_stop_never_cuts_a_record_in_half() -> None:
    """A graceful stop cancels the fetch loop, then commits: the record under way finishes
    (its outputs sent) and counts as done, so the stop's commit never holds a record's
    state without its outputs and its offset (rebalance_storm lost 32 basket reminders)."""
    import asyncio
    from types import SimpleNamespace

    from suppressor.adapters.faust_internals.consumer import Consumer

    tp = TP("events.cart", 0)
    sent: list[int] = []

    async def handler(tp: TP, records: Any, current: Any) -> int | None:
        done = None
        for record in records:
            await asyncio.sleep(0.01)  # the record's sends, after its state changed
            sent.append(record.offset)
            done = record.offset
        return done

    consumer = Consumer.__new__(Consumer)
    consumer.app = SimpleNamespace(monitor=SimpleNamespace(tp_read_offsets={}))  # type: ignore[assignment]
    consumer.batch_handler = handler
    consumer._processed = {}
    chunk = [SimpleNamespace(offset=offset) for offset in range(40, 45)]

    async def stop_mid_record() -> None:
        task = asyncio.ensure_future(consumer._handle_chunk(tp, chunk, lambda: True))
        await asyncio.sleep(0.015)  # the second record's sends are under way
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return
        raise AssertionError("the cancellation must reach the fetch loop")

    asyncio.run(stop_mid_record())

    assert sent == [40, 41, 42, 43, 44]
    assert consumer._processed == {tp: 44}
    assert consumer.app.monitor.tp_read_offsets == {tp: 44}


def _rewinding_consumer(positions: dict[TP, int], changelog: TP) -> tuple[Any, dict[TP, int]]:
    """A Consumer whose aiokafka client has ``positions`` (changed in place by the test)
    and records its seeks in the dict returned."""
    from types import SimpleNamespace

    from suppressor.adapters.faust_internals.consumer import Consumer

    sought: dict[TP, int] = {}
    assignment = SimpleNamespace(state_value=lambda tp: SimpleNamespace(position=positions[tp]))
    client = SimpleNamespace(
        seek=sought.__setitem__,
        _subscription=SimpleNamespace(
            subscription=SimpleNamespace(assignment=assignment),
            assigned_partitions=lambda: set(positions),
        ),
    )

    async def call_thread(function: Any, *args: Any) -> Any:
        return await function(*args)

    consumer = Consumer.__new__(Consumer)
    consumer._thread = SimpleNamespace(_ensure_consumer=lambda: client, call_thread=call_thread)
    consumer.app = SimpleNamespace(  # type: ignore[assignment]
        tables=SimpleNamespace(changelog_topics={changelog.topic})
    )
    return consumer, sought


def test_changelog_records_dropped_with_a_stale_batch_are_fetched_again() -> None:
    """A fetched batch dropped because the flow stopped (or a seek or a new generation
    made it stale) also held changelog records; only the stream partitions are sought
    back, so a standby skipped those records while its checkpoint moved past them."""
    import asyncio
    from types import SimpleNamespace

    changelog, stream = TP("app-users-changelog", 2), TP("events.cart", 2)
    positions = {changelog: 4282, stream: 900}
    consumer, sought = _rewinding_consumer(positions, changelog)
    consumer._fetched_positions = dict(positions)  # where the fetch left them
    batch = [SimpleNamespace(offset=offset) for offset in range(4179, 4282)]
    records = {changelog: batch, stream: [SimpleNamespace(offset=850)]}

    asyncio.run(consumer._rewind_changelogs(records))
    assert sought == {changelog: 4179}  # the stream partition is the seek's business

    sought.clear()
    positions[changelog] = 4100  # recovery already sought it further back: left there
    asyncio.run(consumer._rewind_changelogs(records))
    assert sought == {}


def test_a_rewind_never_undoes_a_seek_made_since_the_fetch() -> None:
    """A batch fetched before recovery sought a changelog partition to its checkpoint
    (a standby's fetch from offset 0) and dropped after that seek: going back to the
    batch's first offset read the whole changelog again. The seek decides."""
    import asyncio
    from types import SimpleNamespace

    changelog = TP("app-users-changelog", 5)
    positions = {changelog: 3696}  # recovery's seek, after the fetch left it at 313
    consumer, sought = _rewinding_consumer(positions, changelog)
    consumer._fetched_positions = {changelog: 313}
    records = {changelog: [SimpleNamespace(offset=offset) for offset in range(0, 313)]}

    asyncio.run(consumer._rewind_changelogs(records))

    assert sought == {}


def test_a_changelog_batch_of_a_partition_paused_since_the_fetch_is_fetched_again() -> None:
    """Faust changes its set of active partitions in place when it pauses one (recovery
    does, for every changelog partition, at each rebalance): a changelog batch fetched
    just before was skipped and never read again, and the next batch's checkpoint moved
    past it (the production storm: a standby that became active without a transaction
    its changelog held fired 15 deadlines again and lost 2 actions)."""
    import asyncio
    from types import SimpleNamespace

    from suppressor.adapters.faust_internals.consumer import Consumer

    changelog, stream = TP("app-users-changelog", 5), TP("events.cart", 5)
    consumer = Consumer.__new__(Consumer)
    consumer._fetched_epoch = consumer._wanted = 0
    consumer.app = SimpleNamespace(consumer_generation_id=7)  # type: ignore[assignment]
    consumer.flow_active = True
    consumer._stopped = asyncio.Event()
    consumer._crashed = asyncio.Event()
    consumer._buffered_partitions = set()
    rewound: list[set[TP]] = []

    async def rewind(records: Any) -> None:
        rewound.append(set(records))

    consumer._rewind_changelogs = rewind  # type: ignore[method-assign]
    batch = [SimpleNamespace(offset=offset) for offset in range(3696, 3849)]

    asyncio.run(consumer._hand_on({changelog: batch}, active={stream}))

    assert rewound == [{changelog}]


def test_a_changelog_batch_goes_to_recovery_while_a_failed_seek_holds_the_streams() -> None:
    """A seek of ours that failed part-way (a rebalance took a partition away while the
    flow was stopped) leaves the stream partitions' seek epoch behind until the seek after
    recovery. The changelogs are not the epoch's business: gated by it, every changelog
    batch was dropped and fetched again, and recovery never ended (the production storm:
    a worker's recovery stalled, 428 deadline actions lost)."""
    import asyncio
    from types import SimpleNamespace

    from suppressor.adapters.faust_internals.consumer import Consumer

    changelog, stream = TP("app-users-changelog", 2), TP("events.cart", 2)
    consumer = Consumer.__new__(Consumer)
    consumer._fetched_epoch, consumer._wanted = 3, 4  # the seek begun at epoch 3 failed
    consumer.app = SimpleNamespace(consumer_generation_id=14)  # type: ignore[assignment]
    consumer.flow_active = True
    consumer._stopped = asyncio.Event()
    consumer._crashed = asyncio.Event()
    consumer._buffered_partitions = set()
    consumer.batch_topics = frozenset({stream.topic})
    restored: list[TP] = []
    rewound: list[set[TP]] = []

    def restore(tp: TP, batch: Any) -> bool:
        restored.append(tp)
        return True

    async def rewind(records: Any) -> None:
        rewound.append(set(records))

    async def handler(tp: TP, records: Any, current: Any) -> int | None:
        raise AssertionError("a stream batch fetched before the seek is never handled")

    consumer._restore = restore  # type: ignore[method-assign]
    consumer._rewind_changelogs = rewind  # type: ignore[method-assign]
    consumer.batch_handler = handler
    records = {
        stream: [SimpleNamespace(offset=900)],
        changelog: [SimpleNamespace(offset=offset) for offset in (4382, 4383)],
    }

    asyncio.run(consumer._hand_on(records, active={stream, changelog}))

    assert restored == [changelog]
    assert rewound == [{stream}]  # _rewind_changelogs leaves stream partitions alone


def test_a_coordinator_lookup_cut_by_a_closed_connection_is_tried_again() -> None:
    """aiokafka's sender retries a transaction coordinator lookup on "not available", "not
    ready" and timeouts only: a connection closed under the lookup (the broker going down,
    the fault suite's broker_restart) ended the sender routine, failed every pending send
    and stopped the worker. Retriable causes are tried again; authorization is not."""
    import asyncio
    from types import SimpleNamespace

    import pytest
    from aiokafka.client import CoordinationType
    from aiokafka.errors import (
        KafkaConnectionError,
        KafkaError,
        TransactionalIdAuthorizationFailed,
    )
    from aiokafka.producer.sender import Sender

    from suppressor.adapters.faust_internals.producer import retry_coordinator_lookups

    def sender_answering(*answers: Any) -> Any:
        queue = list(answers)

        async def coordinator_lookup(kind: Any, key: str) -> int:
            answer = queue.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return int(answer)

        async def ready(node: int, group: Any = None) -> bool:
            return True

        async def force_metadata_update() -> bool:
            return True

        sender = Sender.__new__(Sender)
        sender.client = SimpleNamespace(
            coordinator_lookup=coordinator_lookup,
            ready=ready,
            force_metadata_update=force_metadata_update,
        )
        sender._txn_manager = SimpleNamespace(transactional_id="app-1-5")
        sender._coordinators = {}
        sender._retry_backoff = 0.001
        return sender

    def lookup(sender: Any) -> Any:
        return asyncio.run(sender._find_coordinator(CoordinationType.TRANSACTION, "app-1-5"))

    closed = KafkaConnectionError("Connection at localhost:19792 closed")
    unpatched = sender_answering(closed, 1)
    with pytest.raises(KafkaError):  # aiokafka's own: the sender routine would end here
        lookup(unpatched)

    patched = sender_answering(closed, closed, 1)
    retry_coordinator_lookups(patched)
    assert lookup(patched) == 1

    refused = sender_answering(TransactionalIdAuthorizationFailed("app-1-5"), 1)
    retry_coordinator_lookups(refused)
    with pytest.raises(TransactionalIdAuthorizationFailed):
        lookup(refused)
