"""`make demo`: the main job, end to end, on this machine.

A real local Kafka broker (deploy/local/kafka), the topics, the demo catalog on the
compacted `catalog` topic, the worker (`suppressor worker`), the demo events on the
input topics, then the actions printed as an ad platform reads them
(`isolation_level=read_committed`) and a summary of the suppressions by reason.
The same input is also run through `suppressor replay`, and the two sets of
action ids are compared. Ctrl-C stops everything the demo started.

Event time: the demo story happens on 2025-03-03 and, for jo and for the similar items
that fall due a day after their seeds, in the days after, up to 2025-03-07. The worker's
hybrid clock would need days of wall clock to pass the last deadlines, so the demo then
sends traffic of the next week's morning (one browse per partition) that moves event time
on, exactly as next week's shoppers would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from kafka.partitioner.default import murmur2

from suppressor.adapters.admin import ensure_topics
from suppressor.adapters.feed import (
    feed_events,
    follow_topic,
    jsonl_lines,
    load_catalog_file,
    read_topic,
)
from suppressor.adapters.settings import Settings
from suppressor.adapters.topology import Topology
from suppressor.core.policy import load_policy
from suppressor.core.replay.files import load_catalog
from suppressor.core.replay.run import CollectingSink, replay

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
RUN_DIR = REPO / "var" / "demo"
MORNING = "2025-03-08T09:00:00Z"


def main() -> int:
    port = int(os.environ.get("KAFKA_PORT", "9092"))
    web_port = int(os.environ.get("SUPPRESSOR_WEB_PORT", "6066"))
    kafka_env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DATA_DIR": str(RUN_DIR / "kafka")}
    kafka_env["KAFKA_PYTHON"] = sys.executable
    _kafka("stop", kafka_env, quiet=True)  # a previous demo's broker, if it is still up
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    RUN_DIR.mkdir(parents=True)
    worker: subprocess.Popen[bytes] | None = None
    try:
        bootstrap = _kafka("start", kafka_env).strip().splitlines()[-1]
        settings = Settings(
            broker=f"kafka://{bootstrap}",
            policy=EXAMPLES / "policy.toml",
            data_dir=RUN_DIR / "worker",
            web_port=web_port,
        )
        _step(f"broker at {bootstrap}; creating the topics")
        _create_topics(settings)
        load_catalog_file(  # as `suppressor catalog load examples/catalog.jsonl` does
            bootstrap, str(EXAMPLES / "catalog.jsonl"), settings.catalog_topic,
            dlq_topic=settings.dlq_topic,
        )  # fmt: skip
        worker = _start_worker(settings)
        _wait_healthy(web_port, worker)
        lines = [*jsonl_lines(EXAMPLES / "events.jsonl"), *_morning(settings.partitions)]
        _step(f"feeding {len(lines)} events (examples/events.jsonl + next week's traffic)")
        feed_events(bootstrap, lines, settings.input_topics)
        expected = _replayed_action_ids(lines, settings)
        _step(
            f"actions on '{settings.actions_topic}' (read_committed), as an ad platform sees them"
        )
        seen = _print_actions(bootstrap, settings.actions_topic, len(expected))
        _summarise(bootstrap, settings, seen, expected)
        return 0 if seen == expected else 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        _stop_worker(worker)
        _kafka("stop", kafka_env, quiet=True)


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _kafka(command: str, env: dict[str, str], quiet: bool = False) -> str:
    done = subprocess.run(
        [str(REPO / "deploy" / "local" / "kafka"), command],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode not in (0, 3) and not quiet:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"deploy/local/kafka {command} failed")
    return done.stdout


def _create_topics(settings: Settings) -> None:
    ensure_topics(settings.bootstrap_servers, Topology.from_settings(settings).user_topic_specs())


def _start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    log = (RUN_DIR / "worker.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "suppressor.entrypoints.cli",
        "worker",
        "--broker",
        settings.broker,
    ]
    command += ["--policy", str(settings.policy), "--data-dir", str(settings.data_dir)]
    command += ["--web-port", str(settings.web_port)]
    _step(f"starting the worker (log: {RUN_DIR.relative_to(REPO) / 'worker.log'})")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def _wait_healthy(web_port: int, worker: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with {worker.returncode}: see var/demo/worker.log")
        try:
            with urllib.request.urlopen(f"http://localhost:{web_port}/health", timeout=2) as answer:
                if json.load(answer).get("status") == "ok":
                    print(f"   worker healthy on http://localhost:{web_port}/health", flush=True)
                    return
        except (OSError, ValueError):
            pass
        time.sleep(1)
    raise SystemExit("the worker did not become healthy in time: see var/demo/worker.log")


def _stop_worker(worker: subprocess.Popen[bytes] | None) -> None:
    if worker is None or worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()


def _morning(partitions: int) -> list[bytes]:
    """One browse per partition, next week: event time moves on everywhere."""
    users: dict[int, str] = {}
    n = 0
    while len(users) < partitions:
        user = f"morning-{n}"
        users.setdefault((murmur2(user.encode()) & 0x7FFFFFFF) % partitions, user)
        n += 1
    return [
        json.dumps(
            {"event_id": f"morning-{p}", "type": "browse", "user_id": user, "ts": MORNING,
             "item_id": "kettle", "page": "product"},
            separators=(",", ":"),
        ).encode()
        for p, user in sorted(users.items())
    ]  # fmt: skip


def _replayed_action_ids(lines: list[bytes], settings: Settings) -> set[str]:
    catalog, _ = load_catalog(str(EXAMPLES / "catalog.jsonl"))
    sink = CollectingSink()
    replay(list(enumerate(lines, 1)), load_policy(settings.policy), catalog, sink)
    return {action.action_id for out in sink.outputs for action in out.actions}


def _print_actions(bootstrap: str, topic: str, expected: int, timeout_s: float = 120) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    for record in follow_topic(bootstrap, topic, idle_yield=True):
        if record is not None and record.value is not None:
            action = record.json()
            if action["action_id"] not in seen:
                seen.add(action["action_id"])
                print(
                    f"   {action['ts']}  {action['kind']:<16} {action['user_id']:<6} "
                    f"{', '.join(action['items'])}  ({', '.join(action['data_dimensions'])})",
                    flush=True,
                )
        if len(seen) >= expected or time.monotonic() > deadline:
            return seen
    return seen


def _summarise(bootstrap: str, settings: Settings, seen: set[str], expected: set[str]) -> None:
    decisions = [r.json() for r in read_topic(bootstrap, settings.decisions_topic, settle_s=2)]
    reasons = Counter(d["reason"] for d in decisions if d["reason"] is not None)
    dead = Counter(r.json()["error_code"] for r in read_topic(bootstrap, settings.dlq_topic))
    _step("suppressed, by reason (from the decisions topic)")
    for reason, n in sorted(reasons.items(), key=lambda pair: (-pair[1], pair[0])):
        print(f"   {reason:<20} {n}")
    _step(f"dead letters on '{settings.dlq_topic}': {dict(sorted(dead.items()))}")
    verdict = "the same" if seen == expected else f"DIFFERENT ({len(seen ^ expected)} differ)"
    _step(f"{len(seen)} actions; `suppressor replay` on the same input: {verdict}")


if __name__ == "__main__":
    sys.exit(main())
