"""A Faust app that only consumes and produces: the framework's own ceiling (bench).

``python -m bench.faust_passthrough`` with ``FP_*`` variables: one agent on the input topics
forwards every record (key, value) to one output topic, with the worker's Faust settings
(linger, fetch size, commit interval, guarantee) and no state, parsing or engine. The
bench times it like the worker, so "worker ÷ Faust passthrough" is what the suppressor's
own work costs and "Faust passthrough ÷ aiokafka passthrough" what Faust's per-record path
costs before any of it.

Each record is sent as the worker sends its outputs
(``suppressor.adapters.faust_internals.sender.SourceSender``, with
the worker's producer class): under exactly_once in the transaction of the partition it
was read from, committed with its offset. Faust's own ``topic.send`` sends outside any
transaction there (it picks no transactional producer for a topic the app does not
consume), which made an exactly-once passthrough that was not one (before 2026-11-22
20:40 UTC).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import faust

from suppressor.adapters.app import FETCH_BYTES_PER_PARTITION
from suppressor.adapters.faust_internals.producer import Producer, new_producer
from suppressor.adapters.faust_internals.sender import SourceSender
from suppressor.adapters.logs import logging_config


class PassthroughApp(faust.App):
    """Faust's app with the worker's producer (``ensure_transaction``, side-by-side commits)."""

    def _new_producer(self) -> Producer:
        return new_producer(self)


def build() -> faust.App:
    env = os.environ
    app = PassthroughApp(
        env["FP_APP_ID"],
        broker=f"kafka://{env['FP_BROKER']}",
        store="memory://",
        datadir=env["FP_DATA_DIR"],
        processing_guarantee=env["FP_GUARANTEE"],
        topic_partitions=int(env["FP_PARTITIONS"]),
        broker_commit_interval=float(env["FP_COMMIT_INTERVAL"]),
        producer_linger=float(env["FP_LINGER"]),
        consumer_max_fetch_size=FETCH_BYTES_PER_PARTITION,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    source = app.topic(*env["FP_INPUTS"].split(","), **raw)
    output = env["FP_OUTPUT"]
    first_path = Path(env["FP_FIRST"])
    sender = SourceSender(app)

    async def forward(stream: Any) -> None:
        first = True
        async for event in stream.events():
            if first:
                first_path.write_text(repr(time.time()))
                first = False
            await sender.begin(event.message.tp)  # Faust may commit between two records
            await sender.send(event.message.tp, output, event.key, event.value)

    app.agent(source, name="forward")(forward)
    return app


def main() -> None:
    app = build()
    config = logging_config(app.conf.id, "info")  # as the worker's (its default level)
    faust.Worker(app, loglevel="info", logging_config=config).execute_from_commandline()


if __name__ == "__main__":
    main()
