"""The Faust worker end to end on a real local broker (issue 4), against aiokafka baselines.

Everything runs on one broker this module starts (``deploy/local/kafka`` on port
``PORT``, data under ``bench/out/worker/kafka``) and stops at the end, even on error.

1. *Throughput*: one backlog of synthetic events is put on the five input topics once.
   Each consumer below reads all of it with its own consumer group: a raw aiokafka
   consume-and-produce passthrough (at-least-once: produce, flush, commit offsets every
   ``commit_interval``; and transactional: the same with a transactional producer and
   ``send_offsets_to_transaction``, one transaction per ``commit_interval``; the median of
   ``PASSTHROUGH_RUNS`` runs each), a Faust app that only forwards
   (``bench.faust_passthrough``), the worker (``python -m suppressor.entrypoints.worker``) with
   ``at_least_once`` and with ``exactly_once``, each with its own output topics and app
   id, and the worker's own work from a plain aiokafka loop (``bench.batch_loop``, not
   the product: what leaving Faust's stream path would buy). The worker's time runs from its first
   event counted (``suppressor_events_total``) until its group's committed offsets reach
   the end of every input partition; its start-up (catalog, recovery) is reported apart.
2. *Latency*: a fresh worker with ``grace = "0s"`` gets events stamped with the wall clock
   at a constant rate (half the worker's measured at-least-once rate; one row a quarter);
   every decision read back ``read_committed`` is matched by its ``source_event_ids`` to
   the latest of its source events, and event-to-decision latency is the decision
   record's Kafka timestamp (and, second, the moment the reader saw it) minus that input
   record's timestamp.
3. *Restart*: the worker builds state for ``restart_users`` users (exactly-once), is
   killed with SIGKILL, and restarts on the same data dir; timed from the restart: until
   ``/health`` says ok, and until a record fed at the moment of the restart (one late
   purchase per partition, applied at once) has its decision committed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTP
from kafka import KafkaAdminClient, KafkaConsumer
from kafka import TopicPartition as KafkaTP

from bench import batch_loop as batch
from suppressor.adapters.admin import TopicSpec, ensure_topics
from suppressor.adapters.feed import (
    feed_catalog,
    feed_events,
    jsonl_lines,
    read_topic,
    route_by_type,
)
from suppressor.adapters.settings import Settings, settings_from_values
from suppressor.adapters.topology import Topology
from suppressor.core.clock import NO_TIME
from suppressor.core.datasets import synthetic
from suppressor.core.engine import Engine
from suppressor.core.policy import load_policy
from suppressor.core.replay.files import load_catalog
from suppressor.wire.timefmt import format_ms

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = ROOT / "deploy" / "local" / "kafka"
PORT = 19592
"""Never 9092 (the default), 19092 (tests), 19392: other people run brokers there."""
COMMIT_INTERVAL = batch.COMMIT_INTERVAL
"""The worker's default ``commit_interval``; the passthroughs commit as often."""
PASSTHROUGH_RUNS = 3
"""The aiokafka passthrough reads the backlog in a second or two, so one run's rate is
noisy (21k/s to 45k/s between bench runs on 2026-11-22): the median of this many runs, each
with its own group, is the baseline."""
LATENCY_WARMUP_S = 35.0
"""Longer than the default ``idle_timeout`` (30 s): a fresh worker's partitions wait for
each other's watermarks until they have forwarded each other nothing for that long (with
the hybrid clock, see ``suppressor.adapters.pipeline.Pipeline._fresh``); a live worker runs
for days,
so the steady state after it is what the run measures."""
SETTLE_S = 45.0
"""How long the throughput run keeps counting decisions after the offsets are committed:
longer than the default ``idle_timeout`` (30 s), after which a topic partition read to its
end no longer holds stream time back."""
RESTART_WAIT_S = 300.0
"""How long the restart measurement waits for the probes' decisions."""
LATENCY_RUNS: tuple[tuple[str, str, dict[str, str], float], ...] = (
    ("at_least_once", "at_least_once", {}, 0.5),
    ("exactly_once", "exactly_once", {}, 0.5),
    ("at_least_once_tick_0.1s", "at_least_once", {"tick_interval": "0.1"}, 0.5),
    ("at_least_once_quarter_load", "at_least_once", {}, 0.25),
    ("at_least_once_quarter_load_fetch_wait_0.02s", "at_least_once", {"fetch_wait": "0.02"}, 0.25),
    ("at_least_once_500_per_s", "at_least_once", {}, 500.0),
)
"""Name, processing guarantee, other settings, rate as a fraction of the at-least-once
maximum (above 1: events/s). The third shows what faster ticks (watermarks) buy, the
fourth what load costs, the fifth what holding fetches (``fetch_wait``) does to CPU and
latency, the last issue 20's live-CPU floor at a steady 500 events/s."""
INPUT_NAMES = (
    "events.browse",
    "events.cart",
    "events.purchase",
    "events.review",
    "events.preferences",
)


