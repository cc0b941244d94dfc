"""`replay --jobs N`: one file replay on N processes, every output byte-identical to one.

What one process does (``run.replay``), and so what N must reproduce:

- *Stream time* at input line L is the largest ``ts`` of the admitted events of lines
  1..L (dead-lettered lines do not count). It is a function of the file alone.
- At an admitted line, the processor takes the line's event at that stream time (its
  user's step: the event is held for reordering, or applied late), then fires every user
  whose due time (a deadline, or a held event, plus grace) is at or before it, in order
  of (due time, user id) -- one step per user. A line's outputs are its user's step
  first, then those fired steps in that order.
- *Late events*: an event older than its line's stream time minus grace. That depends on
  stream time only, never on which other users exist.
- *End of input*: every user with events still held is flushed, one step per user in
  user-id order; then ``--until`` fires the users due by then, in (due, user id) order.

Nothing in a user's step depends on another user (the catalog and the policy are read
only), so a user's steps are the same wherever they run, as long as they see the same
stream time at the same lines. Hence:

1. *Scan* (N processes, one slice of the file each): admit every line (the msgspec fast
   path makes this cheap) and keep its ``ts`` and its user's job, ``crc32(user_id) % N``
   (stable in every process and Python version; not ``hash()``), or "dead letter".
   The parent turns the ``ts`` into each line's stream time (a running maximum).
2. *Run* (N processes): job k reads the whole file, admits and runs the lines of its own
   users at their stream time, and, at another job's line where stream time rose, fires
   its own users due by then (at a line where it did not rise, none of them can be due:
   every fire leaves the fired users due later than stream time; and it looks at the
   earliest due time first, so most such lines cost a comparison). Every step with an
   output is written to job k's spool, keyed (line, 0) for a line's own step and
   (line, 1, due, user) for a fired one; the end-of-input flush is keyed (lines, 0, 0,
   user) and ``--until``'s fires (lines + 1, 1, due, user). Job 0 also writes the dead
   letters of the lines nobody admitted.
3. *Merge* (the parent): the N spools, each in key order, merged by key: exactly the
   order of one process. Each output file gets its part of each step in that order.

A failure dead letter names the record in hand when the failing event is that record's
(``admission.failure_dead_letter``); a job firing at another job's line reads that line's
event id when, and only when, a fired step failed.
"""

from __future__ import annotations

import heapq
import multiprocessing
import os
import pickle
import tempfile
import time
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, BinaryIO

from suppressor.core.admission import admit, admit_fast, failure_dead_letter
from suppressor.core.catalog import Catalog
from suppressor.core.codec import dead_letter_bytes, output_records
from suppressor.core.engine import Engine, Outcome
from suppressor.core.model import Event, UserState
from suppressor.core.policy import Policy
from suppressor.core.processor import DictStore, Processor
from suppressor.core.replay.run import FileSink, Meter
from suppressor.core.tally import Tally
from suppressor.wire.outputs import DeadLetter, SourcePosition

DEAD = 255
"""The job number of a line nobody admitted (a dead letter); jobs are 0..254."""
MAX_JOBS = 64
SPOOL_BATCH = 4096
"""Steps per pickled batch in a job's spool."""

Step = tuple[int, int, int, str, bytes, bytes, bytes, bytes]
"""(line, phase, due, user, actions, decisions, conversions, dead letters): one user's step
with its outputs, keyed by its place in the one-process order."""


def job_of(user_id: str, jobs: int) -> int:
    """The job that runs ``user_id``: a hash stable across processes and versions."""
    return zlib.crc32(user_id.encode("utf-8", "surrogatepass")) % jobs


@dataclass(frozen=True)
class Run:
    """What every process of a run shares: the file, the engine's inputs and the clock."""

    path: str
    policy: Policy
    catalog: Catalog
    until: int | None
    now_ms: int
    jobs: int
    source: str
    """The name dead letters give the file (``-`` for stdin kept in a file)."""


