"""For the worker's integration tests: a deployment (topics + settings), a worker process,
synthetic shop traffic, and the expected output computed by ``suppressor replay``."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from suppressor.adapters.admin import ensure_topics
from suppressor.adapters.feed import Record, feed_catalog, feed_events, read_topic
from suppressor.adapters.settings import Settings, settings_from_values
from suppressor.adapters.topology import Topology

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
TEST_POLICY = 'clock = "event"\nidle_timeout = "5s"\n'
"""Pure event time (deterministic, like replay); idle topics left out after 5 s, not 30.

Short enough for quick tests, long enough that a feeder stalled by a loaded machine does not
make its own later events late (a caught-up topic quiet for ``idle_timeout`` is left out: by
design, so one silent producer cannot hold stream time back forever)."""


@dataclass
class Deployment:
    """One test's topics, created with a unique prefix, and the settings naming them."""

    bootstrap: str
    prefix: str
    workdir: Path
    partitions: int = 3
    policy_text: str = TEST_POLICY
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.policy_path = self.workdir / "policy.toml"
        self.policy_path.write_text(self.policy_text)
        self.settings: Settings = settings_from_values(self.values(), {})
        self.topology = Topology.from_settings(self.settings)
        self.client_config = self.settings.kafka_client_config()  # security: SASL/TLS
        ensure_topics(self.bootstrap, self.topology.user_topic_specs(), self.client_config)

    def values(self) -> dict[str, Any]:
        p = self.prefix
        inputs = ("events.browse", "events.cart", "events.purchase", "events.review")
        return {
            "broker": self.bootstrap,
            "input_topics": ",".join(p + name for name in (*inputs, "events.preferences")),
            "catalog_topic": p + "catalog",
            "actions_topic": p + "actions",
            "decisions_topic": p + "decisions",
            "conversions_topic": p + "conversions",
            "dlq_topic": p + "events.dlq",
            "partitions": self.partitions,
            "app_id": p.rstrip(".") + "-app",
            "policy": str(self.policy_path),
            "commit_interval": "0.5",
            "tick_interval": "0.5",
            "session_timeout": "6",
            **self.extra,
        }

    def env(self) -> dict[str, str]:
        return {f"SUPPRESSOR_{key.upper()}": str(value) for key, value in self.values().items()}

    # --- traffic ------------------------------------------------------------------

    def feed_catalog(self, path: Path) -> None:
        feed_catalog(
            self.bootstrap, _lines(path), self.topology.catalog, client_config=self.client_config
        )

    def feed_events(self, lines: Iterable[bytes], **kwargs: Any) -> int:
        kwargs.setdefault("client_config", self.client_config)
        return feed_events(self.bootstrap, lines, self.topology.inputs, **kwargs).sent

    def feed_sentinels(self, ts: str) -> None:
        """One consent per partition at ``ts``: every partition's stream time reaches ``ts``.

        A consent makes no decision and no action, so the outputs stay comparable with
        a replay of the same events; the other topics go idle and are left out.
        """
        lines = [
            json.dumps(
                {"event_id": f"sentinel-{user}", "type": "consent", "user_id": user, "ts": ts}
            ).encode()
            for user in sentinel_users(self.topology)
        ]
        self.feed_events(lines)

    def read(
        self,
        topic: str,
        *,
        at_least: int = 0,
        settle_s: float = 4.0,
        timeout_s: float = 120.0,
        committed_only: bool = True,
    ) -> list[Record]:
        return read_topic(
            self.bootstrap,
            topic,
            at_least=at_least,
            settle_s=settle_s,
            timeout_s=timeout_s,
            committed_only=committed_only,
            client_config=self.client_config,
        )

    def actions(self, **kwargs: Any) -> list[dict[str, Any]]:
        return [record.json() for record in self.read(self.topology.actions, **kwargs)]


def sentinel_users(topology: Topology) -> list[str]:
    """One user id per partition."""
    return topology.one_user_per_partition("sentinel")


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().splitlines() if line.strip()]


