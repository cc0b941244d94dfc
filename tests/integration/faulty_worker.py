"""``python -m tests.integration.faulty_worker``: the worker with a fault injected, for the
tests of what a fault costs (not part of the product: the product has no fault hooks).

Environment:

- ``FAULTY_BUG_EVENT_ID``: applying the event with this id raises RuntimeError, as a bug in
  the engine would (the record must go to the dead-letter topic, the worker on);
- ``FAULTY_CRASH_FILE``: while this file exists, every record raises a Kafka error (the
  worker must stop cleanly, and a restart resume from the committed offsets);
- ``FAULTY_HANG_EVENT_ID``: the record holding this event id never finishes (the agent is
  stuck with input waiting; ``/health`` must turn 503 after ``stall_timeout``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from suppressor.adapters import pipeline
from suppressor.core import engine
from suppressor.entrypoints import worker

BUG = os.environ.get("FAULTY_BUG_EVENT_ID")
CRASH_FILE = os.environ.get("FAULTY_CRASH_FILE")
HANG = os.environ.get("FAULTY_HANG_EVENT_ID", "").encode()


def _install() -> None:
    apply = engine.Engine._apply

    def buggy_apply(self: engine.Engine, state: Any, event: Any, out: Any) -> Any:
        if BUG is not None and event.event_id == BUG:
            raise RuntimeError(f"injected bug on {event.event_id}")
        return apply(self, state, event, out)

    engine.Engine._apply = buggy_apply  # type: ignore[method-assign]
    handle = pipeline.Pipeline._handle

    async def faulty_handle(self: pipeline.Pipeline, tp: Any, message: Any) -> None:
        if CRASH_FILE is not None and Path(CRASH_FILE).exists():
            raise KafkaError("injected Kafka error")
        if HANG and HANG in (message.value or b""):
            await asyncio.sleep(3600)
        await handle(self, tp, message)

    pipeline.Pipeline._handle = faulty_handle  # type: ignore[method-assign]


if __name__ == "__main__":
    _install()
    sys.exit(worker.main())
