"""Forged internal headers (issue 6, item 5: hostile input is more than the value).

The worker marks the records it forwards on its internal repartition topic with two
headers, ``suppressor-source`` (the forwarding partition) and ``suppressor-watermark``.
A producer can put the same headers on a record of an *input* topic. Such a record must be
treated like any other input record: a far-future one refused to the DLQ
(``future_timestamp``), a malformed one dead-lettered with its code, and never a crash.
"""

from __future__ import annotations

import json
import time
from typing import Any

from kafka import KafkaProducer

from faults.harness import Context, Outcome
from tests.integration.worker_helpers import WorkerProcess, write_catalog

FAR = "2030-01-01T00:00:00Z"
FUTURE = "future_timestamp"


def _event(number: int, user: str) -> bytes:
    event = {"event_id": f"h{number}", "type": "browse", "user_id": user, "item_id": "pen-1"}
    return json.dumps({**event, "ts": FAR}).encode()


def run(ctx: Context) -> Outcome:
    deployment = ctx.deployment("headers")
    deployment.feed_catalog(write_catalog(deployment.workdir / "catalog.jsonl"))
    topology = deployment.topology
    user = "forger"
    mine = topology.partition_for(user)
    other = str((mine + 1) % topology.partitions).encode()
    source, watermark = "suppressor-source", "suppressor-watermark"
    origin = "suppressor-origin"
    inputs, repartition = topology.inputs[0], topology.repartition
    cases: list[tuple[str, bytes, list[tuple[str, bytes]], str]] = [
        (f"far-future event, forged {source}", _event(1, user), [(source, other)], FUTURE),
        (
            "far-future event, forged source and watermark",
            _event(2, user),
            [(source, other), (watermark, b"99999999999999")],
            FUTURE,
        ),
        (f"'{{}}' with only a {watermark} header", b"{}", [(watermark, b"abc")], "missing_type"),
        (f"'[1]' with a non-numeric {source}", b"[1]", [(source, b"abc")], "not_object"),
        (
            f"repartition topic: event with a malformed {origin}",
            _event(3, user),
            [(source, other), (origin, b"0.x.12")],
            "bad_internal_record",
        ),
        (
            f"repartition topic: event whose {origin} is not from {source}",
            _event(4, user),
            [(source, other), (origin, f"0.{mine}.12".encode())],
            "bad_internal_record",
        ),
    ]
    figures: dict[str, Any] = {}
    failures: list[str] = []
    worker = WorkerProcess(deployment, "headers").start()
    stop_code: int | str = "?"
    try:
        worker.wait_healthy()
        kafka = KafkaProducer(bootstrap_servers=[ctx.bootstrap])
        sent = {}
        for label, value, headers, code in cases:
            topic = repartition if label.startswith("repartition topic") else inputs
            meta = kafka.send(
                topic, key=user.encode(), value=value, headers=headers, partition=mine
            ).get(timeout=30)
            sent[(meta.topic, meta.partition, meta.offset)] = (label, code)
            time.sleep(2)
        kafka.close()
        dead = deployment.read(topology.dlq, at_least=len(cases), settle_s=3.0, timeout_s=60)
        found = {
            (d["source"].get("topic"), d["source"].get("partition"), d["source"].get("offset")): d
            for d in (r.json() for r in dead)
        }
        for where, (label, code) in sent.items():
            got = found.get(where, {}).get("error_code", "not in the DLQ")
            figures[f"{label}: expected {code}, got"] = got
            if got != code:
                failures.append(f"{label}: {got} (expected {code})")
        alive = worker.process is not None and worker.process.poll() is None
        crashes = [line for line in worker.log_text().splitlines() if "Crashed reason=" in line]
        figures["worker process alive"] = alive
        figures["agent crashes in the worker log"] = len(crashes)
        if crashes:
            reason = crashes[0].split("Crashed reason=", 1)[1].split('"', 1)[0]
            failures.append(f"the agent crashed {len(crashes)}x: {reason}")
        health = worker.health() or {}
        figures[f"stream time of partition {mine} afterwards"] = str(
            (health.get("stream_time") or {}).get(str(mine))
        )
    finally:
        try:
            stop_code = worker.stop(timeout_s=60)
        except Exception:  # a worker that hangs on SIGTERM: recorded, then killed
            stop_code = "no exit within 60 s (killed)"
            worker.kill()
    figures["graceful stop exit status"] = stop_code
    if stop_code != 0:
        failures.append(f"graceful stop: {stop_code}")
    return Outcome(
        name="headers",
        title="Forged internal headers on input records",
        passed=not failures,
        figures=figures,
        notes=failures + ([FINDING] if failures else []),
        method=METHOD,
        headline=(
            f"{len(failures)} checks failed: forged internal headers skip the far-future "
            "check and crash the agent"
            if failures
            else "all refused, no crash"
        ),
    )


FINDING = (
    "Product bug (suppressor/adapters/pipeline.py `Pipeline.handle`, not fixed here: that "
    "file is being "
    "edited by another engineer): the `suppressor-source` / `suppressor-watermark` headers are "
    "trusted on every topic, not only on the internal repartition topic. A record with "
    "`suppressor-source` is taken as already admitted by another partition, so the far-future "
    "check is skipped and the event goes straight into the partition's runtime as if forwarded "
    "(it also registers a forged watermark source); a `suppressor-watermark` header without "
    "`suppressor-source`, or a non-numeric one, raises (`KeyError` / `ValueError`) in the "
    "agent, which Faust reports as `Crashed` and restarts, and the worker then did not stop "
    "on SIGTERM within 60 s. Fix: read these headers only when `message.topic == "
    "topology.repartition`, and treat malformed ones there as a dead letter, not an exception."
)

METHOD = """
- One worker (`exactly_once`, `clock = "event"`), healthy, then four records on the first
  input topic, on the partition of their user, two seconds apart, each with headers a
  producer should not be able to use to steer the worker: far-future events (2030) with a
  forged `suppressor-source` (and a huge `suppressor-watermark`), `{}` with a non-numeric
  `suppressor-watermark` and no source, `[1]` with a non-numeric `suppressor-source`; and
  two events on the worker's own repartition topic whose `suppressor-origin` (where a
  forwarded event was first read) is malformed or names another partition than its source.
- Expected: each in `events.dlq` at its position with the code it would get without the
  headers (`future_timestamp`, `missing_type`, `not_object`), and `bad_internal_record` for
  the two on the repartition topic; no `Crashed` line in the log; the worker alive; SIGTERM
  stops it with status 0 within 60 s.
"""
