"""Poison record and guest flood (issue 17, item 6): no input puts the worker in a crash loop.

One worker (``faults.poisoned_worker``: the normal worker with an internal error injected
for one event id) reads shop traffic with two kinds of trouble in it:

- a *guest flood*: 40 valid purchases of 999 items each for the one user id ``guest`` (a
  shop that sends every anonymous visitor as ``guest``), each record under the 64 KiB
  input limit, interleaved with other users' traffic. Unbounded, that user's state grew
  past 1 MB, the changelog send failed with ``MessageSizeTooLargeError`` and the agent
  crashed and restarted every few seconds while every other user on its partition
  waited. With per-user limits (policy ``[state_limits]``) the state stays small, and
  replay, running the same engine, makes the same evictions;
- a *poisoned record*: one ordinary purchase on which the engine raises
  ``RuntimeError("injected fault")``. The worker must send that record to the dead-letter
  topic (``internal_error``) and go on.

Checked: no agent crash and no process restart; exactly one dead letter, the poisoned
record, with code ``internal_error`` (and ``suppressor_dlq_total`` saying so); every
user's actions (``guest`` included) equal replay's of the same events without the
poisoned one; the largest record on the users' changelog stays well under 1 MB; the good
events sent after the flood get their decisions promptly; ``/health`` is ok at the end.
"""

from __future__ import annotations

import json
import random
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from faults.harness import Context, Outcome
from faults.hostile import read_everything
from faults.poisoned_worker import FIRED, MESSAGE, POISON_ENV
from faults.streaming import (
    POLICY,
    Feeder,
    Lag,
    compare,
    read_actions,
    sentinel_lines,
    stop_or_kill,
)
from suppressor.adapters.feed import Record, follow_topic
from suppressor.adapters.topology import USERS_TABLE
from suppressor.wire.events import MAX_EVENT_BYTES
from tests.integration.worker_helpers import (
    ITEMS,
    WorkerProcess,
    last_ts,
    replay_actions,
    rfc3339,
    shop_events,
    write_catalog,
    write_lines,
)

GUEST = "guest"
FLOOD_PURCHASES = 40
ITEMS_PER_PURCHASE = 999
CATALOG_ITEMS_PER_PURCHASE = 2
"""Of the 999, known catalog items: seeds of similar-item actions the guest can get."""
GUEST_CART_ADDS = 12
"""The guest's cart adds of catalog items among the flood: basket reminders it can get."""
AFTER_SHARE = 0.2
"""The last fifth of the other users' traffic is sent once the flood is processed."""
CHANGELOG_LIMIT = 512 * 1024
""""Well under 1 MB" (the broker's and the producer's default record limit): half of it."""
PROMPT_S = 60.0
"""The post-flood events' decisions must all be read within this long of their feed's end
(a worker in a crash loop never gets there)."""
SEED = 71


# --- the traffic ----------------------------------------------------------------------


@dataclass
class Traffic:
    before: list[bytes]
    """Other users' traffic with the flood and the poisoned record in it."""
    after: list[bytes]
    """Other users' traffic after the flood (sent once the flood is processed)."""
    poison_id: str
    poison_user: str
    flood_bytes: list[int]
    """Size of each flood record."""
    probes: set[str]
    """Event ids of the browse events in ``after``: each makes at least one decision."""


def guest_purchase(number: int, ts: str, rng: random.Random) -> bytes:
    known = rng.sample(ITEMS, CATALOG_ITEMS_PER_PURCHASE)
    unknown = [
        f"guest-order-{number:02d}-item-{n:04d}"
        for n in range(ITEMS_PER_PURCHASE - CATALOG_ITEMS_PER_PURCHASE)
    ]
    event = {
        "event_id": f"guest-purchase-{number:02d}",
        "type": "purchase",
        "user_id": GUEST,
        "order_id": f"guest-order-{number:02d}",
        "ts": ts,
        "items": [{"item_id": item, "quantity": 1} for item in [*known, *unknown]],
    }
    return json.dumps(event).encode()


def guest_cart_add(number: int, ts: str, rng: random.Random) -> bytes:
    event = {
        "event_id": f"guest-add-{number:02d}",
        "type": "cart",
        "action": "add",
        "user_id": GUEST,
        "item_id": rng.choice(ITEMS),
        "ts": ts,
    }
    return json.dumps(event).encode()