# --- the broker ---------------------------------------------------------------------------


@contextmanager
def local_broker(data_dir: Path, port: int = PORT) -> Iterator[str]:
    """A fresh broker on ``port`` with its data in ``data_dir``; stopped on the way out."""
    shutil.rmtree(data_dir, ignore_errors=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"KAFKA_CONTROLLER_PORT", "KAFKA_DATA_DIR", "KAFKA_EXTRA_PROPERTIES"}
    }
    env.update(
        KAFKA_PORT=str(port),
        KAFKA_DATA_DIR=str(data_dir),
        KAFKA_PYTHON=sys.executable,
        KAFKA_STOP_WITH_PID=str(os.getpid()),
    )
    started = subprocess.run(
        [str(KAFKA_SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600
    )
    try:
        if started.returncode != 0:
            raise RuntimeError(f"the bench broker did not start on port {port}:\n{started.stderr}")
        yield started.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(KAFKA_SCRIPT), "stop"], env=env, capture_output=True, timeout=120)


# --- a deployment: topics + worker settings ------------------------------------------------


@dataclass
class Deployment:
    """Topics with ``prefix`` (outputs), inputs possibly shared with another deployment."""

    bootstrap: str
    prefix: str
    workdir: Path
    partitions: int
    input_prefix: str | None = None
    policy_text: str = ""
    guarantee: str = "at_least_once"
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)  # a fresh broker: no stale state
        self.workdir.mkdir(parents=True)
        self.policy_path = self.workdir / "policy.toml"
        self.policy_path.write_text(self.policy_text)
        self.settings = settings_from_values(self.values(), {})
        self.topology = Topology.from_settings(self.settings)
        ensure_topics(self.bootstrap, self.topology.user_topic_specs())

    def values(self) -> dict[str, Any]:
        p, i = self.prefix, self.input_prefix or self.prefix
        return {
            "broker": self.bootstrap,
            "input_topics": ",".join(i + name for name in INPUT_NAMES),
            "catalog_topic": i + "catalog",
            "actions_topic": p + "actions",
            "decisions_topic": p + "decisions",
            "conversions_topic": p + "conversions",
            "dlq_topic": p + "events.dlq",
            "partitions": self.partitions,
            "app_id": p.rstrip(".") + "-app",
            "policy": str(self.policy_path),
            "processing_guarantee": self.guarantee,
            "commit_interval": str(COMMIT_INTERVAL),
            **self.extra,
        }

    def env(self) -> dict[str, str]:
        return {f"SUPPRESSOR_{key.upper()}": str(value) for key, value in self.values().items()}


