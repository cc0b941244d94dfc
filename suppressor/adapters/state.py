"""Per-user state as the processor's StateStore, on a changelog-backed RocksDB table.

Why not ``table[key] = value``: a Faust table hands its changelog write to a
producer *buffer* that a background task drains. Under ``exactly_once`` the
consumer commits the transaction without draining that buffer first, so a
write can miss the transaction of the event that caused it (and a crash then
loses it while the input offset is committed). Here a partition's writes are held
(``PartitionKV``, reads see them) until the commit: then, once per changed key, they
go to RocksDB in one WriteBatch and to the changelog in the transaction being
committed, with the input offsets (``Pipeline.before_commit``; at least once, after
every output is delivered). Faust still owns everything else: the changelog topic,
recovery before processing, standby replicas.

The table and its store (Faust's RocksDB store, adapted) are in
``suppressor.adapters.faust_internals.store``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rocksdict import WriteBatch

from suppressor.adapters.faust_internals.store import CHECKPOINT_KEY, RocksTable
from suppressor.core.codec import Origins, UnreadableState, decode_state, state_to_bytes
from suppressor.core.model import UserState
from suppressor.core.processor import StateTooLarge

log = logging.getLogger(__name__)

Write = tuple[bytes, bytes | None]
"""A changelog record to send: key, and value or None for a tombstone."""


class PartitionKV:
    """One partition of a RocksTable: reads, and writes held until the commit.

    ``take`` (just before the commit) returns the changelog records to send: per key
    changed since, a tombstone when it was deleted in between (erasure must reach the
    changelog), then its latest value if any. ``apply`` (once the commit is done) writes
    them to RocksDB in one WriteBatch, with the offset of the last of them in the
    changelog (the store's checkpoint, ``PartitionedRocksDB.persisted_offset``): the local
    store never holds what the changelog does not, and a restart reads the changelog only
    from the checkpoint on. Reads see held and taken writes until they are applied."""

    def __init__(self, table: RocksTable, partition: int) -> None:
        self.table = table
        self.partition = partition
        self._held: dict[bytes, tuple[bool, bytes | None]] = {}  # key: (deleted, latest)
        self._taken: dict[bytes, bytes | None] = {}  # sent, not applied yet
        self._offset: int | None = None  # the last taken record's changelog offset

    def get(self, key: bytes) -> bytes | None:
        held = self._held.get(key)
        if held is not None:
            return held[1]
        if key in self._taken:
            return self._taken[key]
        value: bytes | None = self.table.store.partition_db(self.partition).get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        held = self._held.get(key)
        self._held[key] = (held is not None and held[0], value)

    def delete(self, key: bytes) -> None:
        self._held[key] = (True, None)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        latest = {**self._taken, **{key: value for key, (_, value) in self._held.items()}}
        for key, value in self.table.store.visible_items(self.partition):
            if key not in latest:
                yield key, value
        for key, found in latest.items():
            if found is not None:
                yield key, found

    @property
    def held(self) -> int:
        """Keys changed since the last ``take``."""
        return len(self._held)

    def take(self) -> list[Write]:
        """The changelog records of the writes held since the last take, in the order the
        keys were first changed; the writes stay readable until ``apply``."""
        writes: list[Write] = []
        taken = self._taken
        for key, (deleted, latest) in self._held.items():
            if deleted:
                writes.append((key, None))
            if latest is not None:
                writes.append((key, latest))
            taken[key] = latest
        self._held = {}
        return writes

    def sent(self, offset: int) -> None:
        """A taken record reached the changelog at ``offset``."""
        if self._offset is None or offset > self._offset:
            self._offset = offset

    def apply(self) -> None:
        """The commit is done: what was taken goes to RocksDB, with the checkpoint."""
        if not self._taken and self._offset is None:
            return
        batch = WriteBatch(raw_mode=True)
        for key, latest in self._taken.items():
            if latest is None:
                batch.delete(key)
            else:
                batch.put(key, latest)
        if self._offset is not None:
            batch.put(CHECKPOINT_KEY, str(self._offset).encode())
        self.table.store.partition_db(self.partition).write(batch)
        self._taken = {}
        self._offset = None

    def flush(self) -> list[Write]:
        """``take`` and ``apply`` at once, with no offset (tests and tools)."""
        writes = self.take()
        self.apply()
        return writes


Origin = tuple[str, int]
"""Where an input event was first read: ``"<input topic index>.<partition>"`` and offset."""

CACHED_USERS = 2048
"""Decoded user states kept per partition (the most recently used)."""

UNLIMITED = 2**62


class UserStateStore:
    """The processor's StateStore: user states of one partition, as codec bytes.

    The last ``CACHED_USERS`` states read or written are also kept decoded: a user's
    events come in sessions, and decoding the stored bytes on every event was a good
    part of the worker's cost. Every write still goes to RocksDB and the changelog. The
    processor never changes a state it got from here (it works on a copy), so the cache
    holds exactly what is stored.

    ``max_bytes``: the largest encoded state the changelog takes (suppressor.adapters.app checks the
    limits against it at start); ``put`` refuses a larger one with StateTooLarge before
    writing anything. A stored value that does not decode (corrupt, or written by a
    newer version) is logged, counted (``unreadable``) and treated as no state: the user
    starts again as new rather than the record failing forever.

    With ``track_origins`` (at-least-once) each state also records, per input partition,
    the offset of the last event applied to it (``claim``): after a crash, records
    are read again from the committed offsets, and a state restored from the changelog
    may already hold some of them. They are stored inside the state's encoding.
    """

    def __init__(
        self,
        kv: PartitionKV,
        track_origins: bool = False,
        cached: int = CACHED_USERS,
        max_bytes: int = UNLIMITED,
    ) -> None:
        self.kv = kv
        self.track_origins = track_origins
        self.max_bytes = max_bytes
        self.unreadable = 0
        self._pending: dict[str, Origins] = {}  # origins of users being changed
        self.erased: dict[str, Origins] = {}
        """Origins of the users erased since the last commit, by ``erased_key``: saved with
        the partition's clock (``PartitionRuntime.save_clock``), see ``delete``."""
        self._cached = cached
        self._cache: dict[str, tuple[UserState, Origins]] = {}

    def get(self, user_id: str) -> UserState | None:
        found = self._load(user_id)
        return None if found is None else found[0]

    def _load(self, user_id: str) -> tuple[UserState, Origins] | None:
        cache = self._cache
        found = cache.pop(user_id, None)
        if found is None:
            raw = self.kv.get(user_id.encode())
            if raw is None:
                return None
            try:
                found = decode_state(raw)
            except UnreadableState as error:
                self.unreadable += 1
                log.error(
                    "partition %d: a stored user state (user %s) cannot be read, the user "
                    "starts again as new: %s",
                    self.kv.partition,
                    erased_key(user_id)[:12],
                    error,
                )
                return None
            if len(cache) >= self._cached:
                del cache[next(iter(cache))]  # the least recently used
        cache[user_id] = found  # (again) the most recently used
        return found

    def claim(self, user_id: str, origin: Origin) -> bool:
        """False when the event read at ``origin`` is already in the user's stored state;
        else True, and the user's puts until the end of ``changing`` record it."""
        origins = dict(self._origins(user_id))
        offset = origins.get(origin[0])
        if offset is not None and origin[1] <= offset:
            return False
        origins[origin[0]] = origin[1]
        self._pending[user_id] = origins
        return True

    @contextmanager
    def changing(self) -> Iterator[None]:
        """Around a processor call: a claim ends with it."""
        try:
            yield
        finally:
            self._pending.clear()

    def _origins(self, user_id: str) -> Origins:
        found = self._load(user_id)
        if found is None:
            return dict(self.erased.get(erased_key(user_id), {})) if self.erased else {}
        return found[1]

    def put(self, user_id: str, state: UserState) -> None:
        origins: Origins = {}
        if self.track_origins:
            pending = self._pending.get(user_id)
            origins = pending if pending is not None else self._origins(user_id)
        raw = state_to_bytes(state, origins)
        if len(raw) > self.max_bytes:
            raise StateTooLarge(len(raw), self.max_bytes)
        self.kv.put(user_id.encode(), raw)
        cache = self._cache
        if cache.pop(user_id, None) is None and len(cache) >= self._cached:
            del cache[next(iter(cache))]
        cache[user_id] = (state, origins)

    def delete(self, user_id: str) -> None:
        """Erasure writes a tombstone first and then, when events after the ``forget`` are
        still held, the state that keeps them (``Processor._save``): that state keeps the
        origins too (offsets, nothing personal), or those events would be applied again
        when read again after a crash.

        A user erased for good has no state to keep them in, yet a crash between the
        commit's changelog writes and its offsets reads that user's events before the
        ``forget`` again: applied to no state, late, a basket added there would fire a
        reminder before the ``forget`` is read again. So the origins also go to
        ``erased``, under a hash of the user id, which the clock's record carries until
        the next commit (by then the offsets are past those events)."""
        if self.track_origins:
            if user_id not in self._pending:
                self._pending[user_id] = dict(self._origins(user_id))
            self.erased[erased_key(user_id)] = dict(self._pending[user_id])
        self._cache.pop(user_id, None)
        self.kv.delete(user_id.encode())

    def items(self) -> Iterator[tuple[str, UserState]]:
        for key, value in self.kv.items():
            user_id = key.decode()
            try:
                yield user_id, decode_state(value)[0]
            except UnreadableState:
                self.unreadable += 1
                log.error(
                    "partition %d: a stored user state (user %s) cannot be read; it is left "
                    "out until the user's next event",
                    self.kv.partition,
                    erased_key(user_id)[:12],
                )


def erased_key(user_id: str) -> str:
    """How ``UserStateStore.erased`` names a user: not the id itself (BLAKE2b, 128 bits)."""
    return hashlib.blake2b(user_id.encode(), digest_size=16, person=b"rs-erased").hexdigest()


def user_state_of(raw: bytes) -> UserState:
    """A users-table value as a UserState (UnreadableState when it is not one)."""
    return decode_state(raw)[0]


class ClockStore:
    """The partition's stream clock snapshot (one key per partition number)."""

    def __init__(self, kv: PartitionKV) -> None:
        self.kv = kv
        self._key = str(kv.partition).encode()

    def load(self) -> dict[str, Any] | None:
        raw = self.kv.get(self._key)
        return None if raw is None else dict(json.loads(raw))

    def save(self, snapshot: dict[str, Any]) -> None:
        self.kv.put(self._key, json.dumps(snapshot, sort_keys=True).encode())
