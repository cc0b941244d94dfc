"""Engine and replay benchmarks on the REES46 sample and a synthetic stream.

Every throughput figure is reported next to a baseline measured in the same
run on the same input, because this machine is shared and noisy:
- engine: a trivial per-user dict update over the same pre-parsed events;
- replay: json.loads + json.dumps of every line of the same file (the least any
  JSON-in, JSON-out replay must do).
"""

from __future__ import annotations

import gc
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from suppressor.core.catalog import Catalog
from suppressor.core.codec import event_from_wire
from suppressor.core.engine import Engine
from suppressor.core.model import Event
from suppressor.core.policy import Policy
from suppressor.core.processor import DictStore, Processor
from suppressor.core.replay.files import load_catalog
from suppressor.wire.events import parse_event
from suppressor.wire.outputs import DeadLetter, SourcePosition


def read_events(path: Path) -> list[Event]:
    events = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            parsed = parse_event(line.rstrip(b"\n"), SourcePosition(file=str(path), line=number))
            if not isinstance(parsed, DeadLetter):
                events.append(event_from_wire(parsed))
    return events


def baseline_dict_update(events: list[Event]) -> float:
    seen: dict[str, tuple[int, str]] = {}
    started = time.perf_counter()
    for event in events:
        seen[event.user_id] = (event.ts, event.type)
    return time.perf_counter() - started


def engine_only(events: list[Event], catalog: Catalog) -> tuple[float, Processor]:
    processor = Processor(Engine(Policy(), catalog), DictStore())
    stream_time = events[0].ts
    started = time.perf_counter()
    for event in events:
        stream_time = max(stream_time, event.ts)
        processor.on_event(event, stream_time)
    processor.flush()
    return time.perf_counter() - started, processor


def baseline_json_passthrough(path: Path) -> float:
    import json

    started = time.perf_counter()
    with path.open("rb") as handle, open("/dev/null", "w") as sink:
        for line in handle:
            sink.write(json.dumps(json.loads(line)) + "\n")
    return time.perf_counter() - started


def replay_end_to_end(events: Path, catalog: Path, out_dir: Path, decisions: bool) -> float:
    """The real command in a fresh process: read, parse, decide, write JSON lines."""
    command = [sys.executable, "-m", "suppressor.entrypoints.cli", "replay", str(events)]
    command += ["--catalog", str(catalog), "--actions", str(out_dir / "actions.jsonl")]
    command += ["--dlq", str(out_dir / "dlq.jsonl"), "--quiet"]
    if decisions:
        command += ["--decisions", str(out_dir / "decisions.jsonl")]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def state_memory_mb(events: list[Event], catalog: Catalog) -> tuple[float, int]:
    """RSS growth while holding every user's state after the stream (fresh process advised)."""
    gc.collect()
    before = _rss_mb()
    _, processor = engine_only(events, catalog)
    gc.collect()
    store = processor.store
    assert isinstance(store, DictStore)
    return _rss_mb() - before, len(store)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 1e6


def run(name: str, events_path: Path, catalog_path: Path, out_dir: Path) -> dict[str, Any]:
    catalog, _ = load_catalog(str(catalog_path))
    events = read_events(events_path)
    n = len(events)
    base = min(baseline_dict_update(events) for _ in range(3))
    engine_s, processor = engine_only(events, catalog)
    del processor
    replay_s = replay_end_to_end(events_path, catalog_path, out_dir, decisions=False)
    replay_d = replay_end_to_end(events_path, catalog_path, out_dir, decisions=True)
    json_s = baseline_json_passthrough(events_path)
    users = len({event.user_id for event in events})
    return {
        "input": name,
        "events": n,
        "users": users,
        "engine_events_per_s": n / engine_s,
        "engine_vs_dict_update": (n / engine_s) / (n / base),
        "replay_seconds": replay_s,
        "replay_events_per_s": n / replay_s,
        "replay_vs_json_passthrough": json_s / replay_s,
        "replay_with_decisions_seconds": replay_d,
        "json_passthrough_seconds": json_s,
    }
