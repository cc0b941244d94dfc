"""Structured logs: JSON lines with the worker's identity and the record's position."""

from __future__ import annotations

import json
import logging
import logging.config

from suppressor.logs import JsonFormatter, logging_config


def test_a_log_line_is_json_with_the_worker_and_the_position() -> None:
    record = logging.LogRecord("streams.pipeline", logging.WARNING, __file__, 1, "refused: %s",
                               ("not_json",), None)  # fmt: skip
    record.topic, record.partition, record.offset, record.code = "events.cart", 3, 42, "not_json"
    entry = json.loads(JsonFormatter("app@host:1").format(record))
    assert entry["level"] == "warning" and entry["message"] == "refused: not_json"
    assert entry["worker"] == "app@host:1"
    assert (entry["topic"], entry["partition"], entry["offset"], entry["code"]) == (
        "events.cart", 3, 42, "not_json",
    )  # fmt: skip
    assert entry["ts"].endswith("Z")


def test_the_worker_config_is_a_valid_dictconfig() -> None:
    config = logging_config("retarget-suppressor", "info")
    logging.config.dictConfig(config)
    root = logging.getLogger()
    assert any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    for handler in list(root.handlers):
        if isinstance(handler.formatter, JsonFormatter):
            root.removeHandler(handler)