def poison_traffic(users: int, events: int) -> Traffic:
    rng = random.Random(SEED)
    normal = [line.encode() for line in shop_events(users, events, seed=SEED)]
    cut = int(len(normal) * (1 - AFTER_SHARE))
    before, after = normal[:cut], normal[cut:]
    # the poisoned record: an ordinary purchase half-way through the flood
    parsed = [json.loads(line) for line in before]
    middle = len(before) // 2
    poison = next(e for e in parsed[middle:] if e["type"] == "purchase")
    # the flood: at even places among the others' events, stamped like their neighbours
    flood: list[tuple[int, bytes]] = []
    step = len(before) // (FLOOD_PURCHASES + 1)
    for number in range(FLOOD_PURCHASES):
        place = (number + 1) * step
        flood.append((place, guest_purchase(number, parsed[place]["ts"], rng)))
    for number in range(GUEST_CART_ADDS):
        place = rng.randrange(len(before))
        flood.append((place, guest_cart_add(number, parsed[place]["ts"], rng)))
    mixed = list(before)
    for place, line in sorted(flood, key=lambda pair: pair[0], reverse=True):
        mixed.insert(place, line)
    probes = {e["event_id"] for e in map(json.loads, after) if e["type"] == "browse"}
    return Traffic(
        before=mixed,
        after=after,
        poison_id=poison["event_id"],
        poison_user=poison["user_id"],
        flood_bytes=[len(line) for place, line in flood if b'"purchase"' in line],
        probes=probes,
    )


# --- what the worker shows ------------------------------------------------------------------


def health_code(worker: WorkerProcess) -> str:
    """``/health``'s HTTP status and ``status`` field, e.g. ``200 ok`` or ``503 starting``."""
    url = f"http://127.0.0.1:{worker.web_port}/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return f"{response.status} {json.loads(response.read()).get('status')}"
    except urllib.error.HTTPError as error:
        try:
            status = json.loads(error.read()).get("status")
        except ValueError:
            status = "?"
        return f"{error.code} {status}"
    except OSError:
        return "no answer"


def wait_processed(
    lag: Lag, worker: WorkerProcess, timeout_s: float, stall_s: float
) -> tuple[float | None, Counter[str]]:
    """Seconds until the group's committed offsets reach the input's end (None: not within
    ``timeout_s``, or no progress for ``stall_s``), and the ``/health`` answers meanwhile."""
    answers: Counter[str] = Counter()
    started = moved = time.monotonic()
    last = None
    while time.monotonic() - started < timeout_s:
        answers[health_code(worker)] += 1
        behind = lag.lag()
        if behind == 0:
            return time.monotonic() - started, answers
        if behind != last:
            last, moved = behind, time.monotonic()
        elif time.monotonic() - moved > stall_s:
            break
        time.sleep(0.5)
    return None, answers


def wait_decided(deployment: Any, wanted: set[str], timeout_s: float) -> float | None:
    """Seconds until every event id in ``wanted`` is among the ``source_event_ids`` of a
    decision read ``read_committed`` (None: not within ``timeout_s``)."""
    left = set(wanted)
    started = time.monotonic()
    records: Generator[Record | None, None, None] = follow_topic(  # type: ignore[assignment]
        deployment.bootstrap,
        deployment.topology.decisions,
        client_config=deployment.client_config,
        idle_yield=True,
    )
    try:
        for record in records:
            if record is not None:
                left.difference_update(record.json().get("source_event_ids", ()))
            if not left:
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                return None
    finally:
        records.close()
    return None


@dataclass
class LogCount:
    agent_crashes: int
    """Faust's (mode's) ``Crashed reason=...`` lines: an agent or service crashed."""
    injected_tracebacks: int
    """Tracebacks of the injected fault (the product may log the error it dead-letters)."""
    other_tracebacks: int
    fired: int
    """Times the wrapper raised the injected fault."""
    samples: list[str]


