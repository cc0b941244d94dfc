"""Structured logs: one JSON object per line, with the worker's identity on every record.

Fields: `ts` (UTC), `level`, `logger`, `message`, `worker` (app id, host, pid), and, when
the code that logs passes them with `extra=`, `topic`, `partition`, `offset`, `code`.
Privacy: our own log calls pass ids of positions and codes only — never a user id, an
item id or a record's content (a dead letter's original bytes go to the DLQ topic, not to
the log). Library messages (faust, aiokafka) are passed through as they are, except that
the secrets the formatter is given (the SASL password) are replaced by ``***`` wherever they
occur: at debug level aiokafka and kafka-python log every request, and a SASL PLAIN
authentication request carries the password in clear.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

CONTEXT_FIELDS = ("topic", "partition", "offset", "code")


REDACTED = "***"


class JsonFormatter(logging.Formatter):
    def __init__(self, worker: str = "", secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._secrets = _secret_spellings(secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redact(record.getMessage()),
            "worker": self.worker,
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


def redact_everywhere(secrets: Iterable[str]) -> None:
    """Redact ``secrets`` from every log record made from now on in this process, whoever
    formats it (also Faust's own logging, under
    ``faust -A suppressor.entrypoints.worker:app worker``).
    kafka-python's admin client, for one, logs its whole configuration at debug level."""
    spellings = _secret_spellings(secrets)
    if not spellings:
        return
    make_record = logging.getLogRecordFactory()

    def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it when it emits
            return record
        redacted = message
        for secret in spellings:
            redacted = redacted.replace(secret, REDACTED)
        if redacted != message:
            record.msg, record.args = redacted, None
        return record

    logging.setLogRecordFactory(redacting_factory)


def _secret_spellings(secrets: Iterable[str]) -> tuple[str, ...]:
    """Each secret as it is, and as it shows inside the repr of a str or of bytes (a
    request struct's repr shows ``b'\\x00user\\x00password'``); longest first."""
    spellings = set()
    for secret in secrets:
        if secret:
            spellings |= {secret, repr(secret)[1:-1], repr(secret.encode())[2:-1]}
    return tuple(sorted(spellings, key=len, reverse=True))


def logging_config(app_id: str, level: str, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """A dictConfig for the worker: JSON lines on stderr, identified by app id, host and pid;
    ``secrets`` never appear in them."""
    worker = f"{app_id}@{socket.gethostname()}:{os.getpid()}"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "worker": worker, "secrets": list(secrets)}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
    }