def stop_process(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not stopped within ``timeout_s``."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Worker:
    """``python -m suppressor.entrypoints.worker`` for a deployment: own data dir, web port, log."""

    deployment: Deployment
    name: str
    web_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.deployment.workdir / f"data-{self.name}"

    @property
    def log_path(self) -> Path:
        return self.deployment.workdir / f"worker-{self.name}.log"

    def start(self) -> Worker:
        env = {
            **os.environ,
            **self.deployment.env(),
            "SUPPRESSOR_DATA_DIR": str(self.data_dir),
            "SUPPRESSOR_WEB_PORT": str(self.web_port),
            "SUPPRESSOR_WEB_HOST": "127.0.0.1",
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "suppressor.entrypoints.worker"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
        return self

    def _get(self, path: str) -> tuple[int, bytes] | None:
        url = f"http://127.0.0.1:{self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())
        except OSError:
            return None

    def healthy(self) -> bool:
        got = self._get("/health")
        return got is not None and got[0] == 200

    def metrics_text(self) -> str:
        got = self._get("/metrics")
        return "" if got is None else got[1].decode()

    def metrics(self) -> dict[str, float]:
        """Prometheus text, summed over labels: ``name`` -> value (``name{le=..}`` kept)."""
        return parse_metrics(self.metrics_text())

    def cpu_seconds(self) -> float:
        """The worker process's user + system CPU seconds so far (Linux ``/proc``)."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def check_alive(self) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"worker {self.name} exited with {code}:\n{tail}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        stop_process(self.process, 60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)


def metric_values(text: str, name: str) -> list[float]:
    """Every sample of ``name`` (one per label set)."""
    found = []
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            with suppress(ValueError):
                found.append(float(line.rpartition(" ")[2]))
    return found


def parse_metrics(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name, _, labels = name_part.partition("{")
        if name.endswith("_bucket"):  # keep the bucket bound, sum the rest of the labels
            le = next((p for p in labels.rstrip("}").split(",") if p.startswith("le=")), "")
            name = f"{name}{{{le}}}"
        try:
            values[name] = values.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return values


@contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


# --- offsets ------------------------------------------------------------------------------


class Offsets:
    """End offsets of topics and committed offsets of consumer groups (kafka-python)."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap)

    def partitions(self, topics: Iterable[str]) -> list[KafkaTP]:
        return [
            KafkaTP(topic, p)
            for topic in topics
            for p in sorted(self.consumer.partitions_for_topic(topic) or ())
        ]

    def end(self, topics: Iterable[str]) -> dict[KafkaTP, int]:
        return dict(self.consumer.end_offsets(self.partitions(topics)))

    def committed(self, group: str) -> dict[KafkaTP, int]:
        try:
            found = self.admin.list_group_offsets({group: None}).get(group, {})
        except Exception:  # the group does not exist yet, or its coordinator moves
            return {}
        return {tp: meta.offset for tp, meta in found.items()}

    def caught_up(self, group: str, end: dict[KafkaTP, int]) -> bool:
        committed = self.committed(group)
        return all(committed.get(tp, 0) >= offset for tp, offset in end.items() if offset)

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()


# --- 1. throughput --------------------------------------------------------------------------


async def passthrough(
    bootstrap: str, inputs: Sequence[str], output: str, group: str, total: int, txn: bool
) -> dict[str, Any]:
    """Consume every input record and produce it to ``output``: what any worker must do."""
    consumer = batch.backlog_consumer(bootstrap, inputs, group)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        transactional_id=f"{group}-txn" if txn else None,
        enable_idempotence=txn,
    )
    done = 0
    first: float | None = None
    async with batch.started(consumer, producer):
        while done < total:
            if txn:
                await producer.begin_transaction()
            offsets: dict[AioTP, int] = {}
            async for tp, messages in batch.commit_window(consumer, total - done):
                if first is None:
                    first = time.monotonic()
                for message in messages:
                    await producer.send(output, message.value, key=message.key)
                offsets[tp] = messages[-1].offset + 1
                done += len(messages)
            if txn:
                await producer.send_offsets_to_transaction(offsets, group)
                await producer.commit_transaction()
            else:
                await batch.flush_and_commit(producer, consumer, offsets)
        seconds = time.monotonic() - (first or time.monotonic())
    return {"events": done, "seconds": seconds, "events_per_s": done / seconds}


def faust_passthrough(
    bootstrap: str,
    inputs: Sequence[str],
    workdir: Path,
    partitions: int,
    guarantee: str,
    offsets: Offsets,
    timeout_s: float = 900,
) -> dict[str, Any]:
    """``bench.faust_passthrough`` on the backlog: Faust's own consume-and-produce, timed
    from its first record to its group's last committed input offset."""
    app_id = f"faust-passthrough-{workdir.name}"  # its own group: from the first offset
    output = f"{app_id}-out"
    ensure_topics(bootstrap, [TopicSpec(output, partitions)])
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    first_file = workdir / "first"
    env = {
        **os.environ,
        "FP_APP_ID": app_id,
        "FP_BROKER": bootstrap,
        "FP_DATA_DIR": str(workdir / "data"),
        "FP_GUARANTEE": guarantee,
        "FP_PARTITIONS": str(partitions),
        "FP_COMMIT_INTERVAL": str(COMMIT_INTERVAL),
        "FP_LINGER": str(Settings.model_fields["producer_linger"].default),
        "FP_INPUTS": ",".join(inputs),
        "FP_OUTPUT": output,
        "FP_FIRST": str(first_file),
    }
    end = offsets.end(inputs)
    total = sum(end.values())
    started = time.monotonic()
    with (workdir / "faust.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.faust_passthrough"], cwd=ROOT, env=env,
            stdout=log, stderr=log,
        )  # fmt: skip
    try:
        while not offsets.caught_up(app_id, end):
            if process.poll() is not None:
                raise RuntimeError(f"Faust passthrough exited {process.returncode}: {log.name}")
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"Faust passthrough did not catch up in {timeout_s}s")
            time.sleep(0.25)
        done = time.time()
    finally:
        stop_process(process, 30)
    seconds = done - float(first_file.read_text())
    return {"events": total, "seconds": seconds, "events_per_s": total / seconds}


def worker_catch_up(
    deployment: Deployment, offsets: Offsets, total: int, timeout_s: float = 1800
) -> dict[str, Any]:
    """Start a worker on the pre-loaded backlog; time it from its first event to the last
    committed input offset."""
    end = offsets.end(deployment.topology.inputs)
    started = time.monotonic()
    first: float | None = None
    with running(Worker(deployment, "catch-up")) as worker:
        while True:
            time.sleep(0.25)
            worker.check_alive()
            now = time.monotonic()
            if now - started > timeout_s:
                raise RuntimeError(f"worker did not catch up in {timeout_s}s")
            if first is None:
                if worker.metrics().get("suppressor_events_total", 0) > 0:
                    first, cpu_first = now, worker.cpu_seconds()
                continue
            if offsets.caught_up(deployment.settings.app_id, end):
                done, cpu_done = now, worker.cpu_seconds()
                break
        metrics = worker.metrics()
        settle = _settle(worker, done)
    users, state_bytes = stored_users(worker.data_dir)
    seconds = done - first
    actions = metrics.get("suppressor_actions_total", 0.0)
    suppressed = metrics.get("suppressor_suppressed_total", 0.0)
    settled_s = settle["settled_at"] - first
    return {
        "settle_window_s": SETTLE_S,
        "decisions_later": settle["decisions_later"],
        "settled_seconds": settled_s,
        "settled_events_per_s": total / settled_s,
        "guarantee": deployment.guarantee,
        "events": total,
        "seconds": seconds,
        "startup_s": first - started,
        "events_per_s": total / seconds,
        "actions": int(actions),
        "actions_per_s": actions / seconds,
        "decisions": int(actions + suppressed),
        "events_counted": int(metrics.get("suppressor_events_total", 0)),
        "cpu_us_per_event": (cpu_done - cpu_first) * 1e6 / total,
        "users_stored": users,
        "mean_state_bytes": state_bytes / max(users, 1),
    }


def _settle(worker: Worker, done: float) -> dict[str, Any]:
    """After the offsets are committed, the decisions of the last events read can still be
    to come: held until the other partitions' watermarks arrive with the next ticks, or
    until a sparse topic whose partition was read to its end has been quiet for
    ``idle_timeout`` (its last ``ts`` holds stream time back until then). The decision
    count ``SETTLE_S`` seconds later, and the moment the count got within 1% of it (the
    last ``grace`` of event time trickles out later still, with the hybrid clock)."""
    series: list[tuple[float, float]] = []
    while True:
        now = time.monotonic()
        metrics = worker.metrics()
        decided = metrics.get("suppressor_actions_total", 0.0) + metrics.get(
            "suppressor_suppressed_total", 0.0
        )
        series.append((now, decided))
        if now - done >= SETTLE_S:
            break
        time.sleep(0.25)
    final = series[-1][1]
    settled_at = next(t for t, n in series if n >= 0.99 * final)
    return {"decisions_later": int(final), "settled_at": max(done, settled_at)}


# --- 2. latency -----------------------------------------------------------------------------


