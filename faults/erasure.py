"""Erasure (issue 6, item 7): after ``forget`` nothing of the user is readable, nothing fires.

Users build up state (a purchase, a five-star review, a basket armed to fire an hour later)
and then ask to be forgotten; some come back with a browse afterwards, others stay away;
keepers do the same without the forget. After the worker has run past every deadline and
stopped gracefully, its RocksDB table is opened with rocksdict (read-only) and the
``users`` changelog is read ``read_committed``.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rocksdict import AccessType, Options, Rdict

from faults.harness import Context, Outcome
from suppressor.adapters.state import user_state_of
from tests.integration.worker_helpers import (
    WorkerProcess,
    replay_actions,
    rfc3339,
    write_catalog,
    write_lines,
)

START = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


def user_story(user: str, start: datetime, forget: bool, comes_back: bool) -> list[dict[str, Any]]:
    def at(minutes: float) -> str:
        return rfc3339(start + timedelta(minutes=minutes))

    events: list[dict[str, Any]] = [
        {"type": "cart", "action": "add", "item_id": "paper-1", "ts": at(0)},
        {
            "type": "purchase",
            "order_id": f"o-{user}",
            "items": [{"item_id": "shredder-1", "quantity": 1}],
            "ts": at(2),
        },
        {"type": "review", "item_id": "bruges", "rating": 5, "ts": at(3)},
        {"type": "browse", "item_id": "fridge-2", "page": "product", "ts": at(4)},
        {"type": "cart", "action": "add", "item_id": "pen-2", "ts": at(5)},  # armed: +1h
    ]
    if forget:
        events.append({"type": "forget", "ts": at(10)})
        if comes_back:
            events.append({"type": "browse", "item_id": "pen-3", "page": "product", "ts": at(30)})
    return [{"event_id": f"{user}-{n}", "user_id": user, **event} for n, event in enumerate(events)]


def run(ctx: Context) -> Outcome:
    per_group = ctx.pick(small=20, full=300)
    deployment = ctx.deployment("erasure")
    catalog = write_catalog(deployment.workdir / "catalog.jsonl")
    rng = random.Random(ctx.seed)
    groups: dict[str, list[str]] = {"forgotten": [], "returning": [], "keeper": []}
    events: list[dict[str, Any]] = []
    forget_ts: dict[str, str] = {}
    for number in range(per_group * 3):
        group = ("forgotten", "returning", "keeper")[number % 3]
        user = f"{group}-{number}"
        groups[group].append(user)
        start = START + timedelta(seconds=rng.randint(0, 6 * 3600))
        story = user_story(user, start, group != "keeper", group == "returning")
        events += story
        for event in story:
            if event["type"] == "forget":
                forget_ts[user] = event["ts"]
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    path = write_lines(deployment.workdir / "events.jsonl", [json.dumps(e) for e in events])
    until = rfc3339(START + timedelta(days=2))
    expected = replay_actions(path, catalog, deployment.policy_path, until, deployment.workdir)

    figures: dict[str, Any] = {
        "users forgotten (no event after)": len(groups["forgotten"]),
        "users forgotten who come back (a browse 20 min later)": len(groups["returning"]),
        "users kept (same story, no forget)": len(groups["keeper"]),
        "events": len(events),
        "actions expected (replay)": len(expected),
    }
    failures: list[str] = []
    deployment.feed_catalog(catalog)
    worker = WorkerProcess(deployment, "erasure").start()
    try:
        worker.wait_healthy()
        deployment.feed_events([json.dumps(e).encode() for e in events])
        deployment.feed_sentinels(until)
        actions = deployment.actions(
            at_least=len(expected), timeout_s=ctx.pick(small=120, full=600)
        )
        decisions = [r.json() for r in deployment.read(deployment.topology.decisions, settle_s=2.0)]
    finally:
        code = worker.stop()
    if code != 0:
        failures.append(f"graceful stop exited {code}")

    actual = {a["action_id"]: a for a in actions}
    missing, extra = expected.keys() - actual.keys(), actual.keys() - expected.keys()
    figures["actions read (read_committed)"] = len(actions)
    figures["actions missing / extra vs replay"] = f"{len(missing)} / {len(extra)}"
    if missing or extra or len(actions) != len(actual):
        failures.append(f"actions differ from replay: {len(missing)} missing, {len(extra)} extra")
    erased = set(groups["forgotten"]) | set(groups["returning"])
    after = [a for a in actions if a["user_id"] in erased and a["ts"] > forget_ts[a["user_id"]]]
    baskets = [a for a in actions if a["user_id"] in erased and a["kind"] == "basket_recovery"]
    late_decisions = [
        d
        for d in decisions
        if d["user_id"] in groups["forgotten"] and d["ts"] > forget_ts[d["user_id"]]
    ]
    kept_baskets = sum(
        1 for a in actions if a["user_id"] in groups["keeper"] and a["kind"] == "basket_recovery"
    )
    figures["actions for forgotten users dated after their forget"] = len(after)
    figures["basket reminders for forgotten users (armed before the forget)"] = len(baskets)
    figures["decisions for forgotten users dated after their forget"] = len(late_decisions)
    figures["basket reminders for keepers (the control: they do fire)"] = kept_baskets
    if after or baskets or late_decisions:
        failures.append(
            f"something fired after a forget: {len(after)} actions, {len(baskets)} baskets, "
            f"{len(late_decisions)} decisions"
        )
    if kept_baskets != len(groups["keeper"]):
        failures.append(f"only {kept_baskets} of {len(groups['keeper'])} keepers' baskets fired")

    # the table on disk, after the graceful stop
    table = _read_tables(worker.data_dir)
    found = set(table)
    readable = [u for u in groups["forgotten"] if u.encode() in found]
    stale = [u for u in groups["returning"] if not _fresh(table.get(u.encode()))]
    figures["RocksDB partitions read (rocksdict, read-only)"] = len(_table_dirs(worker.data_dir))
    figures["keys in the table"] = len(table)
    figures["forgotten users with a readable record in the table"] = len(readable)
    figures["returning users whose record holds anything from before the forget"] = len(stale)
    figures["keepers with a record in the table"] = sum(
        1 for u in groups["keeper"] if u.encode() in found
    )
    mentions = [u for u in groups["forgotten"] if any(u.encode() in v for v in table.values())]
    figures["table values mentioning a forgotten user's id"] = len(mentions)
    if readable or stale or mentions:
        failures.append(
            f"the table still has {len(readable)} forgotten users, {len(stale)} stale "
            f"returning users, {len(mentions)} values naming a forgotten user"
        )
    on_disk = _raw_mentions(worker.data_dir, groups["forgotten"])
    figures["forgotten ids still in RocksDB's files as bytes (not readable; until compaction)"] = (
        on_disk
    )

    # the changelog: the latest record of a forgotten user's key is a tombstone
    history: dict[bytes, list[bytes | None]] = defaultdict(list)
    changelog = deployment.topology.changelog("users")
    for record in deployment.read(changelog, settle_s=2.0):
        if record.key is not None:
            history[record.key].append(record.value)
    no_tombstone = [
        u
        for u in groups["forgotten"]
        if not history[u.encode()] or history[u.encode()][-1] is not None
    ]
    returning_without = [u for u in groups["returning"] if None not in history[u.encode()]]
    figures["forgotten users whose latest changelog record is not a tombstone"] = len(no_tombstone)
    figures["returning users with no tombstone in their changelog history"] = len(returning_without)
    if no_tombstone or returning_without:
        failures.append(
            f"changelog: {len(no_tombstone)} forgotten users without a final tombstone, "
            f"{len(returning_without)} returning users without any"
        )
    return Outcome(
        name="erasure",
        title="Erasure (issue 6, item 7)",
        passed=not failures,
        figures=figures,
        notes=failures + NOTES,
        method=METHOD,
        headline=(
            f"{len(erased):,} users forgotten: {len(readable)} readable in the table, "
            f"{len(no_tombstone)} without a final tombstone, {len(after) + len(baskets)} "
            "actions after the forget"
        ),
    )


def _fresh(raw: bytes | None) -> bool:
    """A returning user's state: a prospect who browsed once, nothing from before."""
    if raw is None:
        return True
    state = user_state_of(raw)
    return not (
        state.customer
        or state.purchased
        or state.visited
        or state.owned_one_off
        or state.ruled_out
        or state.basket
        or state.sent
        or state.watching
        or any(e.type != "browse" for e in state.pending)
    )


