"""A real Prometheus server scrapes a real worker on the real local broker.

The worker processes the demo stream (examples/events.jsonl + examples/catalog.jsonl);
Prometheus (Debian's package, started here on a free port with the project's scrape
config and alert rules, scrape interval 1 s) scrapes its /metrics; the test queries
Prometheus's HTTP API and expects the counts that

    suppressor replay examples/events.jsonl --catalog examples/catalog.jsonl \\
        --policy examples/policy.toml --until 2025-03-08T00:00:00Z

reports: actions by kind, suppressions by reason, dead letters by code. It also checks
that every alert rule loads and evaluates without error and that every dashboard
query runs.

The worker is ``python -m suppressor.entrypoints.worker`` as shipped.

Timing: the events are fed right after the worker's first ticks, as in
tests/integration/test_worker.py. In one early run, where Prometheus was started
between the worker becoming healthy and the feed, the worker emitted two actions
replay suppresses (eve's consent withdrawal on events.preferences applied after her
purchase on events.purchase): a stream-time/ordering question for the worker, not
for the metrics; it did not recur in later runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.worker_helpers import (
    PYTHON,
    REPO,
    TEST_POLICY,
    Deployment,
    WorkerProcess,
    free_port,
    sentinel_users,
)

EXAMPLES = REPO / "examples"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "suppressor.json"
UNTIL = "2025-03-08T00:00:00Z"
JOB = "suppressor"


# --- expected: the replay summary ----------------------------------------------------------


def replay_summary() -> dict[str, Counter[str]]:
    """``suppressor replay``'s summary line as counters: actions, suppressed (by reason), dlq."""
    command = [
        PYTHON, "-m", "suppressor.entrypoints.cli", "replay", str(EXAMPLES / "events.jsonl"),
        "--catalog", str(EXAMPLES / "catalog.jsonl"), "--policy", str(EXAMPLES / "policy.toml"),
        "--until", UNTIL, "--actions", os.devnull,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("replay: ")]
    summary: dict[str, Counter[str]] = {}
    for part in line.removeprefix("replay: ").split(" | "):
        match = re.fullmatch(r"(\w+): (\d+)(?: \((.*)\))?", part)
        assert match, f"unexpected replay summary part {part!r} in {line!r}"
        name, total, detail = match.groups()
        counts: Counter[str] = Counter()
        for pair in (detail or "").split():
            if pair != "none":
                key, value = pair.split("=")
                counts[key] = int(value)
        assert detail is None or sum(counts.values()) == int(total), part
        summary[name] = counts
    return summary


# --- a real Prometheus server ----------------------------------------------------------------


class Prometheus:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        return list(data["result"])

    def by_label(self, expr: str, label: str) -> Counter[str]:
        """An instant vector as label value -> value, zeros left out (as in the replay summary)."""
        found: Counter[str] = Counter()
        for sample in self.query(expr):
            value = float(sample["value"][1])
            if value:
                found[sample["metric"].get(label, "")] = int(value)
        return found

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


