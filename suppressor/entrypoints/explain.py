"""``suppressor explain USER_ID``: what is held about one person and why each of their
triggers was decided as it was, in plain words or ``--json`` (SPEC section 7; issue 22).
Also the answer to a person's request to see their data.

    suppressor explain anna --worker http://worker-0:6066     # token from the environment
    suppressor explain anna --events events.jsonl --catalog catalog.jsonl [--policy P] [--json]

From a running worker: its admin path (``GET /admin/users/ID``, forwarded there to the
worker that holds the person), with the token from ``SUPPRESSOR_ADMIN_TOKEN`` or
``SUPPRESSOR_ADMIN_TOKEN_FILE`` (or ``--token-file``); never from the command line, where
other users of the machine could read it. Offline: the whole events file through the same
replay as ``suppressor replay`` (so stream time, and with it when this person's deadlines
fire, is the same as there), keeping this person's state, and their decisions with the
reasons in words.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

from suppressor.adapters.settings import admin_token_from
from suppressor.core.errors import SuppressorError
from suppressor.core.explain import Explanation, render
from suppressor.core.policy import load_policy
from suppressor.core.replay.files import load_catalog, numbered_lines, open_input
from suppressor.core.replay.person import explain_from_replay
from suppressor.wire.timefmt import parse_to_ms

WORKER_TIMEOUT = 30.0


def add_explain(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "explain",
        help="what is held about one person and why each decision was made, in plain words",
        description="What is held about one person (state) and, offline, each decision about "
        "them with its reason in words. From a running worker's admin path (--worker) or "
        "from files (--events and --catalog).",
    )
    cmd.add_argument("user_id", metavar="USER_ID", help="the person's user id")
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--worker", metavar="URL", help="a worker's web port, like http://worker-0:6066"
    )
    source.add_argument("--events", metavar="FILE", help="events JSONL file (- for stdin)")
    cmd.add_argument("--catalog", metavar="FILE", help="catalog JSONL file (with --events)")
    cmd.add_argument("--policy", metavar="FILE", help="policy TOML file (with --events)")
    cmd.add_argument(
        "--until", metavar="TS", help="with --events: advance stream time to TS (RFC 3339)"
    )
    cmd.add_argument(
        "--token-file",
        metavar="FILE",
        help="with --worker: file holding the admin token (env SUPPRESSOR_ADMIN_TOKEN_FILE, "
        "or SUPPRESSOR_ADMIN_TOKEN)",
    )
    cmd.add_argument("--json", action="store_true", help="print the JSON export instead")
    cmd.set_defaults(run=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    if args.worker is not None:
        if args.catalog or args.policy or args.until:
            raise SuppressorError("explain: --catalog, --policy and --until go with --events")
        explanation = from_worker(args.worker, args.user_id, args.token_file)
    else:
        explanation = from_files(args)
    if args.json:
        print(json.dumps(explanation, indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(render(explanation))
    return 0


def from_files(args: argparse.Namespace) -> Explanation:
    if args.catalog is None:
        raise SuppressorError(
            "explain --events needs --catalog FILE: without the catalog the similar items, "
            "one-off kinds and places visited would not be those the worker decided on"
        )
    if args.token_file is not None:
        raise SuppressorError("explain: --token-file goes with --worker")
    until = None
    if args.until is not None:
        try:
            until = parse_to_ms(args.until)
        except ValueError as error:
            raise SuppressorError(f"explain: --until {error}") from None
    policy = load_policy(args.policy)
    catalog, _ = load_catalog(args.catalog)
    handle, _ = open_input(args.events)
    with handle:
        return explain_from_replay(
            args.user_id,
            numbered_lines(handle),
            policy,
            catalog,
            source_name=args.events,
            until=until,
        )


def from_worker(worker: str, user_id: str, token_file: str | None) -> Explanation:
    token = admin_token_from(os.environ, token_file)
    if token is None:
        raise SuppressorError(
            "explain --worker needs the worker's admin token: set SUPPRESSOR_ADMIN_TOKEN or "
            "SUPPRESSOR_ADMIN_TOKEN_FILE, or give --token-file FILE"
        )
    base = worker if "://" in worker else f"http://{worker}"
    url = f"{base.rstrip('/')}/admin/users/{quote(user_id, safe='')}"
    status, body = _get(url, token)
    answer = _json(body)
    if status == 200 or (status == 404 and answer and answer.get("state_held") is False):
        return dict(answer or {})
    raise SuppressorError(f"explain: {base}: {_refusal(status, answer)}")


def _get(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}
    )
    # no proxy from the environment: the token goes to the worker and nowhere else
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=WORKER_TIMEOUT) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, bytes(error.read())
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise SuppressorError(f"explain: cannot reach the worker at {url.split('/admin')[0]}: "
                              f"{reason}") from None  # fmt: skip


def _json(body: bytes) -> dict[str, Any] | None:
    try:
        found = json.loads(body)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _refusal(status: int, answer: dict[str, Any] | None) -> str:
    if status == 401:
        return "the worker refused the token (401): use the token the workers were started with"
    if status == 404:
        return (
            "the worker serves no admin path (404): it is on only when the worker is started "
            "with SUPPRESSOR_ADMIN_TOKEN or SUPPRESSOR_ADMIN_TOKEN_FILE"
        )
    if status == 503:
        return (
            "the worker that holds this person is not ready (recovering, or partitions "
            "moving between workers): try again in a few seconds"
        )
    detail = (answer or {}).get("message") or (answer or {}).get("error") or ""
    return f"the worker answered {status} {detail}".rstrip()
