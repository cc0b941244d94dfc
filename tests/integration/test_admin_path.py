"""Issue 22 on a real broker: the admin path ``GET /admin/users/ID`` of real worker processes,
asked over HTTP, and ``suppressor explain --worker`` against them.

- off (404, like any unknown path) when no admin token is set;
- 401 with a challenge without the token or with a wrong one, 200 with it;
- the answer equals what a replay of the same events holds about the person;
- with two workers, either one answers for every person (the request for a person on the
  other worker's partitions is forwarded there);
- a token file that cannot be used stops start-up, naming the variable.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from suppressor.core.explain import Explanation
from suppressor.core.policy import load_policy
from suppressor.core.replay.files import load_catalog, numbered_lines, open_input
from suppressor.core.replay.person import explain_from_replay
from suppressor.wire.timefmt import parse_to_ms
from tests.integration.worker_helpers import (
    PYTHON,
    REPO,
    Deployment,
    WorkerProcess,
    last_ts,
    replay_actions,
    rfc3339,
    shop_events,
    write_lines,
)

TOKEN = "integration-admin-token-" + "0123456789abcdef" * 2
WITH_TOKEN = {"SUPPRESSOR_ADMIN_TOKEN": TOKEN}
ODD_USER = "guest/ü %2F?#1"
"""A user id with a slash, an escape, a query and a fragment in it: still one path segment."""
DEADLINES_PASSED = timedelta(days=2)
"""--until: past every basket deadline of the input (as in test_worker.py)."""


def ask(
    worker: WorkerProcess, user_id: str, authorization: str | None = f"Bearer {TOKEN}"
) -> tuple[int, dict[str, str], Any]:
    """Status, headers and JSON body (None when not JSON) of ``GET /admin/users/ID``."""
    return get(worker, f"/admin/users/{quote(user_id, safe='')}", authorization)


def get(
    worker: WorkerProcess, path: str, authorization: str | None = None
) -> tuple[int, dict[str, str], Any]:
    headers = {} if authorization is None else {"Authorization": authorization}
    request = urllib.request.Request(f"http://127.0.0.1:{worker.web_port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, got, body = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, got, body = error.code, dict(error.headers), error.read()
    try:
        return status, got, json.loads(body)
    except ValueError:
        return status, got, None


def admin_requests(worker: WorkerProcess, outcome: str) -> float:
    url = f"http://127.0.0.1:{worker.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    prefix = f'suppressor_admin_requests_total{{outcome="{outcome}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def held(explanation: Explanation) -> Explanation:
    """The person's state: the answer without the stream time it was read at (the worker's is
    its partition's) and without the decisions (only replay has them)."""
    return {k: v for k, v in explanation.items() if k not in ("stream_time", "decisions")}


def replayed(
    deployment: Deployment, events: Path, catalog: Path, until: str, user_id: str
) -> Explanation:
    """What ``suppressor explain USER --events`` holds about the person."""
    handle, _ = open_input(str(events))
    with handle:
        return explain_from_replay(
            user_id,
            numbered_lines(handle),
            load_policy(str(deployment.policy_path)),
            load_catalog(str(catalog))[0],
            source_name=str(events),
            until=parse_to_ms(until),
        )