def count_log(text: str) -> LogCount:
    crashes = injected = other = fired = 0
    samples: list[str] = []
    for line in text.splitlines():
        if FIRED in line:  # printed, or Faust's stderr redirected to its log (mode.redirect)
            fired += 1
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):  # not the worker's JSON: a raw traceback line?
            other += line.startswith("Traceback")
            continue
        message = str(entry.get("message", ""))
        if re.search(r"crashed reason", message, re.I):
            crashes += 1
            samples.append(message[:200])
        exception = str(entry.get("exception", ""))
        if "Traceback" in exception:
            if MESSAGE in exception.rstrip().rsplit("\n", 1)[-1]:
                injected += 1
            else:
                other += 1
                samples.append(exception.rstrip().rsplit("\n", 1)[-1][:200])
    return LogCount(crashes, injected, other, fired, samples[:5])


def dlq_metric(worker: WorkerProcess, code: str) -> float | None:
    """``suppressor_dlq_total{code=...}``; None when ``/metrics`` does not answer."""
    try:
        url = f"http://127.0.0.1:{worker.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            lines = response.read().decode().splitlines()
    except OSError:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("suppressor_dlq_total{") and f'code="{code}"' in line
    )


def _size(record: Record) -> tuple[bytes, int]:
    return record.key or b"", len(record.value or b"")


# --- the scenario -------------------------------------------------------------------------


