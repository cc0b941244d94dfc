"""A real Kafka broker for the whole test session, and topics no other test shares.

The broker is ``deploy/local/kafka`` on its own port (``SUPPRESSOR_TEST_KAFKA_PORT``,
default 19092; its controller takes port + 1000) with a fresh data dir in
pytest's temporary directory. It stops at the end of the session, and also when
the session is killed: the script watches this process's pid. To run against a
broker that is already up instead, set ``SUPPRESSOR_TEST_KAFKA_BOOTSTRAP=host:port``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from suppressor.adapters.admin import default_topic_specs, ensure_topics
from tests.integration.worker_helpers import Deployment, write_catalog

KAFKA_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "kafka"
HERE = Path(__file__).resolve().parent

# The spec's default topic names (SPEC.md section 3), before a test's prefix.
DEFAULT_INPUTS = (
    "events.browse",
    "events.cart",
    "events.purchase",
    "events.review",
    "events.preferences",
)
DEFAULT_CATALOG = "catalog"
DEFAULT_OUTPUTS = ("actions", "decisions", "events.dlq")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


BROKER_DATA_DIRS: list[Path] = []
"""The data dir of the broker this session started (its pid file is ``kafka.pid`` there)."""


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``localhost:PORT`` of a real single-node Kafka (KRaft) broker."""
    external = os.environ.get("SUPPRESSOR_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    data_dir = tmp_path_factory.mktemp("kafka")
    BROKER_DATA_DIRS.append(data_dir)
    env = _broker_env(data_dir)  # fresh: no broker runs there yet
    started = _script("start", env)
    if started.returncode != 0:
        pytest.fail(
            f"the local Kafka broker did not start (deploy/local/kafka start, port "
            f"{env['KAFKA_PORT']}):\n{started.stderr}\nSet SUPPRESSOR_TEST_KAFKA_PORT to use "
            "another port.",
            pytrace=False,
        )
    try:
        yield _last_line(started.stdout)
    finally:
        _script("stop", env)


def _broker_env(data_dir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"KAFKA_CONTROLLER_PORT", "KAFKA_DATA_DIR", "KAFKA_EXTRA_PROPERTIES"}
    }
    env.update(
        KAFKA_PORT=os.environ.get("SUPPRESSOR_TEST_KAFKA_PORT", "19092"),
        KAFKA_DATA_DIR=str(data_dir),
        KAFKA_PYTHON=sys.executable,
        KAFKA_STOP_WITH_PID=str(os.getpid()),
    )
    return env


def _script(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Generous: the very first start resolves the broker's jars with Maven.
    return subprocess.run(
        [str(KAFKA_SCRIPT), command], env=env, capture_output=True, text=True, timeout=600
    )


def _last_line(stdout: str) -> str:
    return stdout.strip().splitlines()[-1]


@pytest.fixture
def unique_topic_prefix(request: pytest.FixtureRequest) -> str:
    """``t-<test name>-<8 hex>.``: topics with it belong to this test run alone."""
    name = re.sub(r"[^a-zA-Z0-9_-]+", "-", request.node.name).strip("-")[:80]
    return f"t-{name}-{uuid.uuid4().hex[:8]}."


@pytest.fixture
def deployment(kafka_bootstrap: str, unique_topic_prefix: str, tmp_path: Path) -> Deployment:
    """The worker tests' topics, data dirs and policy (a module may override it)."""
    return Deployment(kafka_bootstrap, unique_topic_prefix, tmp_path)


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    return write_catalog(tmp_path / "catalog.jsonl")


@pytest.fixture
def topic_partitions() -> int:
    """Partitions of ``default_topics``: not the broker's default (8), to see it is applied."""
    return 3


@pytest.fixture
def default_topics(
    kafka_bootstrap: str, unique_topic_prefix: str, topic_partitions: int
) -> dict[str, str]:
    """The spec's default topics, created with this test's prefix: default name → real name."""
    names = {
        name: unique_topic_prefix + name
        for name in (*DEFAULT_INPUTS, DEFAULT_CATALOG, *DEFAULT_OUTPUTS)
    }
    specs = default_topic_specs(
        [names[name] for name in DEFAULT_INPUTS],
        names[DEFAULT_CATALOG],
        [names[name] for name in DEFAULT_OUTPUTS],
        topic_partitions,
    )
    ensure_topics(kafka_bootstrap, specs)
    return names