async def latency_run(
    worker: Worker, events: list[dict[str, Any]], rate: float, seconds: float
) -> dict[str, Any]:
    """Feed ``events`` re-stamped with the wall clock at ``rate``/s for ``seconds`` (after a
    warm-up), read the decisions read_committed, match them to their latest source event."""
    deployment = worker.deployment
    topology = deployment.topology
    bootstrap = deployment.bootstrap
    routes = route_by_type(topology.inputs)
    lags: list[float] = []  # wall clock - stream time, per partition, sampled each second
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    reader = AIOKafkaConsumer(
        topology.decisions,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    sent: dict[str, int] = {}
    seen: list[tuple[int, int, dict[str, Any]]] = []  # (record ts, seen at, decision)
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set():
            batches = await reader.getmany(timeout_ms=200)
            seen_at = time.time_ns() // 1_000_000
            for messages in batches.values():
                for message in messages:
                    seen.append((message.timestamp, seen_at, json.loads(message.value)))

    # After the warm-up, the first and the latest: (monotonic, worker CPU seconds, /metrics)
    samples: list[tuple[float, float, dict[str, float]]] = []

    async def sample_lag() -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            if time.monotonic() - started < LATENCY_WARMUP_S:
                continue
            moment, cpu_s = time.monotonic(), worker.cpu_seconds()
            text = await asyncio.to_thread(worker.metrics_text)
            samples.append((moment, cpu_s, parse_metrics(text)))
            del samples[1:-1]
            now_s = time.time()
            lags.extend(now_s - t for t in metric_values(text, "suppressor_stream_time_seconds"))

    await producer.start()
    await reader.start()
    started = time.monotonic()
    reading = asyncio.create_task(read())
    sampling = asyncio.create_task(sample_lag())
    try:
        now_ms = time.time_ns() // 1_000_000
        for user in topology.one_user_per_partition("bench"):  # every topic of every partition
            for topic in topology.inputs:  # knows an event time from the start
                prime = {"event_id": f"prime-{topic}-{user}", "type": "consent",
                         "user_id": user, "ts": format_ms(now_ms)}  # fmt: skip
                await producer.send(topic, json.dumps(prime).encode(), key=user.encode())
        await producer.flush()
        total = int(rate * (LATENCY_WARMUP_S + seconds))
        started = time.monotonic()
        measured_from = 0
        for number in range(total):
            template = events[number % len(events)]
            due = started + number / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if measured_from == 0 and time.monotonic() - started >= LATENCY_WARMUP_S:
                measured_from = number
            now_ms = time.time_ns() // 1_000_000
            event = {**template, "event_id": f"lat-{number:08d}", "ts": format_ms(now_ms)}
            user = str(event["user_id"])
            await producer.send(
                routes[event["type"]], json.dumps(event).encode(), key=user.encode(),
                timestamp_ms=now_ms,
            )  # fmt: skip
            sent[event["event_id"]] = now_ms
        feed_seconds = time.monotonic() - started
        await producer.flush()
        await asyncio.sleep(5 * COMMIT_INTERVAL + 3)  # the last decisions come out
    finally:
        stop.set()
        with suppress(Exception):
            await reading
        with suppress(Exception):
            await sampling
        await reader.stop()
        await producer.stop()
    measured = {f"lat-{n:08d}" for n in range(measured_from, total)}
    record_ms: list[int] = []
    seen_ms: list[int] = []
    decided: set[str] = set()
    for record_ts, seen_at, decision in seen:
        sources = [s for s in decision.get("source_event_ids", []) if s in sent]
        if not sources:
            continue
        trigger = max(sources, key=lambda s: sent[s])
        if trigger not in measured:
            continue
        decided.add(trigger)
        record_ms.append(record_ts - sent[trigger])
        seen_ms.append(seen_at - sent[trigger])
    cpu_share = read_lag_p99 = None
    if len(samples) > 1:
        (start, cpu_start, first), (end, cpu_end, last) = samples
        cpu_share = (cpu_end - cpu_start) / (end - start)
        grown = {key: value - first.get(key, 0.0) for key, value in last.items()}
        read_lag_p99 = histogram_quantile(grown, "suppressor_event_lag_seconds", 0.99)
    return {
        "guarantee": deployment.guarantee,
        "rate": rate,
        "achieved_rate": total / feed_seconds,
        "events_measured": len(measured),
        "decisions_measured": len(record_ms),
        "events_with_decision": len(decided),
        "worker_cpu_share": cpu_share,
        "read_lag_p99_ms": _ms(read_lag_p99),
        "stream_lag_p50_ms": _ms(percentile(lags, 50)),
        "stream_lag_p99_ms": _ms(percentile(lags, 99)),
        "record_p50_ms": percentile(record_ms, 50),
        "record_p99_ms": percentile(record_ms, 99),
        "seen_p50_ms": percentile(seen_ms, 50),
        "seen_p99_ms": percentile(seen_ms, 99),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))])


