"""Per-user state as the processor's StateStore, on a changelog-backed RocksDB table.

Why not ``table[key] = value``: a Faust table hands its changelog write to a
producer *buffer* that a background task drains. Under ``exactly_once`` the
consumer commits the transaction without draining that buffer first, so a
write can miss the transaction of the event that caused it (and a crash then
loses it while the input offset is committed). Here the local RocksDB write
is immediate and the changelog records are collected (``take_writes``) and
sent by the agent itself, awaited, in the transaction of the input record
(see ``suppressor.adapters.faust_internals.sender``). Faust still owns everything
else: the changelog topic, recovery before processing, standby replicas.

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

from suppressor.adapters.faust_internals.store import RocksTable
from suppressor.core.codec import Origins, UnreadableState, decode_state, state_to_bytes
from suppressor.core.model import UserState
from suppressor.core.processor import StateTooLarge

log = logging.getLogger(__name__)

Write = tuple[bytes, bytes | None]
"""A changelog record to send: key, and value or None for a tombstone."""


class PartitionKV:
    """One partition of a RocksTable: local reads and writes, changelog records collected."""

    def __init__(self, table: RocksTable, partition: int) -> None:
        self.table = table
        self.partition = partition
        self._writes: list[Write] = []

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.table.store.partition_db(self.partition).get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self._write(key, value)
        last = self._writes[-1] if self._writes else None
        if last is not None and last[0] == key and last[1] is not None:
            self._writes[-1] = (key, value)  # only the latest value of a run of puts matters
        else:
            self._writes.append((key, value))

    def delete(self, key: bytes) -> None:
        self._write(key, None)
        self._writes.append((key, None))  # kept: erasure must reach the changelog

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return self.table.store.visible_items(self.partition)

    def take_writes(self) -> list[Write]:
        writes, self._writes = self._writes, []
        return writes

    def _write(self, key: bytes, value: bytes | None) -> None:
        store = self.table.store
        store.mark_dirty(self.partition)
        db = store.partition_db(self.partition)
        if value is None:
            db.delete(key)
        else:
            db.put(key, value)


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


class DeferredWrites:
    """Changelog records held back until the next commit (at-least-once, see
    ``Pipeline.before_commit``): the latest value per key, after a tombstone when the
    key was deleted in between (erasure must reach the changelog)."""

    def __init__(self) -> None:
        self._writes: dict[bytes, tuple[bool, bytes | None]] = {}

    def __len__(self) -> int:
        return len(self._writes)

    def add(self, writes: list[Write]) -> None:
        for key, value in writes:
            if value is None:
                self._writes[key] = (True, None)
            else:
                earlier = self._writes.get(key)
                self._writes[key] = (earlier is not None and earlier[0], value)

    def drain(self) -> list[Write]:
        out: list[Write] = []
        for key, (tombstone, value) in self._writes.items():
            if tombstone:
                out.append((key, None))
            if value is not None:
                out.append((key, value))
        self._writes.clear()
        return out


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