def run(ctx: Context) -> Outcome:
    users, events = ctx.pick(small=(300, 4_000), full=(2_000, 20_000))
    deployment = ctx.deployment("poison")
    catalog = write_catalog(deployment.workdir / "catalog.jsonl")
    traffic = poison_traffic(users, events)
    good = [line for line in traffic.before if traffic.poison_id.encode() not in line]
    path = write_lines(deployment.workdir / "events.jsonl", good + traffic.after)
    until = rfc3339(last_ts(path) + timedelta(days=2))
    expected = replay_actions(path, catalog, deployment.policy_path, until, deployment.workdir)
    ctx.log(f"{len(traffic.before) + len(traffic.after):,} events, replay: {len(expected)} actions")
    figures: dict[str, Any] = {
        "events of other users (before / after the flood)": (
            f"{len(traffic.before) - FLOOD_PURCHASES - GUEST_CART_ADDS:,} / {len(traffic.after):,}"
        ),
        "guest purchases x items (largest record, bytes)": (
            f"{FLOOD_PURCHASES} x {ITEMS_PER_PURCHASE} ({max(traffic.flood_bytes):,} of the "
            f"{MAX_EVENT_BYTES:,} allowed)"
        ),
        "guest cart adds": GUEST_CART_ADDS,
        "actions expected (replay without the poisoned record)": len(expected),
        "of which the guest's": sum(1 for a in expected.values() if a["user_id"] == GUEST),
    }
    failures: list[str] = []
    notes: list[str] = []
    if max(traffic.flood_bytes) >= MAX_EVENT_BYTES:
        failures.append(f"a flood record is {max(traffic.flood_bytes)} bytes: over the limit")

    deployment.feed_catalog(catalog)
    feeder = Feeder(deployment)
    lag = Lag(deployment)
    worker = WorkerProcess(
        deployment,
        "poison",
        module="faults.poisoned_worker",
        **{POISON_ENV: traffic.poison_id},
    ).start()
    code: int | None = None
    headline = {"others": "?", "dead": "? dead letters", "largest": "changelog not read"}
    try:
        worker.wait_healthy()
        pid = worker.process.pid if worker.process else None

        # the flood and the poisoned record, among the others' traffic
        feeder.send(traffic.before)
        flood_s, answers = wait_processed(
            lag, worker, ctx.pick(small=240, full=600), stall_s=ctx.pick(small=90, full=180)
        )
        figures["s until the flood's part of the input was processed (committed)"] = (
            "not processed" if flood_s is None else round(flood_s, 1)
        )
        figures["/health answers while it was (HTTP status: count)"] = ", ".join(
            f"{answer}: {count}" for answer, count in sorted(answers.items())
        )
        if flood_s is None:
            failures.append(
                f"the worker did not process the flood's part of the input (committed offsets "
                f"{lag.lag():,} records behind at the end)"
            )
        ctx.log(f"flood part processed: {flood_s}")

        # good events after the flood: how soon their decisions come
        started = time.monotonic()
        feeder.send([*traffic.after, *sentinel_lines(deployment, until)])
        fed = time.monotonic()
        decided = wait_decided(deployment, traffic.probes, timeout_s=PROMPT_S + 60)
        figures["events after the flood: browse events whose decisions were awaited"] = len(
            traffic.probes
        )
        figures["their feed took s"] = round(fed - started, 1)
        total = None if decided is None else decided + fed - started
        figures["s from the start of their feed to the last of their decisions"] = (
            "not all decided" if total is None else round(total, 1)
        )
        if total is None or total > PROMPT_S:
            failures.append(
                f"the events after the flood were not all decided within {PROMPT_S:.0f} s of "
                f"the start of their feed ({'never' if total is None else f'{total:.1f} s'})"
            )
        ctx.log(f"after-flood events decided {total} s after their feed began")

        # every user's actions, the guest's too
        actions = read_actions(deployment, len(expected), timeout_s=ctx.pick(small=120, full=300))
        comparison = compare(expected, actions)
        figures.update(comparison.figures())
        guest = compare(
            {k: a for k, a in expected.items() if a["user_id"] == GUEST},
            [a for a in actions if a["user_id"] == GUEST],
        )
        others = compare(
            {k: a for k, a in expected.items() if a["user_id"] != GUEST},
            [a for a in actions if a["user_id"] != GUEST],
        )
        figures["other users' actions: lost / duplicated / changed / extra"] = (
            f"{len(others.lost)} / {others.duplicated} / {len(others.changed)} / "
            f"{len(others.extra)}"
        )
        figures["guest's actions read / lost / duplicated / changed / extra"] = (
            f"{guest.read} / {len(guest.lost)} / {guest.duplicated} / {len(guest.changed)} / "
            f"{len(guest.extra)}"
        )
        headline["others"] = figures["other users' actions: lost / duplicated / changed / extra"]
        if not others.exact:
            failures.append(f"other users' actions differ from replay: {others.describe()}")
        if not guest.exact:
            failures.append(f"the guest's actions differ from replay: {guest.describe()}")

        # the dead letters: the poisoned record, once, internal_error; nothing else
        letters = [
            record.json()
            for record in read_everything(
                deployment.bootstrap, [deployment.topology.dlq], lambda r: r, committed_only=True
            )[deployment.topology.dlq]
        ]
        codes = Counter(letter.get("error_code") for letter in letters)
        poisoned = [
            letter
            for letter in letters
            if letter.get("error_code") == "internal_error"
            and traffic.poison_id in letter.get("original", "")
        ]
        figures["dead letters (read_committed) by code"] = (
            ", ".join(f"{c} {n}" for c, n in sorted(codes.items())) or "none"
        )
        figures["the poisoned record's dead letters (internal_error)"] = len(poisoned)
        metric = dlq_metric(worker, "internal_error")
        figures['suppressor_dlq_total{code="internal_error"}'] = (
            "n/a" if metric is None else int(metric)
        )
        headline["dead"] = f"{len(poisoned)} internal_error dead letter(s)"
        if len(poisoned) != 1 or len(letters) != 1:
            failures.append(
                f"dead letters: {len(poisoned)} of the poisoned record with internal_error, "
                f"{len(letters)} in all ({dict(codes)}); expected exactly that one"
            )
        if metric != 1:
            failures.append(f'suppressor_dlq_total{{code="internal_error"}} is {metric}, not 1')

        # the users' changelog: no record near the 1 MB limit
        changelog = deployment.topology.changelog(USERS_TABLE)
        sizes = read_everything(deployment.bootstrap, [changelog], _size)[changelog]
        largest = max((size for _, size in sizes), default=0)
        guest_sizes = [size for key, size in sizes if key == GUEST.encode()]
        figures["users changelog records (read_uncommitted)"] = len(sizes)
        figures["largest users changelog record, bytes"] = largest
        figures["guest's records: largest / last, bytes"] = (
            f"{max(guest_sizes):,} / {guest_sizes[-1]:,}" if guest_sizes else "none"
        )
        headline["largest"] = f"largest changelog record {largest:,} bytes"
        if largest >= CHANGELOG_LIMIT:
            failures.append(
                f"a users changelog record is {largest:,} bytes (limit here {CHANGELOG_LIMIT:,})"
            )

        health = health_code(worker)
        figures["/health at the end"] = health
        if not health.startswith("200"):
            failures.append(f"/health at the end answers {health}")
        worker.assert_alive()
        same = worker.process is not None and worker.process.pid == pid
        figures["worker process restarts"] = 0 if same else 1
        if not same:
            failures.append("the worker process was restarted")
    finally:
        lag.close()
        if worker.process is not None and worker.process.poll() is None:
            code = stop_or_kill(worker)
            if code is None:
                failures.append("the worker's graceful stop did not end within 60 s: killed")
        else:
            failures.append(f"the worker exited on its own:\n```\n{worker.log_tail(30)}\n```")
    if code not in (0, None):
        failures.append(f"the worker's graceful stop exited {code}")

    logged = count_log(worker.log_text())
    figures["times the injected fault was raised"] = logged.fired
    figures["agent crashes (Faust's 'Crashed reason' lines)"] = logged.agent_crashes
    figures["tracebacks in the log: of the injected fault / others"] = (
        f"{logged.injected_tracebacks} / {logged.other_tracebacks}"
    )
    if not logged.fired:
        failures.append("the injected fault was never raised: the poisoned event was not read")
    if logged.agent_crashes or logged.other_tracebacks:
        failures.append(
            f"{logged.agent_crashes} agent crashes and {logged.other_tracebacks} other "
            f"tracebacks in the worker log, e.g. {logged.samples}"
        )
    return Outcome(
        name="poison",
        title="Poisoned record and guest flood (issue 17, item 6)",
        passed=not failures,
        figures=figures,
        notes=failures + notes,
        method=METHOD,
        headline=(
            f"{FLOOD_PURCHASES} x {ITEMS_PER_PURCHASE}-item guest purchases + 1 injected "
            f"error: {logged.agent_crashes} agent crashes, {headline['dead']}, "
            f"{headline['largest']}; other users' actions lost / duplicated / changed / "
            f"extra {headline['others']}"
        ),
    )


