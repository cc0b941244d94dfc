"""Stream time of one partition number (SPEC section 5), from event time and the wall clock.

Event time: the minimum over the data topics of the largest ``ts`` read from
that topic's partition. A topic whose partition has read nothing for
``idle_timeout`` of wall clock is left out (Kafka Streams' ``max.task.idle.ms``),
and when an idle topic delivers again the other idle ones get a fresh
``idle_timeout`` to do the same; a topic not read from yet counts as "nothing
known" and holds stream time back until it too has been idle that long, so a
backlog read faster from one topic than from another never makes the slower
topic's events late. When every topic is idle, the largest ``ts`` read on any of
them is the event time: nothing older can be waiting.

Idle means *caught up and quiet*: a topic whose partition still has records
waiting in Kafka (``backlog``: the consumer's position is behind the partition's
end) is never idle, however long it has not been read (Kafka Streams does the
same since KIP-695). Without that, a restart or a rebalance that delays one
topic's first fetch past ``idle_timeout`` would let stream time jump to the
fastest topic and make the slow topic's whole backlog late.

Hybrid clock: a live worker's partition that goes quiet must still fire its
deadlines, and a quiet topic must not hold back the busy ones, so each topic's
event time also advances with the wall clock *since its largest ts last rose*:
a live topic that has said nothing for two seconds is taken to be two seconds
further on (its next event will not be older, give or take ``grace``). Stream
time is the minimum of those. Counting from each topic's last rise (rather than
taking "now") keeps a catch-up run on event time: there, every topic being read
rises every few milliseconds and the wall clock adds next to nothing; a topic
fully read while the others still catch up adds wall-clock seconds to an event
time hours behind theirs, and holds them back until it is idle. The watermarks
a partition sends the others (suppressor.adapters.partition) are this time over its inputs,
so a sparse input topic on one partition (a preference every few seconds) does
not hold back every other partition by seconds either. A live partition's watermarks
arrive as ``promise``: they say how far it has got without keeping it in the minimum,
so it is left out after ``idle_timeout`` unless it forwards events (see
``suppressor.adapters.pipeline.Pipeline._fresh``). With ``clock = "event"`` nothing is
extrapolated and every watermark is an ``observe``.

Stream time never goes back. ``snapshot``/``restore`` carry it (and each
topic's largest ``ts``) across restarts, so a restarted worker neither
reclassifies late events nor waits for new traffic before its deadlines fire.

Pure: wall-clock readings are passed in (seconds, monotonic), never read here.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

NO_TIME = -(2**62)
"""Stream time while nothing is known: every event is held, no deadline fires."""


@dataclass(slots=True)
class _TopicProgress:
    topic: str
    max_ts: int | None
    last_read: float
    rose: float
    """Wall clock when ``max_ts`` last rose (or was restored): the hybrid clock counts from it."""
    promised: bool = False
    """Last heard of by ``promise`` (its source is caught up): left idle, not woken."""


def _no_backlog(topic: str) -> bool:
    return False


class PartitionClock:
    def __init__(
        self,
        topics: Iterable[str],
        idle_timeout_ms: int,
        hybrid: bool,
        now: float,
        backlog: Callable[[str], bool] = _no_backlog,
    ) -> None:
        self._topics = {topic: _TopicProgress(topic, None, now, now) for topic in topics}
        self._backlog = backlog
        self._idle_s = idle_timeout_ms / 1000
        self._hybrid = hybrid
        self._time: int | None = None

    @property
    def time(self) -> int:
        return NO_TIME if self._time is None else self._time

    def observe(self, topic: str, ts: int, now: float) -> None:
        """An event with event time ``ts`` (or a watermark) was read from ``topic``."""
        progress = self._topics[topic]
        if self._is_idle(progress, now):
            self._wake_idle_topics(now)
        self._rise(progress, ts, now)
        progress.last_read = now
        progress.promised = False

    def promise(self, topic: str, ts: int, now: float) -> None:
        """``topic`` will bring nothing older than ``ts``, but it is not being read: its
        source is caught up and only says how far it has got (a watermark from a partition
        that forwards nothing). Unlike ``observe`` this neither keeps the topic in the
        minimum nor wakes idle topics: it goes idle after ``idle_timeout`` without a read,
        as a quiet input topic does, and stays idle when another topic wakes the rest."""
        progress = self._topics[topic]
        self._rise(progress, ts, now)
        progress.promised = True

    def touch(self, topic: str, now: float) -> None:
        """``topic`` is alive, without news about event time: it stays in the minimum."""
        progress = self._topics[topic]
        progress.last_read = now
        progress.promised = False

    @staticmethod
    def _rise(progress: _TopicProgress, ts: int, now: float) -> None:
        if progress.max_ts is None or ts > progress.max_ts:
            progress.max_ts = ts
            progress.rose = now

    def advance(self, now: float) -> int:
        """Stream time at wall-clock ``now`` (monotonic seconds)."""
        candidate = self.event_time(now)
        if candidate is not None and (self._time is None or candidate > self._time):
            self._time = candidate
        return self.time

    def all_idle(self, now: float, topics: Collection[str]) -> bool:
        return all(self._is_idle(self._topics[t], now) for t in topics)

    def _is_idle(self, progress: _TopicProgress, now: float) -> bool:
        return now - progress.last_read >= self._idle_s and not self._backlog(progress.topic)

    def _wake_idle_topics(self, now: float) -> None:
        """Traffic resumes: the other idle topics get ``idle_timeout`` to show theirs.

        Idleness counts from when stream time would move on without a topic, as
        Kafka Streams' ``max.task.idle.ms`` does, not from the topic's last record:
        after a pause, the first topic to deliver its share of a burst must not
        make the others' share late.
        """
        for progress in self._topics.values():
            if not progress.promised and self._is_idle(progress, now):
                progress.last_read = now

    def event_time(self, now: float, topics: Collection[str] | None = None) -> int | None:
        """Event time over ``topics`` (default: all), None while a live topic knows nothing;
        with the hybrid clock, each topic's moved on by the wall clock since it rose."""
        chosen = [p for t, p in self._topics.items() if topics is None or t in topics]
        active = [p for p in chosen if not self._is_idle(p, now)]
        if active:
            known = [self._at(p, now) for p in active if p.max_ts is not None]
            return min(known) if len(known) == len(active) else None
        seen = [self._at(p, now) for p in chosen if p.max_ts is not None]
        return max(seen) if seen else None

    def _at(self, progress: _TopicProgress, now: float) -> int:
        """A topic's event time at ``now`` (``max_ts`` must be known)."""
        assert progress.max_ts is not None
        if not self._hybrid:
            return progress.max_ts
        return progress.max_ts + int((now - progress.rose) * 1000)

    def snapshot(self) -> dict[str, Any]:
        """What survives a restart: stream time and each topic's largest ts."""
        return {
            "time": self._time,
            "topics": {t: p.max_ts for t, p in self._topics.items() if p.max_ts is not None},
        }

    def restore(self, snapshot: dict[str, Any], now: float) -> None:
        """Resume from a snapshot: every topic counts as just read (idle timers restart).

        With the hybrid clock a topic behind the saved stream time goes on from that time
        (it had got that far by the wall clock), not from its largest ts: a partition quiet
        for an hour before a restart must not wait another hour for its deadlines."""
        restored = snapshot.get("time")
        for topic, max_ts in snapshot.get("topics", {}).items():
            if topic in self._topics:
                rose = now
                if self._hybrid and restored is not None and restored > max_ts:
                    rose = now - (restored - max_ts) / 1000
                self._topics[topic] = _TopicProgress(topic, max_ts, now, rose)
        if restored is not None and (self._time is None or restored > self._time):
            self._time = restored
