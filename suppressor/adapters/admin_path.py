"""The admin path, ``GET /admin/users/{user_id}``: what the worker holds about one person
(SPEC section 7 `explain`, section 8 "Access"; the answer is ``suppressor.core.explain``).

- **Off** unless an admin token is configured (``SUPPRESSOR_ADMIN_TOKEN`` or
  ``SUPPRESSOR_ADMIN_TOKEN_FILE``): the route is not registered at all, and the path answers
  404 like any unknown one.
- **Only with the token**: ``Authorization: Bearer <token>``, compared in constant time;
  401 with ``WWW-Authenticate: Bearer`` otherwise. A forwarded request carries the header
  and the owner checks it again.
- **Routed to the owner.** A person's state lives on the worker that owns their partition:
  ``Topology.partition_for`` (murmur2 of the user id, the partition the pipeline keeps them
  on; the users table is keyed by the user id's UTF-8 bytes, so Faust's own key routing
  finds the same one). Which worker owns it comes from Faust's assignor
  (``app.router.table_metadata``: each worker's ``canonical_url``, its
  ``SUPPRESSOR_WEB_ADVERTISED_HOST`` and web port). Why not ``app.table_route``: it drops
  the owner's response headers (a 401's ``WWW-Authenticate``), waits on the owner without
  a time limit, and two workers that disagree about the owner (in a rebalance) would send
  the request back and forth; here a forwarded request is marked and never forwarded
  again, and the owner's answer comes back as it was.
- **Read on the owner** from the partition's store in the running pipeline
  (``UserStateStore.get``: writes not yet committed included), on the event loop the
  pipeline runs on, so a state is never seen half-changed. A partition this worker owns
  but has not started (recovering) answers 503 with ``Retry-After``.
- **Counted and logged without the id**: ``suppressor_admin_requests_total{outcome}``, and
  a log line with a hash of the user id (``user_hash``, as every log line that names a user).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any
from urllib.parse import quote

import aiohttp
import faust
from yarl import URL

from suppressor.adapters.metrics import Metrics
from suppressor.adapters.pipeline import Pipeline
from suppressor.adapters.topology import USERS_TABLE, Topology
from suppressor.core.admission import user_hash
from suppressor.core.clock import NO_TIME
from suppressor.core.explain import explain_state
from suppressor.wire.timefmt import format_ms

log = logging.getLogger(__name__)

PATH = "/admin/users/{user_id}"
FORWARDED = "Suppressor-Forwarded"
"""Header of a request one worker passed on to the owner: never passed on again."""
FORWARD_TIMEOUT = 10.0
"""Seconds a forwarded request may take (the owner reads one state from memory or disk)."""
RETRY_AFTER = "5"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="suppressor-admin"'}


def bearer_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header bears ``token`` (constant-time comparison)."""
    scheme, _, presented = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


class AdminPath:
    """The handler of ``PATH``; ``install`` registers it (only when a token is set)."""

    def __init__(
        self,
        app: faust.App,
        pipeline: Pipeline,
        topology: Topology,
        metrics: Metrics,
        token: str,
    ) -> None:
        self.app = app
        self.pipeline = pipeline
        self.topology = topology
        self.metrics = metrics
        self._token = token

    def install(self) -> None:
        async def admin_user(view: Any, request: Any, user_id: str) -> Any:
            return await self.answer(view, request, user_id)

        self.app.page(PATH)(admin_user)

    async def answer(self, view: Any, request: Any, user_id: str) -> Any:
        who = user_hash(user_id)
        if not bearer_matches(request.headers.get("Authorization"), self._token):
            return self._done(view, "unauthorized", who, {"error": "unauthorized"}, 401, CHALLENGE)
        partition = self.topology.partition_for(user_id)
        try:
            owner = self._owner(partition)
            if owner is not None and not request.headers.get(FORWARDED):
                return await self._forward(view, request, user_id, owner, who, partition)
            return self._local(view, user_id, who, partition)
        except Exception as error:  # a bug: its message could quote the id, so not logged
            log.error("admin path: %s for user %s", type(error).__name__, who)
            return self._done(view, "error", who, {"error": "internal error"}, 500)

    def _owner(self, partition: int) -> str | None:
        """The canonical URL of the worker that owns ``partition`` of the users table, when
        it is another worker (None: this one, or not known now)."""
        try:
            hosts = self.app.router.table_metadata(USERS_TABLE)
        except KeyError:
            return None
        mine = str(self.app.conf.canonical_url)
        for url, topics in hosts.items():
            if any(partition in partitions for partitions in topics.values()):
                return None if url == mine else url
        return None

    def _local(self, view: Any, user_id: str, who: str, partition: int) -> Any:
        runtime = self.pipeline.runtimes.get(partition)
        if runtime is None:  # not this worker's, or not started since it was assigned
            body = {"error": "unavailable", "message": "the person's partition is not ready"}
            return self._done(view, "unavailable", who, body, 503, {"Retry-After": RETRY_AFTER})
        explained = explain_state(user_id, runtime.store.get(user_id), self.pipeline.engine.policy)
        time = runtime.clock.time
        explained["stream_time"] = None if time == NO_TIME else format_ms(time)
        if not explained["state_held"]:
            body = {**explained, "error": "unknown_user"}
            return self._done(view, "not_found", who, body, 404, partition=partition)
        return self._done(view, "ok", who, explained, 200, partition=partition)

    async def _forward(
        self, view: Any, request: Any, user_id: str, owner: str, who: str, partition: int
    ) -> Any:
        """The owner's answer, as it gave it (status, body, a 401's challenge)."""
        url = URL(owner.rstrip("/") + "/admin/users/" + quote(user_id, safe=""), encoded=True)
        headers = {"Authorization": request.headers["Authorization"], FORWARDED: "1"}
        timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT)
        try:
            async with self.app.http_client.get(url, headers=headers, timeout=timeout) as got:
                body, status, content_type = await got.read(), got.status, got.content_type
                passed = {k: v for k, v in got.headers.items() if k.lower() == "www-authenticate"}
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning(
                "admin path: the owner of partition %d did not answer (%s), user %s",
                partition,
                type(error).__name__,
                who,
                extra={"partition": partition, "code": "unavailable"},
            )
            body_ = {"error": "unavailable", "message": "the worker that holds them did not answer"}
            return self._done(view, "unavailable", who, body_, 503, {"Retry-After": RETRY_AFTER})
        self.metrics.observe_admin_request("forwarded")
        log.info(
            "admin path: user %s forwarded to the owner of partition %d (answered %d)",
            who,
            partition,
            status,
            extra={"partition": partition, "code": "forwarded"},
        )
        return view.bytes(body, content_type=content_type, status=status, headers=passed)

    def _done(
        self,
        view: Any,
        outcome: str,
        who: str,
        body: dict[str, Any],
        status: int,
        headers: dict[str, str] | None = None,
        partition: int | None = None,
    ) -> Any:
        self.metrics.observe_admin_request(outcome)
        log.log(
            logging.WARNING if outcome == "unauthorized" else logging.INFO,
            "admin path: %s, user %s",
            outcome,
            who,
            extra={"partition": partition, "code": outcome},
        )
        return view.json(body, status=status, headers=headers)