METHOD = f"""
- **Traffic.** `shop_events` of other users (seeded); its first 80 % carries the *guest
  flood*: {FLOOD_PURCHASES} purchases by the user id `{GUEST}`, {ITEMS_PER_PURCHASE} items
  each ({CATALOG_ITEMS_PER_PURCHASE} catalog items, the rest item ids of its own, so the
  purchased set only grows), every record under the {MAX_EVENT_BYTES // 1024} KiB input
  limit, at even places among the others' events and stamped like their neighbours, plus
  {GUEST_CART_ADDS} cart adds by `{GUEST}` (so it can get basket reminders and similar
  items); and one *poisoned* record, an ordinary user's purchase half-way through.
- **Worker.** One worker, `exactly_once`, policy {POLICY} (pure event time, as replay; the
  product's default `[state_limits]`), 3 partitions, started as `python -m
  faults.poisoned_worker`: the normal worker with the engine's per-event entry point
  patched to raise `RuntimeError("injected fault")` for the poisoned event's id (the
  patch raises before the state is touched). It reads the first part; once the group's
  committed offsets reach the input's end, the last 20 % of the others' traffic follows,
  then one consent per partition two days past the last event (the sentinels).
- **Checks.** No agent crash (no `Crashed reason` line, Faust's report of a crashed agent
  or service, and no traceback but the injected fault's), the same worker process
  throughout, a graceful stop with status 0; in `events.dlq` (read_committed) exactly one
  record, the poisoned one, with `error_code` `internal_error`, and
  `suppressor_dlq_total{{code="internal_error"}}` = 1; the actions read `read_committed`
  equal `suppressor replay` (same policy, hence the same state limits) of the same events
  *without* the poisoned record, for the other users and for `{GUEST}`, by `action_id` and
  content; the largest record on the users changelog (read_uncommitted, aborted writes
  included) below {CHANGELOG_LIMIT // 1024} KiB, half the 1 MB record limit; every browse
  event sent after the flood has a decision within {PROMPT_S:.0f} s of the start of its
  feed (the figure includes the wait for the other topics to go idle, `idle_timeout` 5 s,
  before stream time passes the last events); `/health` answers 200 at the end.
"""