# --- the worker process -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerProcess:
    """``python -m suppressor.entrypoints.worker`` with the deployment's settings, its own data
    dir and port."""

    def __init__(
        self,
        deployment: Deployment,
        name: str,
        module: str = "suppressor.entrypoints.worker",
        **env: str,
    ) -> None:
        self.deployment = deployment
        self.name = name
        self.module = module
        self.data_dir = deployment.workdir / f"data-{name}"
        self.log_path = deployment.workdir / f"worker-{name}.log"
        self.web_port = free_port()
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {
            **os.environ,
            **self.deployment.env(),
            "SUPPRESSOR_DATA_DIR": str(self.data_dir),
            "SUPPRESSOR_WEB_PORT": str(self.web_port),
            "SUPPRESSOR_WEB_HOST": "127.0.0.1",
            **self.env,
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [PYTHON, "-m", self.module], cwd=REPO, env=env, stdout=log, stderr=log
        )
        log.close()
        return self

    def health(self) -> dict[str, Any] | None:
        url = f"http://127.0.0.1:{self.web_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return dict(json.loads(response.read()))
        except OSError:
            return None

    def metric(self, name: str) -> float:
        """The sum of the samples of metric ``name`` (all its labels) on ``/metrics``;
        OSError when the page does not answer."""
        url = f"http://127.0.0.1:{self.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            lines = response.read().decode().splitlines()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in lines
            if line.startswith((name + " ", name + "{"))
        )

    def wait_healthy(self, timeout_s: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.assert_alive()
            health = self.health()
            if health is not None and health.get("status") == "ok":
                return health
            time.sleep(0.5)
        raise AssertionError(f"worker {self.name} not healthy in {timeout_s}s\n{self.log_tail()}")

    def assert_alive(self) -> None:
        assert self.process is not None
        code = self.process.poll()
        assert code is None, f"worker {self.name} exited with {code}\n{self.log_tail()}"

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM: the graceful stop an orchestrator does; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL: no goodbye, open transactions left to the broker to abort."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


# --- expected output: the same events through replay ------------------------------------


def replay_actions(
    events: Path, catalog: Path, policy: Path, until: str, workdir: Path
) -> dict[str, dict[str, Any]]:
    """action_id -> action, from ``suppressor replay`` (no Kafka) on the same input."""
    out = workdir / f"replay-{events.stem}.jsonl"
    command = [
        PYTHON,
        "-m",
        "suppressor.entrypoints.cli",
        "replay",
        str(events),
        "--catalog",
        str(catalog),
        "--policy",
        str(policy),
        "--until",
        until,
        "--actions",
        str(out),
        "--quiet",
    ]
    subprocess.run(command, cwd=REPO, check=True, timeout=300)
    return by_action_id(json.loads(line) for line in out.read_text().splitlines() if line)


def by_action_id(actions: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for action in actions:
        assert action["action_id"] not in result, f"duplicate action {action}"
        result[action["action_id"]] = action
    return result


# --- synthetic shop traffic ---------------------------------------------------------------

START = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def write_catalog(path: Path) -> Path:
    """A small catalog: one-off shredders and fridges, paper and pens, cities."""
    items = []
    for n in range(6):
        items.append(_item(f"shredder-{n}", "shredders", True, ["office", f"s{n % 3}"]))
        items.append(_item(f"fridge-{n}", "fridges", True, ["kitchen", f"f{n % 2}"]))
        items.append(_item(f"paper-{n}", "paper", False, ["office", f"p{n % 3}"]))
        items.append(_item(f"pen-{n}", "pens", False, ["office", f"p{n % 2}"]))
    for city, tags in (
        ("amsterdam", ["canals", "museums"]),
        ("bruges", ["canals", "old"]),
        ("ghent", ["canals", "old"]),
        ("venice", ["canals", "museums"]),
        ("lisbon", ["sea", "old"]),
        ("porto", ["sea", "wine"]),
    ):
        items.append({**_item(city, "cities", False, tags), "kind": "destination"})
    items[2]["similar"] = ["pen-0", "pen-1", "paper-3"]  # a curated list
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def _item(item_id: str, category: str, one_off: bool, tags: list[str]) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "title": item_id.replace("-", " "),
        "category": category,
        "kind": "product",
        "one_off": one_off,
        "tags": tags,
    }


ITEMS = [f"{kind}-{n}" for kind in ("shredder", "fridge", "paper", "pen") for n in range(6)]
CITIES = ["amsterdam", "bruges", "ghent", "venice", "lisbon", "porto"]


def shop_events(users: int, events: int, seed: int = 7, jitter_s: int = 60) -> list[str]:
    """``events`` JSONL lines from ``users`` shoppers over about two days, in ts order give or
    take ``jitter_s`` (less than the policy's grace: reordered, never late)."""
    rng = random.Random(seed)
    step = timedelta(seconds=max(1, 2 * 86400 // max(1, events)))
    lines: list[tuple[datetime, str]] = []
    clock = START
    for number in range(events):
        clock += step
        user = f"user-{rng.randrange(users)}"
        ts = clock + timedelta(seconds=rng.randint(-jitter_s, jitter_s))
        event = _shop_event(rng, user, f"ev-{seed}-{number}")
        event["ts"] = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append((clock, json.dumps(event)))
    return [line for _, line in lines]


def _shop_event(rng: random.Random, user: str, event_id: str) -> dict[str, Any]:
    roll = rng.random()
    base: dict[str, Any] = {"event_id": event_id, "user_id": user}
    if roll < 0.45:
        return {**base, "type": "browse", "item_id": rng.choice(ITEMS + CITIES), "page": "product"}
    if roll < 0.65:
        return {**base, "type": "cart", "action": "add", "item_id": rng.choice(ITEMS)}
    if roll < 0.70:
        return {**base, "type": "cart", "action": "remove", "item_id": rng.choice(ITEMS)}
    if roll < 0.85:
        bought = rng.sample(ITEMS + CITIES, rng.randint(1, 2))
        return {
            **base,
            "type": "purchase",
            "order_id": f"o-{event_id}",
            "items": [{"item_id": item, "quantity": 1} for item in bought],
        }
    if roll < 0.93:
        return {
            **base,
            "type": "review",
            "item_id": rng.choice(ITEMS + CITIES),
            "rating": rng.randint(1, 5),
        }
    if roll < 0.99:
        return {
            **base,
            "type": "consent",
            "similar_item": rng.random() < 0.8,
            "basket_recovery": rng.random() < 0.9,
        }
    return {**base, "type": "forget"}


def write_lines(path: Path, lines: Sequence[str | bytes]) -> Path:
    with path.open("wb") as handle:
        for line in lines:
            handle.write((line.encode() if isinstance(line, str) else line) + b"\n")
    return path


def last_ts(path: Path) -> datetime:
    latest = START
    for line in path.read_bytes().splitlines():
        try:
            ts = json.loads(line).get("ts")
            moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        except (ValueError, AttributeError, TypeError):
            continue
        if moment.tzinfo is not None:  # a bad line's timestamp without offset: not an event
            latest = max(latest, moment)
    return latest


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