def histogram_quantile(metrics: dict[str, float], name: str, q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of a Prometheus histogram."""
    buckets: list[tuple[float, float]] = []
    for key, count in metrics.items():
        if key.startswith(f"{name}_bucket{{le="):
            buckets.append((float(key.split('le="', 1)[1].rstrip('"}')), count))
    if not buckets:
        return None
    buckets.sort()
    total = buckets[-1][1]
    for upper, count in buckets:
        if total and count >= q * total:
            return upper
    return None


def measure_latency(
    deployment: Deployment, events: list[dict[str, Any]], rate: float, seconds: float
) -> dict[str, Any]:
    with running(Worker(deployment, "latency")) as worker:
        _wait_healthy(worker)
        result = asyncio.run(latency_run(worker, events, rate, seconds))
        metrics = worker.metrics()
    result["worker_decision_p99_s"] = histogram_quantile(
        metrics, "suppressor_decision_seconds", 0.99
    )
    return result


def _wait_healthy(worker: Worker, timeout_s: float = 300) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        worker.check_alive()
        if worker.healthy():
            return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"worker {worker.name} not healthy in {timeout_s}s")


# --- 3. restart after kill -9 ------------------------------------------------------------------


def measure_restart(
    deployment: Deployment, offsets: Offsets, events_path: Path, catalog_path: Path
) -> dict[str, Any]:
    deployment_feed(deployment, events_path, catalog_path)
    end = offsets.end(deployment.topology.inputs)
    worker = Worker(deployment, "restart")
    worker.start()
    try:
        started = time.monotonic()
        while not offsets.caught_up(deployment.settings.app_id, end):
            worker.check_alive()
            if time.monotonic() - started > 1800:
                raise RuntimeError("the restart run's worker did not catch up in 30 min")
            time.sleep(1)
        build_s = time.monotonic() - started
        _wait_stream_time(worker)  # else the probes are not late and wait for the clock
        time.sleep(2 * COMMIT_INTERVAL)
        users_before = worker.metrics().get("suppressor_users", 0.0)
        worker.kill()
        changelog = deployment.topology.changelog("users")
        changelog_records = sum(offsets.end([changelog]).values())
        clock_changelog = deployment.topology.changelog("stream_clock")
        clock_records = len(read_topic(deployment.bootstrap, clock_changelog, settle_s=2.0))
        log_offset = worker.log_path.stat().st_size
        probes = deployment.topology.one_user_per_partition("bench")
        restarted = time.monotonic()
        worker.start()
        _feed_probes(deployment, probes)
        result = asyncio.run(_await_probes(worker, deployment, probes, restarted))
        worker.check_alive()
        result["users_after"] = worker.metrics().get("suppressor_users", 0.0)
        with worker.log_path.open("rb") as log:
            log.seek(log_offset)
            restarted_log = log.read().decode(errors="replace")
        result["partitions_without_stream_time"] = restarted_log.count(f"stream time {NO_TIME}")
        worker.stop()
        result.update(_full_restore(deployment, changelog_records))
    finally:
        worker.stop()
    return {
        "guarantee": deployment.guarantee,
        "build_s": build_s,
        "users_before": users_before,
        "changelog_records": changelog_records,
        "clock_changelog_committed_records": clock_records,
        **result,
    }


def _full_restore(deployment: Deployment, changelog_records: int) -> dict[str, Any]:
    """A worker on an empty data dir (a new machine, a lost volume): every partition is
    restored from the whole changelog; timed from its start to ``/health`` ok."""
    fresh = Worker(deployment, "restart-fresh-disk")
    fresh.start()
    try:
        ready_s = _wait_healthy(fresh, timeout_s=1800)
    finally:
        fresh.stop()
    # Read off the restored RocksDB itself: the users gauge counts users of the partitions
    # that processed an event, and this worker processed none.
    users, state_bytes = stored_users(fresh.data_dir)
    return {
        "full_restore_healthy_s": ready_s,
        "full_restore_users": users,
        "full_restore_records_per_s": changelog_records / max(ready_s, 1e-9),
        "mean_state_bytes": state_bytes / max(users, 1),
    }


def stored_users(data_dir: Path) -> tuple[int, int]:
    """Users in a stopped worker's RocksDB users table, and their encoded states' bytes."""
    from rocksdict import AccessType, Options, Rdict

    from suppressor.adapters.faust_internals.store import CHECKPOINT_KEY

    users = size = 0
    for path in sorted(data_dir.glob("v1/tables/users-*.db")):
        db = Rdict(str(path), access_type=AccessType.read_only(), options=Options(raw_mode=True))
        try:
            for key, value in db.items():
                if key != CHECKPOINT_KEY:
                    users += 1
                    size += len(value)
        finally:
            db.close()
    return users, size


def _wait_stream_time(worker: Worker, timeout_s: float = 180) -> None:
    """Until every partition has a stream time: topics with nothing to read hold it back
    for the policy's ``idle_timeout`` (30 s) after the worker starts, and a worker killed
    before then saves no stream time (see SPEC section 5)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        worker.check_alive()
        got = worker._get("/health")
        times = json.loads(got[1]).get("stream_time", {}) if got is not None else {}
        if times and all(value is not None for value in times.values()):
            return
        time.sleep(1)
    raise RuntimeError(f"worker {worker.name}: no stream time on every partition in {timeout_s}s")


def deployment_feed(deployment: Deployment, events_path: Path, catalog_path: Path) -> int:
    topology = deployment.topology
    feed_catalog(deployment.bootstrap, jsonl_lines(catalog_path), topology.catalog)
    return feed_events(deployment.bootstrap, jsonl_lines(events_path), topology.inputs).sent


def _feed_probes(deployment: Deployment, users: list[str]) -> None:
    """One purchase per partition, dated long before stream time: late, so applied at once."""
    lines = [
        json.dumps({"event_id": f"probe-{user}", "type": "purchase", "user_id": user,
                    "ts": "2019-09-01T00:00:00Z", "order_id": f"probe-order-{user}",
                    "items": [{"item_id": "probe-item", "quantity": 1}]}).encode()
        for user in users
    ]  # fmt: skip
    feed_events(deployment.bootstrap, lines, deployment.topology.inputs)


async def _await_probes(
    worker: Worker, deployment: Deployment, probes: list[str], restarted: float
) -> dict[str, Any]:
    reader = AIOKafkaConsumer(
        deployment.topology.decisions,
        bootstrap_servers=deployment.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await reader.start()
    waiting = {f"probe-{user}" for user in probes}
    first: float | None = None
    healthy: float | None = None
    processed: float | None = None
    try:
        while waiting:
            if time.monotonic() - restarted > RESTART_WAIT_S:
                break  # reported as "not within RESTART_WAIT_S"
            worker.check_alive()
            batches = await reader.getmany(timeout_ms=100)
            now = time.monotonic()
            for messages in batches.values():
                for message in messages:
                    sources = set(json.loads(message.value).get("source_event_ids", []))
                    if sources & waiting:
                        waiting -= sources
                        first = now if first is None else first
            if healthy is None and await asyncio.to_thread(worker.healthy):
                healthy = time.monotonic()
            if processed is None:
                metrics = await asyncio.to_thread(worker.metrics)
                if metrics.get("suppressor_events_total", 0) > 0:
                    processed = time.monotonic()
        last: float | None = time.monotonic() if not waiting else None
    finally:
        await reader.stop()
    return {
        "healthy_s": None if healthy is None else healthy - restarted,
        "first_event_processed_s": None if processed is None else processed - restarted,
        "first_decision_s": None if first is None else first - restarted,
        "all_partitions_s": None if last is None else last - restarted,
        "wait_limit_s": RESTART_WAIT_S,
    }


# --- the whole run -------------------------------------------------------------------------------


def run(
    out: Path,
    *,
    events: int,
    users: int,
    restart_users: int,
    latency_seconds: float,
    partitions: int = 8,
    port: int = PORT,
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "synthetic"
    data.mkdir(exist_ok=True)
    synthetic.generate(data / "events.jsonl", data / "catalog.jsonl", events=events, users=users)
    restart_data = out / "synthetic-restart"
    restart_data.mkdir(exist_ok=True)
    synthetic.generate(
        restart_data / "events.jsonl", restart_data / "catalog.jsonl",
        events=restart_users, users=restart_users, seed=47,
    )  # fmt: skip
    result: dict[str, Any] = {
        "partitions": partitions,
        "port": port,
        "latency_seconds": latency_seconds,
        "latency_warmup_s": LATENCY_WARMUP_S,
    }
    with local_broker(out / "kafka", port) as bootstrap:
        offsets = Offsets(bootstrap)
        try:
            result.update(_throughput(bootstrap, out, offsets, data, partitions))
            maximum = result["worker"]["at_least_once"]["events_per_s"]
            templates = [json.loads(line) for line in jsonl_lines(data / "events.jsonl")]
            random.Random(4).shuffle(templates)  # users across partitions, all types mixed
            result["latency"] = {}
            for name, guarantee, extra, load in LATENCY_RUNS:
                tag = f"lat-{name}"
                deployment = Deployment(
                    bootstrap, f"{tag}.", out / tag, partitions,
                    policy_text='grace = "0s"\n', guarantee=guarantee, extra=extra,
                )  # fmt: skip
                feed_catalog(bootstrap, jsonl_lines(data / "catalog.jsonl"),
                             deployment.topology.catalog)  # fmt: skip
                result["latency"][name] = measure_latency(
                    deployment, templates, load if load > 1 else load * maximum, latency_seconds
                )
                print(f"latency {name}: {result['latency'][name]}", flush=True)
            deployment = Deployment(
                bootstrap, "rst.", out / "restart", partitions, guarantee="exactly_once"
            )
            result["restart"] = measure_restart(
                deployment, offsets, restart_data / "events.jsonl", restart_data / "catalog.jsonl"
            )
            print(f"restart: {result['restart']}", flush=True)
        finally:
            offsets.close()
    return result


def _throughput(
    bootstrap: str, out: Path, offsets: Offsets, data: Path, partitions: int
) -> dict[str, Any]:
    backlog = Deployment(bootstrap, "tp-alo.", out / "tp-alo", partitions, input_prefix="in.")
    total = deployment_feed(backlog, data / "events.jsonl", data / "catalog.jsonl")
    inputs = backlog.topology.inputs
    baseline: dict[str, Any] = {}
    for name, txn in (("at_least_once", False), ("exactly_once", True)):
        runs = []
        for attempt in range(PASSTHROUGH_RUNS):
            output = f"passthrough-{name}-{attempt}"
            ensure_topics(bootstrap, [TopicSpec(output, partitions)])
            runs.append(asyncio.run(passthrough(bootstrap, inputs, output, output, total, txn)))
        runs.sort(key=lambda run: float(run["events_per_s"]))
        baseline[name] = {**runs[len(runs) // 2], "runs_events_per_s": [
            run["events_per_s"] for run in runs]}  # fmt: skip
        print(f"passthrough {name}: {baseline[name]}", flush=True)
    framework: dict[str, Any] = {}
    for name in ("at_least_once", "exactly_once"):
        framework[name] = faust_passthrough(
            bootstrap, inputs, out / f"faust-{name}", partitions, name, offsets
        )
        framework[name]["vs_passthrough"] = (
            framework[name]["events_per_s"] / baseline[name]["events_per_s"]
        )
        print(f"faust passthrough {name}: {framework[name]}", flush=True)
    worker: dict[str, Any] = {}
    for name, deployment in (
        ("at_least_once", backlog),
        ("exactly_once", Deployment(bootstrap, "tp-eos.", out / "tp-eos", partitions,
                                    input_prefix="in.", guarantee="exactly_once")),
    ):  # fmt: skip
        worker[name] = worker_catch_up(deployment, offsets, total)
        worker[name]["vs_passthrough"] = (
            worker[name]["events_per_s"] / baseline[name]["events_per_s"]
        )
        worker[name]["vs_faust"] = worker[name]["events_per_s"] / framework[name]["events_per_s"]
        print(f"worker {name}: {worker[name]}", flush=True)
    outside = _batch_loop(bootstrap, backlog, inputs, data, out, total)
    outside["vs_passthrough"] = outside["events_per_s"] / baseline["at_least_once"]["events_per_s"]
    outside["vs_worker"] = outside["events_per_s"] / worker["at_least_once"]["events_per_s"]
    print(f"batch loop at_least_once: {outside}", flush=True)
    return {
        "events": total,
        "passthrough": baseline,
        "faust": framework,
        "worker": worker,
        "batch_loop": outside,
    }


def _batch_loop(
    bootstrap: str, backlog: Deployment, inputs: Sequence[str], data: Path, out: Path, total: int
) -> dict[str, Any]:
    """``bench.batch_loop``: the worker's own work from a plain aiokafka loop (no Faust)."""
    prefix = "batch-loop."
    partitions = backlog.partitions
    ensure_topics(bootstrap, [TopicSpec(prefix + name, partitions) for name in batch.OUTPUTS])
    policy = load_policy(backlog.policy_path)
    catalog, _ = load_catalog(str(data / "catalog.jsonl"))
    return asyncio.run(
        batch.batch_loop(
            bootstrap, inputs, prefix, Engine(policy, catalog), total, out / "batch-loop"
        )
    )
