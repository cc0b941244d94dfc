"""Structured logs: one JSON object per line, with the worker's identity on every record.

Fields: `ts` (UTC), `level`, `logger`, `message`, `worker` (app id, host, pid), and, when
the code that logs passes them with `extra=`, `topic`, `partition`, `offset`, `code`.
Privacy: our own log calls pass ids of positions and codes only — never a user id, an
item id or a record's content (a dead letter's original bytes go to the DLQ topic, not to
the log). Library messages (faust, aiokafka) are passed through as they are.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

CONTEXT_FIELDS = ("topic", "partition", "offset", "code")


class JsonFormatter(logging.Formatter):
    def __init__(self, worker: str = "") -> None:
        super().__init__()
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "worker": self.worker,
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(app_id: str, level: str) -> dict[str, Any]:
    """A dictConfig for the worker: JSON lines on stderr, identified by app id, host and pid."""
    worker = f"{app_id}@{socket.gethostname()}:{os.getpid()}"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "worker": worker}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }
