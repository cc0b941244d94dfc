"""Many users: the state store, the due index, and stream time handed in by the shell.

The shell decides what stream time is (the largest ts read, in replay; the
per-partition minimum over input topics with the hybrid clock, in the worker)
and the processor does the rest. Deadlines and held events are indexed by the
stream time at which they fall due, so advancing time never scans every user.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from suppressor.core.engine import Engine, Failure, Outcome
from suppressor.core.model import Event, UserState


class StateStore(Protocol):
    """Where user states live: a dict in replay, a changelog-backed table in the worker."""

    def get(self, user_id: str) -> UserState | None: ...
    def put(self, user_id: str, state: UserState) -> None: ...
    def delete(self, user_id: str) -> None: ...
    def items(self) -> Iterable[tuple[str, UserState]]: ...


class DictStore:
    def __init__(self) -> None:
        self.states: dict[str, UserState] = {}

    def get(self, user_id: str) -> UserState | None:
        return self.states.get(user_id)

    def put(self, user_id: str, state: UserState) -> None:
        self.states[user_id] = state

    def delete(self, user_id: str) -> None:
        self.states.pop(user_id, None)

    def items(self) -> Iterator[tuple[str, UserState]]:
        return iter(list(self.states.items()))

    def __len__(self) -> int:
        return len(self.states)


class DueIndex:
    """A min-heap of (due stream time, user) with lazy removal of stale entries."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._due)

    def set(self, user_id: str, due: int | None) -> None:
        if due is None:
            self._due.pop(user_id, None)
        elif self._due.get(user_id) != due:
            self._due[user_id] = due
            heapq.heappush(self._heap, (due, user_id))

    def pop_due(self, stream_time: int) -> list[str]:
        """Users due at or before stream_time, removed from the index."""
        heap = self._heap
        if not heap or heap[0][0] > stream_time:
            return []
        due_users = []
        while heap and heap[0][0] <= stream_time:
            due, user_id = heapq.heappop(heap)
            if self._due.get(user_id) == due:
                del self._due[user_id]
                due_users.append(user_id)
        return due_users

    def users(self) -> list[str]:
        return sorted(self._due)

    def clear(self) -> None:
        self._heap.clear()
        self._due.clear()


class StateTooLarge(Exception):
    """Raised by a store's ``put`` before it writes anything: the state's encoding is over
    what the store can keep (``size`` and ``limit`` in bytes)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the user's state would take {size:,} bytes, more than the {limit:,} its "
            "changelog record may; the event was not applied (the state before it stays)"
        )
        self.size = size
        self.limit = limit


class Processor:
    """`users`, `open_baskets` and `pending_similar` count the stored states, those with an
    armed basket reminder and those with a similar-item message pending: exact, kept up to
    date on every save, recounted by `rebuild_index`.

    One user's failure never stops the others: each user's step works on a copy of the
    stored state, and when it raises (a bug, or a state the store refuses to write) the
    stored state stays as it was, nothing that step produced is output, and the failure
    is reported in `Outcome.failures` for the shell to dead-letter and count."""

    def __init__(self, engine: Engine, store: StateStore) -> None:
        self.engine = engine
        self.store = store
        self.index = DueIndex()
        self.users = 0
        self.open_baskets = 0
        self.pending_similar = 0

    def on_event(self, event: Event, stream_time: int) -> Outcome:
        out = Outcome()
        engine = self.engine

        def ingest(state: UserState, step: Outcome) -> UserState | None:
            return engine.ingest_in_place(state, event, stream_time, step)

        self._step(event.user_id, ingest, out, event)
        self._fire_due(stream_time, out)
        return out

    def advance_to(self, stream_time: int) -> Outcome:
        out = Outcome()
        self._fire_due(stream_time, out)
        return out

    def flush(self) -> Outcome:
        """End of input: apply every held event, user by user in id order."""
        out = Outcome()
        for user_id in self.index.users():
            state = self.store.get(user_id)
            if state is not None and state.pending:
                self._step(user_id, self.engine.flush_in_place, out)
        return out

    def rebuild_index(self) -> int:
        """After a restart or a partition assignment: index every stored state's due time."""
        self.index.clear()
        self.users = self.open_baskets = self.pending_similar = 0
        for user_id, state in self.store.items():
            self.index.set(user_id, self.engine.due(state))
            self._count(state)
        return len(self.index)

    def _fire_due(self, stream_time: int, out: Outcome) -> None:
        watermark = stream_time - self.engine.policy.grace
        engine = self.engine

        def advance(state: UserState, step: Outcome) -> UserState | None:
            return engine.advance_in_place(state, watermark, step)

        for user_id in self.index.pop_due(stream_time):
            self._step(user_id, advance, out)

    def _step(
        self,
        user_id: str,
        apply: Callable[[UserState, Outcome], UserState | None],
        out: Outcome,
        event: Event | None = None,
    ) -> None:
        """One user's step on a copy of their state, saved; on failure nothing changes (a
        user whose deadline failed leaves the index until their next event)."""
        stored = self.store.get(user_id)
        if stored is None and event is None:
            return
        state = UserState(user_id=user_id) if stored is None else stored.copy()
        step = Outcome()
        try:
            new = apply(state, step)
            self._save(user_id, new, step)
        except StateTooLarge as error:
            out.failures.append(Failure(user_id, event, "state_too_large", error))
            return
        except Exception as error:  # a bug must cost one user's step, not the worker
            out.failures.append(Failure(user_id, event, "internal_error", error))
            return
        self._uncount(stored)
        self._count(new)
        out.merge(step)

    def _save(self, user_id: str, state: UserState | None, out: Outcome) -> None:
        if user_id in out.erased:
            self.store.delete(user_id)  # a tombstone first: erasure must reach the changelog
        if state is None:
            self.store.delete(user_id)
            self.index.set(user_id, None)
            return
        self.store.put(user_id, state)
        self.index.set(user_id, self.engine.due(state))

    def _count(self, state: UserState | None) -> None:
        if state is not None:
            self.users += 1
            self.open_baskets += state.deadline is not None
            self.pending_similar += state.similar is not None

    def _uncount(self, state: UserState | None) -> None:
        if state is not None:
            self.users -= 1
            self.open_baskets -= state.deadline is not None
            self.pending_similar -= state.similar is not None