class KeyedProcessor(Processor):
    """The processor with each fired user's step kept apart, with its due time, instead of
    merged into the line's outcome: its ``_fire_due`` and ``flush_steps`` are
    ``Processor._fire_due`` and ``Processor.flush`` step by step, on the processor's own
    ``_step``, ``index`` and the engine's ``due``. A change to how the processor fires or
    flushes must be made here too; tests/unit/test_replay_jobs.py fails when they part."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, DictStore())
        self.fired: list[tuple[int, str, Outcome]] = []

    def _fire_due(self, stream_time: int, out: Outcome) -> None:
        watermark = stream_time - self.engine.policy.grace
        engine = self.engine

        def advance(state: UserState, step: Outcome) -> UserState | None:
            return engine.advance_in_place(state, watermark, step)

        for user_id in self.index.pop_due(stream_time):
            due = engine.due(self.store.get(user_id)) or 0
            step = Outcome()
            self._step(user_id, advance, step)
            self.fired.append((due, user_id, step))

    def due_by(self, stream_time: int) -> bool:
        """Whether some user may be due at ``stream_time`` (a stale entry may say yes):
        at another job's line, most of the time none is, and nothing needs doing."""
        heap = self.index._heap
        return bool(heap) and heap[0][0] <= stream_time

    def flush_steps(self) -> Iterator[tuple[str, Outcome]]:
        for user_id in self.index.users():
            state = self.store.get(user_id)
            if state is not None and state.pending:
                step = Outcome()
                self._step(user_id, self.engine.flush_in_place, step)
                yield user_id, step


# --- 1. scan ------------------------------------------------------------------------------