def scrape_config(targets: list[str], directory: Path) -> Path:
    """deploy/prometheus/prometheus.yml with the test's targets and a 1 s interval."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_DIR / name) for name in config["rule_files"]]
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == JOB]
    assert len(jobs) == 1, "the project's scrape config has no 'suppressor' job"
    for static in jobs[0]["static_configs"]:
        static["targets"] = []
    jobs[0]["static_configs"][0]["targets"] = targets
    config["scrape_configs"] = jobs
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    check = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return path


@contextmanager
def prometheus_server(config: Path, directory: Path) -> Iterator[Prometheus]:
    port = free_port()
    log = directory / "prometheus.log"
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=handle,
            stderr=handle,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"prometheus exited:\n{server.log_tail()}"
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            assert time.monotonic() < deadline, f"prometheus not ready:\n{server.log_tail()}"
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def wait_for(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            return last
        time.sleep(0.5)
    raise AssertionError(f"{what}: not reached in {timeout_s:.0f} s; last: {last}")


# --- the test ----------------------------------------------------------------------------------


@pytest.fixture
def deployment(kafka_bootstrap: str, unique_topic_prefix: str, tmp_path: Path) -> Deployment:
    # The demo policy (the spec's defaults), on pure event time like replay; idle topics
    # are left out after 2 s so the sentinels bring every partition to UNTIL.
    policy = TEST_POLICY + (EXAMPLES / "policy.toml").read_text()
    return Deployment(kafka_bootstrap, unique_topic_prefix, tmp_path, policy_text=policy)


def test_prometheus_scrapes_the_demo_streams_counts(deployment: Deployment, tmp_path: Path) -> None:
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.skip("prometheus/promtool not installed: run deploy/local/tools (make test does)")

    expected = replay_summary()
    assert expected["actions"] and expected["suppressed"] and expected["dlq"], expected

    deployment.feed_catalog(EXAMPLES / "catalog.jsonl")
    worker = WorkerProcess(deployment, "metrics").start()
    target = f"127.0.0.1:{worker.web_port}"
    try:
        # Prometheus first, so that the events follow the worker's first ticks at once
        # (as in tests/integration/test_worker.py; see "Timing" above).
        with prometheus_server(scrape_config([target], tmp_path), tmp_path) as server:
            worker.wait_healthy()
            deployment.feed_events((EXAMPLES / "events.jsonl").read_bytes().splitlines())
            deployment.feed_sentinels(UNTIL)
            with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain;")
            wait_for(
                lambda: (server.by_label(f'up{{job="{JOB}"}}', "job")[JOB] == 1, None),
                30,
                "Prometheus scrapes the worker",
            )

            def counts() -> tuple[bool, dict[str, Counter[str]]]:
                selector = f'{{job="{JOB}"}}'
                found = {
                    "actions": server.by_label(
                        f"sum by (kind) (suppressor_actions_total{selector})", "kind"
                    ),
                    "suppressed": server.by_label(
                        f"sum by (reason) (suppressor_suppressed_total{selector})", "reason"
                    ),
                    "dlq": server.by_label(
                        f"sum by (code) (suppressor_dlq_total{selector})", "code"
                    ),
                }
                wanted = {key: expected[key] for key in found}
                late = server.by_label(f"sum(suppressor_late_events_total{selector})", "")
                return found == wanted, {**found, "late events (not compared)": late}

            found = wait_for(counts, 180, f"Prometheus shows the replay's counts {expected}")
            assert found["actions"] == expected["actions"]
            assert found["suppressed"] == expected["suppressed"]
            assert found["dlq"] == expected["dlq"]

            events = server.by_label(
                f'sum by (type) (suppressor_events_total{{job="{JOB}"}})', "type"
            )
            sentinels = Counter({"consent": len(sentinel_users(deployment.topology))})
            assert events == expected["events"] + sentinels

            assert_gauges_and_faust_sensors(server, deployment)
            assert_rules_load_and_evaluate(server)
            assert_dashboard_queries_run(server)
            firing = {
                alert["labels"]["alertname"]
                for alert in server.get("/api/v1/alerts")["alerts"]
                if alert["state"] == "firing"
            }
            assert "SuppressorWorkerDown" not in firing
            assert "SuppressorAllWorkersDown" not in firing
        worker.assert_alive()
    finally:
        worker.stop()


def assert_gauges_and_faust_sensors(server: Prometheus, deployment: Deployment) -> None:
    """Stream time per partition at UNTIL, assignment, lag, recovery, faust's own sensors."""
    partitions = deployment.topology.partitions
    until_s = datetime.fromisoformat(UNTIL.replace("Z", "+00:00")).timestamp()

    def gauges() -> tuple[bool, dict[str, Any]]:
        stream = server.by_label(f'suppressor_stream_time_seconds{{job="{JOB}"}}', "partition")
        found: dict[str, Any] = {
            "stream time": dict(stream),
            "assigned": server.by_label(f'suppressor_assigned_partitions{{job="{JOB}"}}', "job"),
            "recovering": server.by_label(f'suppressor_recovery_in_progress{{job="{JOB}"}}', "job"),
            "lag series": len(server.query(f'suppressor_consumer_lag{{job="{JOB}"}}')),
            "messages in": server.by_label(
                f'suppressor_faust_messages_received_total{{job="{JOB}"}}', "job"
            ),
        }
        ok = (
            found["stream time"] == {str(p): int(until_s) for p in range(partitions)}
            and found["assigned"][JOB] == partitions
            and found["recovering"][JOB] == 0
            and found["lag series"] >= partitions
            and found["messages in"][JOB] > 0
        )
        return ok, found

    wait_for(gauges, 30, "stream time, assignment, lag and faust sensors in Prometheus")


def assert_rules_load_and_evaluate(server: Prometheus) -> None:
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())
    wanted = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}

    def loaded() -> tuple[bool, Any]:
        groups = server.get("/api/v1/rules")["groups"]
        seen = {rule["name"]: rule for group in groups for rule in group["rules"]}
        evaluated = all(rule.get("lastEvaluation", "").startswith("20") for rule in seen.values())
        return seen.keys() == wanted and evaluated, seen

    seen = wait_for(loaded, 30, "every alert rule loaded and evaluated")
    broken = {name: rule.get("lastError") for name, rule in seen.items() if rule["health"] != "ok"}
    assert broken == {}


def assert_dashboard_queries_run(server: Prometheus) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    substitutions = {"$__rate_interval": "1m", "$__range": "1h", "$job": JOB, "$instance": ".+"}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in substitutions.items():
                expr = expr.replace(variable, value)
            server.query(expr)  # status "success" or an assertion error naming the query
