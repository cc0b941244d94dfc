"""The worker on a secured broker: SASL (SCRAM-SHA-512) over TLS, and secrets kept secret.

The broker is ``deploy/local/kafka`` with ``KAFKA_SECURE=1`` on its own port
(``SUPPRESSOR_TEST_SECURE_KAFKA_PORT``, default 19492, controller 19493) and data dir: its
only client listener is SASL_SSL, the controller's takes TLS with a client certificate
only. The CA and the broker certificate are made by this module (``deploy/local/kafka
certs``) in a temporary directory, and the users' passwords are fresh random strings, so
that finding one in an output means it leaked from there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError

from suppressor.adapters.admin import BrokerUnavailable, list_topics
from tests.integration.conftest import KAFKA_SCRIPT
from tests.integration.worker_helpers import (
    PYTHON,
    REPO,
    Deployment,
    WorkerProcess,
    by_action_id,
    last_ts,
    replay_actions,
    rfc3339,
    shop_events,
    write_catalog,
    write_lines,
)

USER = "suppressor"


@dataclass(frozen=True)
class SecureBroker:
    bootstrap: str
    controller_port: int
    tls_dir: Path
    data_dir: Path
    password: str

    @property
    def ca(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def log(self) -> Path:
        return self.data_dir / "kafka.log"

    def settings(self, password: str | None = None) -> dict[str, str]:
        """The worker's security settings (as Deployment extras: SUPPRESSOR_* variables)."""
        return {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": USER,
            "sasl_password": self.password if password is None else password,
            "ssl_cafile": str(self.ca),
        }


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    port = int(os.environ.get("SUPPRESSOR_TEST_SECURE_KAFKA_PORT", "19492"))
    root = tmp_path_factory.mktemp("secure-kafka")
    tls_dir, data_dir = root / "tls", root / "data"
    made = subprocess.run(
        [str(KAFKA_SCRIPT), "certs", str(tls_dir)], capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    password = "pw-" + secrets.token_urlsafe(18)
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("KAFKA_")
    }  # fmt: skip
    env.update(
        KAFKA_SECURE="1",
        KAFKA_PORT=str(port),
        KAFKA_CONTROLLER_PORT=str(port + 1),
        KAFKA_DATA_DIR=str(data_dir),
        KAFKA_TLS_DIR=str(tls_dir),
        KAFKA_SCRAM_USERS=f"{USER}={password}",
        KAFKA_PYTHON=sys.executable,
        KAFKA_STOP_WITH_PID=str(os.getpid()),
    )
    started = subprocess.run(
        [str(KAFKA_SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=600
    )
    if started.returncode != 0:
        pytest.fail(
            f"the secured local Kafka broker did not start (port {port}):\n{started.stderr}\n"
            "Set SUPPRESSOR_TEST_SECURE_KAFKA_PORT to use another port.",
            pytrace=False,
        )
    try:
        yield SecureBroker(
            started.stdout.strip().splitlines()[-1], port + 1, tls_dir, data_dir, password
        )
    finally:
        subprocess.run([str(KAFKA_SCRIPT), "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture
def secure_deployment(
    secure_broker: SecureBroker, unique_topic_prefix: str, tmp_path: Path
) -> Deployment:
    return Deployment(
        secure_broker.bootstrap, unique_topic_prefix, tmp_path, extra=secure_broker.settings()
    )


# --- (a) the worker over SASL_SSL ---------------------------------------------------------


def test_worker_over_sasl_ssl_gives_replays_actions_and_keeps_the_password(
    secure_broker: SecureBroker, secure_deployment: Deployment, tmp_path: Path
) -> None:
    """Topics, catalog, events, the worker and the read-back all go through SASL_SSL (the
    broker has no other client port); at debug level, the password is in no log line, and
    not on /metrics, /health or /health/live."""
    deployment = secure_deployment
    catalog = write_catalog(tmp_path / "catalog.jsonl")
    events = write_lines(tmp_path / "events.jsonl", shop_events(users=25, events=250))
    until = rfc3339(last_ts(events) + timedelta(days=2))
    expected = replay_actions(events, catalog, deployment.policy_path, until, tmp_path)
    assert len(expected) >= 5, "the stream should produce some actions"
    deployment.feed_catalog(catalog)
    worker = WorkerProcess(deployment, "secure", SUPPRESSOR_LOG_LEVEL="debug").start()
    try:
        worker.wait_healthy()
        deployment.feed_events(events.read_bytes().splitlines())
        deployment.feed_sentinels(until)
        actual = by_action_id(deployment.actions(at_least=len(expected)))
        assert actual == expected
        pages = {
            path: _get(worker.web_port, path) for path in ("/metrics", "/health", "/health/live")
        }
        assert "suppressor_events_total" in pages["/metrics"]
    finally:
        assert worker.stop() == 0
    for path, body in pages.items():
        assert secure_broker.password not in body, f"the password is on {path}"
    log = worker.log_text()
    assert '"level": "debug"' in log, "the worker should have logged at debug level"
    assert "SaslAuthenticate" in log or "sasl" in log.lower(), "debug logs should show the login"
    assert secure_broker.password not in log
    assert_no_secret_spelling(log, secure_broker.password)
    # kafka-python's admin client logs its whole configuration at debug level, password
    # included: suppressor.adapters.logs redacts it (this is where the test first caught a leak).
    assert "'sasl_plain_password': '***'" in log, "expected the redacted admin client config"


def _get(port: int, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as error:  # /health answers 503 while starting
        return str(error.read().decode())


def assert_no_secret_spelling(text: str, secret: str) -> None:
    for spelling in (secret, repr(secret.encode())[2:-1], json.dumps(secret)[1:-1]):
        assert spelling not in text


# --- (b) clients without (the right) credentials are refused -----------------------------


class BrokerLog:
    """The broker's log from a point on: what it said about the connections since."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = path.stat().st_size

    def since(self) -> str:
        with self.path.open("rb") as handle:
            handle.seek(self.start)
            return handle.read().decode(errors="replace")


def _client(broker: SecureBroker, **security: Any) -> BrokerUnavailable:
    """The product's admin client (kafka-python) with these settings: the refusal."""
    with pytest.raises(BrokerUnavailable) as refused:
        list_topics(broker.bootstrap, security, timeout_s=6)
    return refused.value


def test_a_client_without_credentials_is_refused(secure_broker: SecureBroker) -> None:
    log = BrokerLog(secure_broker.log)
    _client(secure_broker, security_protocol="PLAINTEXT")
    assert "Failed authentication with /127.0.0.1" in log.since()
    assert "(SSL handshake failed)" in log.since()


def test_tls_without_sasl_is_refused(secure_broker: SecureBroker) -> None:
    log = BrokerLog(secure_broker.log)
    _client(secure_broker, security_protocol="SSL", ssl_cafile=str(secure_broker.ca))
    assert "Unexpected Kafka request of type METADATA during SASL handshake" in log.since()


@pytest.mark.parametrize(
    ("user", "password"), [(USER, "wrong-" + secrets.token_urlsafe(8)), ("mallory", "x" * 12)]
)
def test_a_wrong_password_or_unknown_user_is_refused(
    secure_broker: SecureBroker, caplog: pytest.LogCaptureFixture, user: str, password: str
) -> None:
    log = BrokerLog(secure_broker.log)
    security = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }
    _client(secure_broker, **security, ssl_cafile=str(secure_broker.ca))
    reason = "invalid credentials with SASL mechanism SCRAM-SHA-512"
    assert f"Authentication failed during authentication due to {reason}" in log.since()

    async def consume() -> None:  # aiokafka, as the worker's clients
        context = ssl.create_default_context(cafile=str(secure_broker.ca))
        consumer = AIOKafkaConsumer(
            bootstrap_servers=secure_broker.bootstrap, ssl_context=context, **security
        )
        try:
            await consumer.start()
        finally:
            await consumer.stop()

    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        asyncio.run(consume())
    assert "SaslAuthenticationFailed" in caplog.text and reason in caplog.text


def test_a_trusted_certificate_is_needed_too(secure_broker: SecureBroker, tmp_path: Path) -> None:
    """The right password to a broker whose certificate the client cannot verify: no login
    (the client never sends the password to an impostor)."""
    other = tmp_path / "other-ca"
    subprocess.run([str(KAFKA_SCRIPT), "certs", str(other)], check=True, capture_output=True)
    log = BrokerLog(secure_broker.log)
    settings = secure_broker.settings()
    _client(
        secure_broker,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=USER,
        sasl_plain_password=settings["sasl_password"],
        ssl_cafile=str(other / "ca.pem"),
    )
    assert "(SSL handshake failed)" in log.since()


def test_the_controller_port_wants_a_client_certificate(secure_broker: SecureBroker) -> None:
    """A client that trusts the CA but has no certificate of its own gets no further than
    the TLS handshake on the controller port."""
    context = ssl.create_default_context(cafile=str(secure_broker.ca))
    address = ("127.0.0.1", secure_broker.controller_port)
    with (
        socket.create_connection(address, timeout=10) as raw,
        pytest.raises(ssl.SSLError, match=r"BAD_CERTIFICATE|CERTIFICATE_REQUIRED"),
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"\0\0\0\0")  # TLS 1.3: the refusal may arrive after the handshake
        tls.recv(1)


def test_the_worker_with_a_wrong_password_stops_without_showing_either(
    secure_broker: SecureBroker, secure_deployment: Deployment
) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    env = {
        **os.environ,
        **secure_deployment.env(),
        "SUPPRESSOR_SASL_PASSWORD": wrong,
        "SUPPRESSOR_LOG_LEVEL": "debug",
    }
    done = subprocess.run(
        [PYTHON, "-m", "suppressor.entrypoints.worker"], cwd=REPO, env=env, capture_output=True,
        text=True,
        timeout=180,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert f"no Kafka broker answered at {secure_broker.bootstrap}" in output
    assert "security settings" in output
    assert wrong not in output and secure_broker.password not in output


# --- (c) --help and settings errors --------------------------------------------------------

HELP_COMMANDS = [
    [PYTHON, "-m", "suppressor.entrypoints.cli", "worker", "--help"],
    [PYTHON, "-m", "suppressor.entrypoints.worker", "--help"],
    [PYTHON, "-m", "suppressor.entrypoints.cli", "topics", "--help"],
    [PYTHON, "-m", "suppressor.entrypoints.cli", "replay", "--help"],
]


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c[2:-1]))
def test_help_never_shows_the_password(command: list[str]) -> None:
    password = "pw-" + secrets.token_urlsafe(12)
    env = {**os.environ, "SUPPRESSOR_SASL_PASSWORD": password, "SUPPRESSOR_SASL_USERNAME": "u"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "SUPPRESSOR_SASL_PASSWORD" in done.stdout or "replay" in command
    assert password not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"SUPPRESSOR_WEB_PORT": "abc"}, "SUPPRESSOR_WEB_PORT must be a port number"),
        ({"SUPPRESSOR_SASL_MECHANISM": "MD5"}, "SUPPRESSOR_SASL_MECHANISM must be one of"),
        ({"SUPPRESSOR_SASL_USERNAME": ""}, "needs a user name and a password"),
        ({"SUPPRESSOR_SSL_CAFILE": "/nonexistent/ca.pem"}, "must be a readable file"),
        ({"SUPPRESSOR_SSL_CAFILE": "README.md"}, "must be a PEM file of CA certificates"),
        ({"SUPPRESSOR_SECURITY_PROTOCOL": "SASL_TLS"}, "SUPPRESSOR_SECURITY_PROTOCOL must be"),
        ({"SUPPRESSOR_PARTITIONS": "-1"}, "SUPPRESSOR_PARTITIONS"),
    ],
)
def test_settings_errors_never_show_the_password(
    tmp_path: Path, bad: dict[str, str], message: str
) -> None:
    password = "pw-" + secrets.token_urlsafe(12)
    ca = tmp_path / "ca.pem"
    subprocess.run([str(KAFKA_SCRIPT), "certs", str(tmp_path)], check=True, capture_output=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SUPPRESSOR_")},
        "SUPPRESSOR_BROKER": "localhost:1",
        "SUPPRESSOR_SECURITY_PROTOCOL": "SASL_SSL",
        "SUPPRESSOR_SASL_MECHANISM": "SCRAM-SHA-512",
        "SUPPRESSOR_SASL_USERNAME": USER,
        "SUPPRESSOR_SASL_PASSWORD": password,
        "SUPPRESSOR_SSL_CAFILE": str(ca),
        **bad,
    }
    for command in (
        [PYTHON, "-m", "suppressor.entrypoints.worker"],
        [PYTHON, "-m", "suppressor.entrypoints.cli", "worker"],
        [PYTHON, "-m", "suppressor.entrypoints.cli", "worker", "--sasl-password", password],
    ):
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert message in output
        assert password not in output