def wait_until(check: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            assert value, f"not within {timeout_s} s: {what}"
            return value
        time.sleep(1.0)


# --- off without a token ------------------------------------------------------------------


def test_without_a_token_nothing_is_served_under_admin(
    deployment: Deployment, catalog: Path
) -> None:
    deployment.feed_catalog(catalog)
    worker = WorkerProcess(deployment, "no-token").start()
    try:
        worker.wait_healthy()
        for path in ("/admin", "/admin/", "/admin/users/", "/admin/users/user-1"):
            for authorization in (None, f"Bearer {TOKEN}"):
                status, headers, _ = get(worker, path, authorization)
                assert status == 404, (path, authorization, status)
                assert "WWW-Authenticate" not in headers
        assert admin_requests(worker, "unauthorized") == 0  # never reached: no route
        assert get(worker, "/health")[0] == 200
    finally:
        assert worker.stop() == 0


def test_an_unusable_token_file_stops_start_up(deployment: Deployment, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    worker = WorkerProcess(
        deployment, "bad-token", SUPPRESSOR_ADMIN_TOKEN_FILE=str(missing)
    ).start()
    assert worker.process is not None
    assert worker.process.wait(timeout=120) != 0
    log = worker.log_text()
    assert "SUPPRESSOR_ADMIN_TOKEN_FILE must be a readable file holding the admin token" in log
    assert str(missing) in log


# --- two workers with the token -----------------------------------------------------------


def test_two_workers_answer_for_everyone_with_the_token_and_as_replay_holds(
    deployment: Deployment, catalog: Path
) -> None:
    lines = shop_events(users=30, events=600)
    odd = {"event_id": "odd-1", "type": "cart", "action": "add", "item_id": "paper-1"}
    lines.insert(1, json.dumps({**odd, "user_id": ODD_USER, "ts": json.loads(lines[1])["ts"]}))
    events = write_lines(deployment.workdir / "events.jsonl", lines)
    until = rfc3339(last_ts(events) + DEADLINES_PASSED)
    expected_actions = replay_actions(
        events, catalog, deployment.policy_path, until, deployment.workdir
    )
    users = sorted({json.loads(line)["user_id"] for line in events.read_text().splitlines()})
    partitions = {deployment.topology.partition_for(user) for user in users}
    assert partitions == set(range(deployment.partitions)), "people on every partition"

    deployment.feed_catalog(catalog)
    first = WorkerProcess(deployment, "first", **WITH_TOKEN).start()
    second = WorkerProcess(deployment, "second", **WITH_TOKEN).start()
    workers = (first, second)
    try:
        owned = wait_until(
            lambda: _split(workers, deployment.partitions), 180, "both workers own partitions"
        )
        deployment.feed_events(events.read_bytes().splitlines())
        deployment.feed_sentinels(until)
        deployment.actions(at_least=len(expected_actions), timeout_s=300)

        _refused_without_the_token(workers, users[0])
        expected = {
            user: held(replayed(deployment, events, catalog, until, user)) for user in users
        }
        assert any(e["state_held"] and e["recent_actions"] for e in expected.values())
        for worker in workers:
            for user in users:
                # the partition's last commit may still be on its way: the same answer soon
                answer = wait_until(
                    lambda w=worker, u=user: _same(w, u, expected[u]),
                    60,
                    f"{user} on {worker.name}",
                )
                assert answer["user_id"] == user
        # each worker forwarded the people it does not hold, and answered the others itself
        for worker, mine in zip(workers, owned, strict=True):
            others = [u for u in users if deployment.topology.partition_for(u) not in mine]
            assert admin_requests(worker, "forwarded") >= len(others) > 0
        answered = sum(admin_requests(w, "ok") + admin_requests(w, "not_found") for w in workers)
        assert answered >= 2 * len(users)
        _explain_command_reads_a_worker(first, users[0], expected[users[0]])
        for worker in workers:  # the log names people by a hash, never by their id
            log = worker.log_text()
            assert "admin path: ok, user " in log
            assert "/admin/users/" not in log  # no access log: the path holds the id
            named = [u for u in users if re.search(rf"(?<![\w-]){re.escape(u)}(?![\w-])", log)]
            assert not named, f"{worker.name}'s log names {named}"
            worker.assert_alive()
    finally:
        for worker in workers:
            assert worker.stop() == 0


def _split(workers: tuple[WorkerProcess, ...], partitions: int) -> list[set[int]] | None:
    """Each worker's partitions, once both own some and together all, none twice."""
    owned = []
    for worker in workers:
        health = worker.health() or {}
        if health.get("status") != "ok":
            return None
        owned.append(set(health["partitions"]))
    together = set().union(*owned)
    if all(owned) and together == set(range(partitions)) and sum(map(len, owned)) == partitions:
        return owned
    return None


def _same(worker: WorkerProcess, user: str, expected: Explanation) -> Explanation | None:
    status, _, answer = ask(worker, user)
    assert status in (200, 404, 503), (status, answer)
    if status == 503 or answer is None:
        return None  # a partition between owners: asked again
    assert status == (200 if expected["state_held"] else 404), (status, answer)
    assert isinstance(answer.get("stream_time"), str)
    return answer if held(answer) == expected else None


def _refused_without_the_token(workers: tuple[WorkerProcess, ...], user: str) -> None:
    for worker in workers:
        before = admin_requests(worker, "unauthorized")
        for authorization in (None, f"Bearer {TOKEN}-wrong", f"Basic {TOKEN}", TOKEN):
            status, headers, body = ask(worker, user, authorization)
            assert status == 401, (authorization, status, body)
            assert headers.get("WWW-Authenticate", "").startswith("Bearer")
            assert body == {"error": "unauthorized"}
        assert admin_requests(worker, "unauthorized") == before + 4


def _explain_command_reads_a_worker(
    worker: WorkerProcess, user: str, expected: Explanation
) -> None:
    command = [PYTHON, "-m", "suppressor.entrypoints.cli", "explain", user]
    url = f"http://127.0.0.1:{worker.web_port}"
    env = {**os.environ, "SUPPRESSOR_ADMIN_TOKEN": TOKEN}
    env.pop("SUPPRESSOR_ADMIN_TOKEN_FILE", None)
    exported = subprocess.run(
        [*command, "--worker", url, "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert held(json.loads(exported.stdout)) == expected
    table = subprocess.run(
        [*command, "--worker", url],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert table.stdout.startswith(f"What we hold about {user}\n")
    assert "policy version" in table.stdout
    refused = subprocess.run(
        [*command, "--worker", url],
        cwd=REPO, env={**env, "SUPPRESSOR_ADMIN_TOKEN": TOKEN + "-wrong"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "the worker refused the token (401)" in refused.stderr
