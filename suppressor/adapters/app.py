"""The Faust app, built in one place: topics, tables, the agent, the tick timer, web pages.

    inputs (5 topics) ─┐
    repartition ───────┼─> agent "suppressor" ──> actions, decisions, events.dlq
    ticks ─────────────┘        │   ▲               (+ repartition, when misrouted)
                                ▼   │
                users table, stream-clock table (RocksDB + changelog)
    catalog ─> CatalogReader (every partition, every worker) ─> domain Catalog

Topic groups: every topic has the configured partition count, so Faust's
assignor puts partition p of the inputs, repartition, ticks and changelog
topics on one worker, in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import faust
from faust.types import TP

from suppressor.adapters.admin import TopicMismatch, ensure_topics, list_topics, topic_configs
from suppressor.adapters.admin_path import AdminPath
from suppressor.adapters.catalog_reader import CatalogFeed, CatalogReader
from suppressor.adapters.faust_internals import check_versions
from suppressor.adapters.faust_internals.app import FencedApp
from suppressor.adapters.faust_internals.consumer import Consumer
from suppressor.adapters.faust_internals.sensors import tables_recovered
from suppressor.adapters.faust_internals.store import RocksTable
from suppressor.adapters.metrics import Metrics, MetricsObserver
from suppressor.adapters.observe import BothObservers, WorkerObserver
from suppressor.adapters.pipeline import Pipeline
from suppressor.adapters.settings import Settings
from suppressor.adapters.stopping import STOPPER
from suppressor.adapters.topology import (
    CHANGELOG_MAX_MESSAGE_BYTES,
    CLOCK_TABLE,
    USERS_TABLE,
    Topology,
)
from suppressor.core.catalog import Catalog
from suppressor.core.clock import NO_TIME
from suppressor.core.codec import worst_case_state_bytes
from suppressor.core.engine import Engine
from suppressor.core.errors import ConfigError
from suppressor.core.policy import Policy, load_policy
from suppressor.wire.timefmt import format_ms

log = logging.getLogger(__name__)

AGENT_NAME = "suppressor"


class SuppressorApp(FencedApp):
    """A Faust app that checks and creates its topics before anything subscribes to them."""

    topology: Topology
    settings: Settings
    pipeline: Pipeline
    catalog_reader: CatalogReader
    metrics: Metrics

    def configure_consumer(self, consumer: Consumer) -> None:
        consumer.before_commit = self._before_commit
        consumer.after_commit = self._after_commit
        consumer.fetch_hold = fetch_hold(self.settings.fetch_wait)
        consumer.batch_topics = frozenset(self.topology.consumed)
        consumer.batch_handler = self._handle_batch

    async def _handle_batch(
        self, tp: TP, records: Sequence[Any], current: Callable[[], bool]
    ) -> int | None:
        """A fetched batch of one partition's records (the consumer's batch path). The
        first waits for the whole catalog. An error that escapes the pipeline (a bug in
        it, not in one record's processing, which goes to the dead-letter topic) stops
        the worker: it cannot know how far the batch got; ``/health`` says so meanwhile."""
        await self.catalog_reader.ready.wait()
        try:
            return await self.pipeline.handle_batch(tp, records, current)
        except Exception as error:
            self.pipeline.crashed = type(error).__name__
            self.metrics.agent_crashes.inc()
            log.exception("the record pipeline failed; stopping the worker")
            STOPPER.stop_fatally(error)
            return None

    async def _before_commit(self) -> None:
        await self.pipeline.before_commit()

    async def _after_commit(self, committed: bool) -> None:
        await self.pipeline.after_commit(committed)

    async def on_first_start(self) -> None:
        await super().on_first_start()
        self.pipeline.max_state_bytes = prepare_topics(
            self.settings, self.topology, self.pipeline.engine.policy
        )

    async def on_started(self) -> None:
        await super().on_started()
        await self.add_runtime_dependency(self.catalog_reader)


def build_app(
    settings: Settings, observer: WorkerObserver | None = None, policy: Policy | None = None
) -> SuppressorApp:
    """The worker's Faust app. Its Prometheus metrics see every record's outcome; an
    extra ``observer`` (tests) sees them too."""
    check_versions(settings.allow_untested_versions)
    policy = policy if policy is not None else load_policy(settings.policy)
    topology = Topology.from_settings(settings)
    app = SuppressorApp(settings.app_id, **faust_config(settings))
    app.settings, app.topology = settings, topology
    app.metrics = Metrics(stall_after=settings.stall_timeout)
    app.metrics.bind_app(app, topics=topology.data_topics)
    metered: WorkerObserver = MetricsObserver(app.metrics)
    if observer is not None:
        metered = BothObservers(metered, observer)
    catalog = Catalog()
    users = _table(
        app, USERS_TABLE, "per-user state (suppressor.core.codec)", settings.state_memory
    )
    clocks = _table(
        app, CLOCK_TABLE, "stream time per partition (suppressor.core.clock)", CLOCK_MEMORY
    )
    hybrid = policy.clock != "event"
    engine = Engine(policy, catalog)
    app.pipeline = Pipeline(app, topology, engine, users, clocks, metered, hybrid)
    app.pipeline.sender.latency = app.metrics.send_latency.observe
    feed = CatalogFeed(catalog, app.pipeline.send_catalog_dead_letter)
    app.catalog_reader = CatalogReader(
        settings.bootstrap_servers,
        topology.catalog,
        topology.partitions,
        feed,
        settings.aiokafka_client_config(),
    )
    _agent(app, topology)
    _tick_timer(app, topology, settings.tick_interval)
    _pages(app)
    token = settings.admin_secret
    if token is not None:  # else no route at all: /admin/... is a 404 like any unknown path
        AdminPath(app, app.pipeline, topology, app.metrics, token).install()
    app.on_partitions_revoked.connect(_forget_revoked)
    log.info("policy %s, clock %s", policy.version, "hybrid" if hybrid else "event")
    return app


FETCH_BYTES_PER_PARTITION = 64 * 1024
"""Faust's default (1 MiB per partition, and no limit on records per poll) fetches a
whole backlog of a few hundred thousand records into the consumer in one go and hands
it to the agent before it fetches again, so the ticks (and the watermarks they send)
waited behind the entire backlog: stream time stood still during a catch-up until the
other partitions' watermarks were ``idle_timeout`` old, then jumped. With smaller
fetches the ticks topic is fetched every few thousand records."""


def fetch_hold(wait_s: float) -> tuple[int, int] | None:
    """The consumer's (fetch_min_bytes, fetch_max_wait_ms) for ``fetch_wait``.

    By default (0) the broker answers a fetch as soon as any record is there. A live
    worker then fetches a few records at a time, and each fetch (a request naming every
    partition it reads, handed from Faust's consumer thread to the agent) costs about as
    much as the records in it. With a wait the broker holds each fetch until it has a
    fetch's worth of bytes or the wait is over: less CPU per event at moderate load, a
    record read up to ``fetch_wait`` later, and an idle worker fetching 1 / ``fetch_wait``
    times a second (BENCHMARKS.md has the figures)."""
    if wait_s <= 0:
        return None
    return FETCH_BYTES_PER_PARTITION, max(1, round(wait_s * 1000))


def faust_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker": settings.broker_url,
        "broker_credentials": _credentials(settings),
        "store": "rocksdb://",
        "datadir": str(settings.data_dir),
        "processing_guarantee": settings.processing_guarantee,
        "table_standby_replicas": settings.standby_replicas,
        "topic_partitions": settings.partitions,
        "topic_allow_declare": True,
        "broker_commit_interval": settings.commit_interval,
        # Faust's default linger (0) sent nearly every record in a produce request of its
        # own (the agent yields to the event loop between records): the socket writes
        # were the largest single item in a profile of a catching-up worker. Commits
        # flush the producer or commit the transaction as before: only latency moves.
        "producer_linger": settings.producer_linger,
        "consumer_max_fetch_size": FETCH_BYTES_PER_PARTITION,
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": max(0.5, settings.session_timeout / 5),
        "consumer_auto_offset_reset": "earliest",
        # no persisted offsets to check (suppressor.adapters.state)
        "recovery_consistency_check": False,
        "producer_max_request_size": CHANGELOG_MAX_MESSAGE_BYTES + 64 * 1024,
        "web_enabled": True,
        "web_port": settings.web_port,
        "web_bind": settings.web_host,
        # how the other workers reach this one: the assignor hands it to them as the owner
        # of this worker's partitions (the admin path forwards to it)
        "web_host": settings.advertised_host,
        "canonical_url": settings.canonical_url,
        "web_in_thread": False,
        # Faust's pages list tables, their keys (people's state) and the cluster: none
        # is served (ClosedWeb), and these say so to anyone reading the configuration.
        # (web_router_enabled is the /router listing page only: routing a request by a
        # table key, as the admin path does, works without it.)
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "web_graph_enabled": False,
        "web_stats_enabled": False,
        "web_metrics_enabled": False,
    }


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    if settings.security_protocol.startswith("SASL"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=password,
            mechanism=settings.sasl_mechanism,
            ssl_context=settings.ssl_context(),
        )
    context = settings.ssl_context()
    return faust.SSLCredentials(context) if context is not None else None


CLOCK_MEMORY = 4
"""MiB of RocksDB memory per partition of the clock table (one small key each)."""


def rocksdb_options(mib: int) -> dict[str, int]:
    """RocksDB memory of one table partition: two write buffers of a quarter of it each and
    a block cache of the other half. Faust's defaults (3 write buffers of 64 MiB and a
    2 GiB cache, per partition) let a burst of new users grow the worker by the size of
    their states; these bound it (``SUPPRESSOR_STATE_MEMORY``)."""
    size = mib * 2**20
    return {
        "write_buffer_size": size // 4,
        "max_write_buffer_number": 2,
        "block_cache_size": size // 2,
    }


def _table(app: faust.App, name: str, help: str, memory_mib: int) -> RocksTable:
    table = RocksTable(
        app,
        name=name,
        options=rocksdb_options(memory_mib),
        key_type=bytes,
        value_type=bytes,
        partitions=app.conf.topic_partitions,
        help=help,
        beacon=app.tables.beacon,
    )
    app.tables.add(table)
    return table


def _agent(app: SuppressorApp, topology: Topology) -> None:
    channel = app.topic(
        *topology.consumed,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def suppress(stream: Any) -> None:  # a faust.Stream
        """Subscribes the consumer to the topics, as an agent does; the records themselves
        go to ``SuppressorApp._handle_batch`` a fetched batch at a time and never reach a
        stream (see suppressor.adapters.faust_internals.consumer)."""
        async for _ in stream.noack():
            pass

    app.agent(channel, name=AGENT_NAME)(suppress)


def _tick_timer(app: SuppressorApp, topology: Topology, interval: float) -> None:
    """Every ``interval`` seconds, one tick per partition this worker owns (see Pipeline)."""

    async def tick() -> None:
        assigned = app.consumer.assignment()
        owned = sorted(tp.partition for tp in assigned if tp.topic == topology.ticks)
        for partition in owned:
            await app.pipeline.sender.send_plain(topology.ticks, None, b"", partition)

    app.timer(interval=interval, name="ticks")(tick)


def _pages(app: SuppressorApp) -> None:
    async def health(web: Any, request: Any) -> Any:
        pipeline = app.pipeline
        ready = app.catalog_reader.ready.is_set() and tables_recovered(app) and not app.rebalancing
        verdict = app.metrics.health()
        status = "ok" if ready and verdict.status == "ok" else "starting"
        if verdict.status == "stalled":
            status = "stalled"
        if pipeline.crashed is not None:
            status = "crashed"
        body = {
            "status": status,
            "agent_crashed": pipeline.crashed,
            "metrics_health": verdict.body(),
            "partitions": sorted(pipeline.runtimes),
            "records_processed": pipeline.records,
            "redelivered_skipped": pipeline.redelivered,
            "processing_guarantee": "at_least_once" if pipeline.at_least_once else "exactly_once",
            "stream_time": {
                p: None if r.clock.time == NO_TIME else format_ms(r.clock.time)
                for p, r in sorted(pipeline.runtimes.items())
            },
            "catalog_items": len(pipeline.engine.catalog),
            "policy_version": pipeline.policy_version,
        }
        return web.json(body, status=200 if body["status"] == "ok" else 503)

    async def live(web: Any, request: Any) -> Any:
        verdict = app.metrics.health()
        body = verdict.body()
        crashed = app.pipeline.crashed is not None
        body["agent_crashed"] = app.pipeline.crashed
        return web.json(body, status=503 if crashed else verdict.live_http_status)

    async def metrics(web: Any, request: Any) -> Any:
        content_type = app.metrics.content_type
        return web.bytes(app.metrics.render(), headers={"Content-Type": content_type})

    app.page("/health")(health)
    app.page("/health/live")(live)
    app.page("/metrics")(metrics)


def _forget_revoked(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    revoked: set[TP] = args[0] if args else kwargs.get("revoked", set())
    assert isinstance(app, SuppressorApp)
    app.pipeline.forget_partitions(revoked)
    app.metrics.forget_partitions(tp.partition for tp in revoked)


def prepare_topics(settings: Settings, topology: Topology, policy: Policy) -> int:
    """Refuse to start on missing or mismatched topics, or on state limits the users
    changelog cannot take; create the internal ones. Returns the largest encoded user
    state the changelog takes (``UserStateStore.max_bytes``)."""
    client = settings.kafka_client_config()
    existing = list_topics(settings.bootstrap_servers, client)
    for spec in topology.user_topic_specs():
        found = existing.get(spec.name)
        if found is None:
            raise ConfigError(
                f"topic {spec.name!r} does not exist on {settings.bootstrap_servers}: "
                "create the topics first with `suppressor topics` (same settings)"
            )
        if found != settings.partitions:
            raise ConfigError(
                f"topic {spec.name!r} has {found} partitions, but SUPPRESSOR_PARTITIONS is "
                f"{settings.partitions}: all topics must have the same count (co-partitioning)"
            )
    try:
        ensure_topics(settings.bootstrap_servers, topology.internal_topic_specs(), client)
    except TopicMismatch as error:
        raise ConfigError(str(error)) from None
    changelog = topology.changelog(USERS_TABLE)
    config = topic_configs(settings.bootstrap_servers, [changelog], client).get(changelog, {})
    return state_room(changelog, config, policy, topology)


RECORD_OVERHEAD = 2 * 1024
"""Bytes of a changelog record besides its value: the key (a user id, at most 1 KiB) and
the record and batch headers."""


def state_room(
    changelog: str, config: Mapping[str, str], policy: Policy, topology: Topology
) -> int:
    """The largest encoded state ``changelog`` takes, checked against the largest the
    policy's state limits allow (ConfigError naming both and the fixes)."""
    limit = int(config.get("max.message.bytes", CHANGELOG_MAX_MESSAGE_BYTES))
    room = min(limit, CHANGELOG_MAX_MESSAGE_BYTES) - RECORD_OVERHEAD
    inputs = topology.partitions * (len(topology.inputs) + 1)
    worst = worst_case_state_bytes(policy, inputs)
    if worst > room:
        raise ConfigError(
            f"the policy's state_limits allow a user state of up to {worst:,} bytes, but "
            f"topic {changelog!r} takes records of {limit:,} bytes (max.message.bytes): lower "
            "the limits in the policy's [state_limits] section, or raise the topic's "
            f"max.message.bytes (kafka-configs.sh --alter --entity-type topics --entity-name "
            f"{changelog} --add-config max.message.bytes={CHANGELOG_MAX_MESSAGE_BYTES})"
        )
    return room