def slices(path: str, parts: int) -> list[tuple[int, int]]:
    """``parts`` byte ranges of the file, each starting at the start of a line."""
    size = os.path.getsize(path)
    cuts = [0]
    with open(path, "rb") as handle:
        for k in range(1, parts):
            handle.seek(max(size * k // parts, cuts[-1]))
            if handle.tell() > 0:
                handle.readline()
            cuts.append(max(handle.tell(), cuts[-1]))
    cuts.append(size)
    return [(cuts[k], cuts[k + 1]) for k in range(parts)]


def lines_between(handle: BinaryIO, start: int, stop: int) -> Iterator[bytes]:
    """The non-blank lines (without their line end) starting in [start, stop), as
    ``files.numbered_lines`` sees them."""
    handle.seek(start)
    done = start
    for line in handle:
        if done >= stop:
            return
        done += len(line)
        stripped = line.rstrip(b"\r\n")
        if stripped.strip():
            yield stripped


def _scan(run: Run, start: int, stop: int, out: Path, counter: Synchronized[int]) -> None:
    """Writes to ``out`` the ts of each non-blank line in [start, stop) (array('q') bytes)
    and, to ``out`` + ".owners", its job (DEAD: refused)."""
    skew = run.policy.max_future_skew
    times, owners = array("q"), bytearray()
    where = SourcePosition(file=run.source)  # the dead letters are job 0's, with lines
    done = 0
    with open(run.path, "rb") as handle:
        for raw in lines_between(handle, start, stop):
            event = admit_fast(raw, run.now_ms, skew) or admit(raw, where, run.now_ms, skew)
            if isinstance(event, DeadLetter):
                times.append(0)
                owners.append(DEAD)
            else:
                times.append(event.ts)
                owners.append(job_of(event.user_id, run.jobs))
            done += len(raw) + 1
            if done > 1 << 20:
                with counter.get_lock():
                    counter.value += done
                done = 0
    with counter.get_lock():
        counter.value += done
    out.write_bytes(times.tobytes())
    out.with_suffix(".owners").write_bytes(bytes(owners))


# --- 2. run -------------------------------------------------------------------------------


class _Spool:
    """A job's steps, pickled in batches to a file, read back in the same order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.batch: list[Step] = []

    def add(self, key: tuple[int, int, int, str], out: Outcome, dead: list[bytes],
            version: str, tally: Tally) -> None:  # fmt: skip
        written = bool(out.decisions or out.late_events or out.erased or out.conversions)
        if written:
            tally.count_output(out)
        if not written and not dead:
            return
        parts: dict[str, list[bytes]] = {"actions": [], "decisions": [], "conversions": []}
        if written:
            for kind, _, value in output_records(out, version):
                parts[kind].append(value + b"\n")
        self.batch.append(
            (*key, b"".join(parts["actions"]), b"".join(parts["decisions"]),
             b"".join(parts["conversions"]), b"".join(dead))
        )  # fmt: skip
        if len(self.batch) >= SPOOL_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            pickle.dump(self.batch, self.handle, protocol=pickle.HIGHEST_PROTOCOL)
            self.batch = []

    def close(self, tally: Tally) -> None:
        self.flush()
        pickle.dump(tally, self.handle, protocol=pickle.HIGHEST_PROTOCOL)
        self.handle.close()


def read_spool(path: Path, tallies: list[Tally]) -> Iterator[Step]:
    with open(path, "rb") as handle:
        while True:
            item = pickle.load(handle)
            if isinstance(item, Tally):
                tallies.append(item)
                return
            yield from item


def _failure_letters(out: Outcome, tally: Tally, record: tuple[bytes, SourcePosition, str | None]
                     ) -> list[bytes]:  # fmt: skip
    raw, where, current = record
    letters = []
    for failure in out.failures:
        tally.failures[failure.code] += 1
        dead = failure_dead_letter(failure, raw, where, current)
        if dead is not None:
            tally.dlq[dead.error_code] += 1
            letters.append(dead_letter_bytes(dead) + b"\n")
    return letters


def _run_job(
    run: Run, me: int, times: array[int], owners: bytes, spool_path: Path,
    counter: Synchronized[int],
) -> None:  # fmt: skip
    processor = KeyedProcessor(Engine(run.policy, run.catalog))
    version = processor.engine.policy_version
    skew = run.policy.max_future_skew
    spool = _Spool(spool_path)
    tally = Tally()
    last_fire: int | None = None
    read = 0

    def fired(line: int, raw: bytes, number: int, current: str | None) -> None:
        for due, user_id, step in processor.fired:
            letters = []
            if step.failures:  # the line's event id: see failure_dead_letter
                where = SourcePosition(file=run.source, line=number)
                event_id = current if current is not None else _event_id(run, raw, where)
                letters = _failure_letters(step, tally, (raw, where, event_id))
            spool.add((line, 1, due, user_id), step, letters, version, tally)
        processor.fired.clear()

    handle = open(run.path, "rb")  # noqa: SIM115 - closed below
    with handle:
        for j, (number, raw) in enumerate(_numbered(handle)):
            read += len(raw) + 1
            if read > 1 << 20:
                with counter.get_lock():
                    counter.value += read
                read = 0
            owner = owners[j]
            if owner == me:
                stream_time = last_fire = times[j]
                event = admit_fast(raw, run.now_ms, skew) or _admitted(run, raw, number)
                tally.events[event.type] += 1
                out = processor.on_event(event, stream_time)
                letters = []
                if out.failures:
                    where = SourcePosition(file=run.source, line=number)
                    letters = _failure_letters(out, tally, (raw, where, event.event_id))
                spool.add((j, 0, 0, ""), out, letters, version, tally)
                fired(j, raw, number, event.event_id)
            elif owner != DEAD:
                stream_time = times[j]
                if last_fire is None or stream_time > last_fire:  # else nobody can be due
                    if processor.due_by(stream_time):
                        processor.advance_to(stream_time)
                        fired(j, raw, number, None)
                    last_fire = stream_time
            elif me == 0:  # a dead letter
                dead = admit(raw, SourcePosition(file=run.source, line=number), run.now_ms, skew)
                assert isinstance(dead, DeadLetter)
                tally.dlq[dead.error_code] += 1
                letter = dead_letter_bytes(dead) + b"\n"
                spool.add((j, 0, 0, ""), Outcome(), [letter], version, tally)
    for user_id, step in processor.flush_steps():
        letters = _failure_letters(step, tally, (b"", SourcePosition(), None))
        spool.add((len(owners), 0, 0, user_id), step, letters, version, tally)
    if run.until is not None:
        processor.advance_to(run.until)
        for due, user_id, step in processor.fired:
            letters = _failure_letters(step, tally, (b"", SourcePosition(), None))
            spool.add((len(owners) + 1, 1, due, user_id), step, letters, version, tally)
    with counter.get_lock():
        counter.value += read
    spool.close(tally)


def _numbered(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(handle, start=1):
        stripped = line.rstrip(b"\r\n")
        if stripped.strip():
            yield number, stripped


def _admitted(run: Run, raw: bytes, number: int) -> Event:
    """The event of a line the scan admitted, which the fast path did not take."""
    where = SourcePosition(file=run.source, line=number)
    event = admit(raw, where, run.now_ms, run.policy.max_future_skew)
    assert isinstance(event, Event)
    return event


def _event_id(run: Run, raw: bytes, where: SourcePosition) -> str:
    event = admit(raw, where, run.now_ms, run.policy.max_future_skew)
    assert isinstance(event, Event)
    return event.event_id


# --- the whole run --------------------------------------------------------------------------


def replay_parallel(
    path: str,
    policy: Policy,
    catalog: Catalog,
    sink: FileSink,
    *,
    jobs: int,
    until: int | None = None,
    progress: Meter | None = None,
    now_ms: int | None = None,
    spool_dir: str | None = None,
    source_name: str | None = None,
) -> Tally:
    """The file at ``path`` replayed on ``jobs`` processes into ``sink``: the same bytes and
    the same tally as ``run.replay`` over ``files.numbered_lines`` of it. ``progress`` hears
    of input bytes: the file once for the scan and once per job."""
    if not 1 <= jobs <= MAX_JOBS:
        raise ValueError(f"jobs must be 1 to {MAX_JOBS}, got {jobs}")
    reference = int(time.time() * 1000) if now_ms is None else now_ms
    run = Run(
        path, policy, catalog, until, reference, jobs, path if source_name is None else source_name
    )
    context = multiprocessing.get_context("fork")  # the engine's inputs are inherited
    counter = context.Value("q", 0)
    ticker = _Ticker(counter, progress)
    with tempfile.TemporaryDirectory(prefix="replay-jobs-", dir=spool_dir) as tmp:
        scans = [Path(tmp) / f"scan-{k}.times" for k in range(jobs)]
        _processes(context, ticker, [
            (_scan, (run, start, stop, scans[k], counter))
            for k, (start, stop) in enumerate(slices(path, jobs))
        ])  # fmt: skip
        times, owners = _stream_times(
            [(p.read_bytes(), p.with_suffix(".owners").read_bytes()) for p in scans]
        )
        spools = [Path(tmp) / f"job-{k}.spool" for k in range(jobs)]
        _processes(context, ticker, [
            (_run_job, (run, k, times, owners, spools[k], counter)) for k in range(jobs)
        ])  # fmt: skip
        return _merge(spools, sink)


def _processes(
    context: Any, ticker: _Ticker, targets: list[tuple[Callable[..., None], tuple[Any, ...]]]
) -> None:
    """Runs each target in a forked process, reporting progress until all have ended."""
    workers = [context.Process(target=target, args=args) for target, args in targets]
    for worker in workers:
        worker.start()
    try:
        ticker.wait(lambda: all(not w.is_alive() for w in workers))
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
    failed = [k for k, w in enumerate(workers) if w.exitcode != 0]
    if failed:
        raise RuntimeError(
            f"replay --jobs: process {failed[0]} failed ({workers[failed[0]].exitcode})"
        )


def _stream_times(parts: list[tuple[bytes, bytes]]) -> tuple[array[int], bytes]:
    times: array[int] = array("q")
    owners = bytearray()
    for raw_times, raw_owners in parts:
        times.frombytes(raw_times)
        owners += raw_owners
    stream_time: int | None = None
    for j, owner in enumerate(owners):
        if owner != DEAD:
            ts = times[j]
            if stream_time is None or ts > stream_time:
                stream_time = ts
            times[j] = stream_time
    return times, bytes(owners)


def _merge(spools: list[Path], sink: FileSink) -> Tally:
    tallies: list[Tally] = []
    streams = [read_spool(path, tallies) for path in spools]
    targets = (sink.actions, sink.decisions, sink.conversions, sink.dlq)
    for step in heapq.merge(*streams):
        for target, data in zip(targets, step[4:], strict=True):
            if data and target is not None:
                target.write(data)
    tally = Tally()
    for part in tallies:
        tally.absorb(part)
    return tally


class _Ticker:
    """Reports the shared byte counter to the meter while waiting for the processes."""

    def __init__(self, counter: Synchronized[int], meter: Meter | None) -> None:
        self.counter = counter
        self.meter = meter
        self.reported = 0

    def wait(self, finished: Callable[[], bool]) -> None:
        while not finished():
            self._report()
            time.sleep(0.1)
        self._report()

    def _report(self) -> None:
        if self.meter is None:
            return
        value = self.counter.value
        if value > self.reported:
            self.meter.advance(value - self.reported)
            self.reported = value

    def done(self) -> None:
        self._report()
