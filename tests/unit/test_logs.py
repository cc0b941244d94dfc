"""Structured logs: JSON lines with the worker's identity and the record's position."""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from pathlib import Path

from suppressor.adapters.logs import JsonFormatter, logging_config


def test_a_log_line_is_json_with_the_worker_and_the_position() -> None:
    record = logging.LogRecord("suppressor.adapters.pipeline", logging.WARNING, __file__, 1,
                               "refused: %s", ("not_json",), None)  # fmt: skip
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


def test_the_secrets_given_are_redacted_even_inside_a_request_repr() -> None:
    """At debug level aiokafka logs every request; SASL PLAIN's carries the password."""
    from aiokafka.protocol.admin import SaslAuthenticateRequest_v1

    password = "s3cret-pa$$"
    request = SaslAuthenticateRequest_v1(b"\0suppressor\0" + password.encode())
    message = "Request to %s:%d %d: %s"  # as aiokafka.conn logs it
    record = logging.LogRecord("aiokafka.conn", logging.DEBUG, __file__, 1, message,
                               ("localhost", 9093, 4, request), None)  # fmt: skip
    assert password in JsonFormatter("w").format(record)  # what would leak without secrets
    line = JsonFormatter("w", secrets=[password]).format(record)
    assert password not in line and "***" in json.loads(line)["message"]
    odd = "pä\\ss\x00word"  # shown escaped in reprs
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "%r %r", (odd, odd.encode()), None)
    try:
        raise RuntimeError(f"login failed for {odd}")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    line = JsonFormatter("w", secrets=[odd]).format(record)
    entry = json.loads(line)
    assert odd not in line and odd not in entry["message"] and odd not in entry["exception"]
    assert entry["message"] == "'***' b'***'"


def test_the_worker_config_passes_the_secrets_to_the_formatter() -> None:
    config = logging_config("retarget-suppressor", "info", secrets=("hunter2",))
    formatter = config["formatters"]["json"]
    assert formatter["secrets"] == ["hunter2"]


def test_redact_everywhere_reaches_records_whoever_formats_them() -> None:
    from suppressor.adapters.logs import redact_everywhere

    factory = logging.getLogRecordFactory()
    try:
        redact_everywhere(["hunter2"])
        logger = logging.getLogger("kafka.admin.client")
        record = logger.makeRecord(logger.name, logging.DEBUG, __file__, 1,
                                   "Starting KafkaAdminClient with configuration: %s",
                                   ({"sasl_plain_password": "hunter2"},), None)  # fmt: skip
        assert record.getMessage() == (
            "Starting KafkaAdminClient with configuration: {'sasl_plain_password': '***'}"
        )
        assert logging.Formatter().format(record).endswith("'***'}")
        plain = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "%d%%", (5,), None)
        assert plain.getMessage() == "5%" and plain.args == (5,)  # untouched
    finally:
        logging.setLogRecordFactory(factory)


def test_the_worker_logs_at_its_level_and_builds_no_debug_records(tmp_path: Path) -> None:
    """Faust's worker, at warning and above, sets the root logger to DEBUG for its
    terminal spinner: every debug record (one per record sent) would be built."""
    from suppressor.adapters.app import build_app
    from suppressor.adapters.faust_internals.worker import faust_worker
    from suppressor.adapters.settings import Settings

    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    try:
        for level in ("warning", "error"):
            settings = Settings(data_dir=tmp_path, log_level=level)
            worker = faust_worker(build_app(settings), settings)
            number = logging.getLevelName(level.upper())
            root.setLevel(number)  # what the logging config did just before
            worker.on_setup_root_logger(root, number)
            assert root.level == number
            assert not logging.getLogger("faust.topics").isEnabledFor(logging.DEBUG)
            assert not logging.getLogger("aiokafka.producer").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