def _table_dirs(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.glob("**/tables/users-*.db") if p.is_dir())


def _read_tables(data_dir: Path) -> dict[bytes, bytes]:
    items: dict[bytes, bytes] = {}
    for path in _table_dirs(data_dir):
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key, value in db.items():
                items[bytes(key)] = bytes(value)  # type: ignore[arg-type]
        finally:
            db.close()
    return items


def _raw_mentions(data_dir: Path, users: list[str]) -> int:
    blobs = b"".join(
        f.read_bytes() for d in _table_dirs(data_dir) for f in d.iterdir() if f.is_file()
    )
    return sum(1 for u in users if u.encode() in blobs)


NOTES = [
    "RocksDB deletes are tombstones too: until a compaction runs, a deleted value's bytes "
    "can stay in the store's files (the last figure) though nothing reads them; the changelog "
    "likewise keeps the old values until Kafka compacts the segment (`min.cleanable.dirty."
    "ratio`, and the active segment is never compacted). Erasure is therefore complete for "
    "every reader at once, and on disk after compaction; actions and decisions already sent "
    "stay until the topics' retention (README, Erasure).",
]

METHOD = """
- Users of three groups, starting at random times over six hours: each adds `paper-1` to
  the basket, buys a one-off shredder (a `similar_item` follows), reviews Bruges five
  stars (another), browses, and adds `pen-2` (a basket reminder armed for an hour later).
  *Forgotten* users then send `forget` 5 minutes later and nothing more; *returning* users
  send `forget` and a browse 20 minutes later; *keepers* send no `forget`.
- One worker (`exactly_once`, `clock = "event"`), all events, then the sentinels (one consent
  per partition two days later) so every deadline passes. Actions read `read_committed`
  must equal `suppressor replay` of the same events; no action or decision of a forgotten
  user may be dated after the forget (so the armed basket never fires), while every keeper's
  basket does fire.
- After a graceful stop (SIGTERM), every `users-<partition>.db` under the worker's data dir
  is opened with rocksdict read-only (raw mode, as Faust writes it): no forgotten user's key
  may be readable, no value may name a forgotten user, and a returning user's state must be
  a fresh prospect's (no purchase, visit, ruled-out item, basket, sent action or
  attribution window). The raw files are also searched for the forgotten ids, for
  information.
- The `users` changelog, read `read_committed` from the start: the last record of every
  forgotten user's key is a tombstone (value null); every returning user's history has one.
"""
