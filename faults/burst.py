"""Slow and stuck downstream consumers, and a burst of 10x (issue 6, item 4).

(a) Two consumers of ``actions`` in groups of their own join before the worker starts: one
*stuck* (polls once, then never again, yet stays in its group) and one *slow* (one record
every 0.1 s). The worker's progress must not depend on them: Kafka's ``actions`` topic is
the buffer, and both consumers' lag simply grows.

(b) In the same run: the worker's sustained rate R is measured on a backlog; then events
are fed at R/2 for a while (the steady state), then at 10 R or more (the burst, by kcat),
then the sentinels. The worker's VmRSS (``/proc/<pid>/status``) is sampled every 0.5 s
throughout: the peak during the burst and the catch-up must stay within twice the steady
state's peak, and the group's lag must come back to 0. The actions of everything fed,
read ``read_committed``, must equal ``suppressor replay`` of exactly those lines.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from faults.harness import Context, Outcome
from faults.streaming import (
    DEADLINES_PASSED,
    POLICY,
    Feeder,
    Lag,
    RssSampler,
    compare,
    late_events,
    processed,
    read_actions,
    sentinel_lines,
    synthetic_stream,
    wait_caught_up,
)
from tests.integration.worker_helpers import (
    Deployment,
    WorkerProcess,
    last_ts,
    replay_actions,
    rfc3339,
    write_lines,
)

BURST_FACTOR = 10.0
RATE_LABEL = "sustained rate R, events/s (on a backlog)"
RSS_BOUND = 2.0
"""The burst's and catch-up's peak RSS may be at most this times the steady state's peak."""


class Downstream:
    """A consumer of ``actions`` in a group of its own: stuck (never polls after its first
    poll) or slow (one record per ``delay_s``)."""

    def __init__(self, deployment: Deployment, name: str, delay_s: float | None) -> None:
        self.topic = deployment.topology.actions
        self.kafka = KafkaConsumer(
            self.topic,
            bootstrap_servers=deployment.bootstrap,
            group_id=f"{deployment.prefix}downstream-{name}",
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=True,
            max_poll_records=1,
            max_poll_interval_ms=3_600_000,  # stuck, not gone: it stays in its group
            **dict(deployment.client_config),
        )
        self.delay_s = delay_s
        self.read = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"downstream-{name}", daemon=True)
        self._lock = threading.Lock()

    def _run(self) -> None:
        with self._lock:
            self.read += sum(len(b) for b in self.kafka.poll(timeout_ms=3000).values())
        if self.delay_s is None:
            self._stop.wait()  # stuck: the heartbeat thread keeps it a member
            return
        while not self._stop.is_set():
            with self._lock:
                self.read += sum(len(b) for b in self.kafka.poll(timeout_ms=200).values())
            self._stop.wait(self.delay_s)

    def start(self) -> Downstream:
        self._thread.start()
        return self

    def lag(self) -> int:
        """Records of ``actions`` (markers included) this consumer has not consumed."""
        with self._lock:
            partitions = [
                TopicPartition(self.topic, p)
                for p in self.kafka.partitions_for_topic(self.topic) or ()
            ]
            end = self.kafka.end_offsets(partitions)
            return sum(end[tp] - self.kafka.position(tp) for tp in self.kafka.assignment())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.kafka.close()


def _mb(kb: float) -> float:
    return kb / 1024


def run(ctx: Context) -> Outcome:
    # R is measured over 10 % to 80 % of this backlog; at 15,000 that window was 2 to 5 s and
    # R ranged from 1,862 to 6,855/s across full runs of the same code on this shared
    # machine, while the catch-up (about 40 s) stayed at 2,300 to 3,500/s
    backlog_n = ctx.pick(small=4_000, full=60_000)
    steady_s = ctx.pick(small=10.0, full=25.0)
    burst_cap = ctx.pick(small=20_000, full=100_000)
    total = backlog_n + burst_cap + 50_000
    deployment = ctx.deployment("burst")
    stream = synthetic_stream(
        ctx, deployment, events=total, users=total // 10, seed=41, replay=False
    )
    deployment.feed_catalog(stream.catalog)
    figures: dict[str, Any] = {}
    failures: list[str] = []
    stuck = Downstream(deployment, "stuck", None).start()
    slow = Downstream(deployment, "slow", 0.1).start()
    worker = WorkerProcess(deployment, "burst").start()
    lag = Lag(deployment)
    feeder = Feeder(deployment)
    sampler: RssSampler | None = None
    fed: list[bytes] = []
    try:
        worker.wait_healthy()
        assert worker.process is not None
        sampler = RssSampler(worker.process.pid).start()
        stuck_read_at_start = stuck.read

        # 1. the sustained rate, on a backlog
        sampler.phase = "sustained"
        fed += stream.lines[:backlog_n]
        feeder.send(stream.lines[:backlog_n])
        while (processed(worker) or 0) < backlog_n * 0.1:
            worker.assert_alive()
            time.sleep(0.2)
        r0, t0 = processed(worker) or 0, time.monotonic()
        while (processed(worker) or 0) < backlog_n * 0.8:
            worker.assert_alive()
            time.sleep(0.2)
        r1, t1 = processed(worker) or 0, time.monotonic()
        rate = (r1 - r0) / (t1 - t0)
        figures[RATE_LABEL] = round(rate)
        ctx.log(f"sustained rate {rate:.0f}/s")

        # 2. steady at R/2, then the burst at 10 R, then the sentinels: one feeder, no gap
        steady_n = int(rate / 2 * steady_s)
        burst_rate = rate * BURST_FACTOR
        burst_n = min(burst_cap, int(burst_rate * 5))
        start = backlog_n
        steady = stream.lines[start : start + steady_n]
        burst = stream.lines[start + steady_n : start + steady_n + burst_n]
        fed += steady + burst
        events_path = write_lines(deployment.workdir / "fed.jsonl", fed)
        until = rfc3339(last_ts(events_path) + DEADLINES_PASSED)
        timings: dict[str, float] = {}

        def feed() -> None:
            sampler.phase = "steady"
            feeder.send(steady, rate=rate / 2)
            sampler.phase = "burst"
            timings["burst_start"] = time.monotonic()
            timings["burst_s"] = feeder.blast(burst, deployment.workdir)
            feeder.send(sentinel_lines(deployment, until))
            sampler.phase = "catch-up"
            timings["burst_end"] = time.monotonic()

        feeding = threading.Thread(target=feed, name="feed", daemon=True)
        feeding.start()
        while feeding.is_alive():
            worker.assert_alive()
            feeding.join(0.5)
        lag_at_burst_end = lag.lag()
        processed_at_burst_end = processed(worker) or 0
        caught_up = wait_caught_up(lag, [worker], ctx.pick(small=300, full=600))
        processed_after = processed(worker) or 0
        sampler.phase = "after"
        time.sleep(3)
        achieved = burst_n / timings["burst_s"]
        figures["steady: events at R/2"] = f"{steady_n:,} in {steady_s:.0f} s"
        figures["burst: events"] = burst_n
        figures["burst: rate fed (kcat), events/s (target >= 10 R)"] = round(achieved)
        figures["burst: achieved factor over R"] = round(achieved / rate, 1)
        figures["lag at the end of the burst (input records)"] = lag_at_burst_end
        figures["burst end to lag 0 s"] = "never" if caught_up is None else round(caught_up, 1)
        if caught_up:
            catch_rate = (processed_after - processed_at_burst_end) / caught_up
            figures["catch-up rate, events/s (stuck + slow consumers attached)"] = round(catch_rate)
            if catch_rate < rate * 0.5:
                failures.append(
                    f"the catch-up ran at {catch_rate:.0f}/s, under half the sustained {rate:.0f}/s"
                )
        else:
            failures.append("the worker's lag did not come back to 0")
        if achieved < rate * BURST_FACTOR * 0.8:
            failures.append(
                f"the feeder reached only {achieved:.0f}/s, {achieved / rate:.1f} R (not 10 R)"
            )

        # (a) downstream consumers
        figures["stuck consumer: actions read after its first poll"] = (
            stuck.read - stuck_read_at_start
        )
        figures["stuck consumer: lag on actions at the end"] = stuck.lag()
        figures["slow consumer: actions read (one per 0.1 s)"] = slow.read
        figures["slow consumer: lag on actions at the end"] = slow.lag()

        expected = replay_actions(
            events_path, stream.catalog, deployment.policy_path, until, deployment.workdir
        )
        comparison = compare(expected, read_actions(deployment, len(expected), timeout_s=120))
        late = late_events(worker)
        figures["late events counted by the worker (suppressor_late_events_total)"] = late
        if late != 0:  # event time and the whole input in Kafka: nothing may come late
            failures.append(f"the worker counted {late} late events (none expected)")
        figures["events fed in all (+ 3 sentinels)"] = len(fed)
        figures.update(comparison.figures())
        if not comparison.exact:
            failures.append(f"actions differ from replay: {comparison.describe()}")
        if stuck.lag() <= 0:
            failures.append("the stuck consumer has no lag: nothing was buffered for it")
    finally:
        if sampler is not None:
            sampler.stop()
        lag.close()
        stuck.close()
        slow.close()
        code = worker.stop() if worker.process and worker.process.poll() is None else None
    if sampler is not None:
        steady_rss = sampler.of("steady")
        peak_rss = sampler.of("burst", "catch-up")
        if steady_rss and peak_rss:
            figures["RSS steady state MB (median / peak)"] = (
                f"{_mb(statistics.median(steady_rss)):.0f} / {_mb(max(steady_rss)):.0f}"
            )
            figures["RSS burst + catch-up MB (median / peak)"] = (
                f"{_mb(statistics.median(peak_rss)):.0f} / {_mb(max(peak_rss)):.0f}"
            )
            figures["RSS peak, burst vs steady"] = round(max(peak_rss) / max(steady_rss), 2)
            after = sampler.of("after")
            if after:
                figures["RSS after the catch-up MB"] = round(_mb(after[-1]))
            if max(peak_rss) > RSS_BOUND * max(steady_rss):
                failures.append(
                    f"RSS peaked at {_mb(max(peak_rss)):.0f} MB in the burst, more than "
                    f"{RSS_BOUND}x the steady peak {_mb(max(steady_rss)):.0f} MB"
                )
        else:
            failures.append("no RSS samples for the steady state or the burst")
        figures["RSS samples (every 0.5 s)"] = len(sampler.samples)
    if code not in (0, None):
        failures.append(f"graceful stop exited {code}")
    return Outcome(
        name="burst",
        title="Slow/stuck downstream consumer and a 10x burst (issue 6, item 4)",
        passed=not failures,
        figures=figures,
        notes=failures,
        method=METHOD,
        headline=(
            f"R {figures.get(RATE_LABEL)}"
            f"/s, burst {figures.get('burst: achieved factor over R')} R: RSS peak "
            f"{figures.get('RSS peak, burst vs steady')}x steady, lag 0 after "
            f"{figures.get('burst end to lag 0 s')} s; stuck consumer lag "
            f"{figures.get('stuck consumer: lag on actions at the end')}; lost "
            f"{figures.get('lost (in replay, not read)')}, duplicated "
            f"{figures.get('duplicated (copies beyond the first)')}"
        ),
    )


METHOD = f"""
- One worker (`exactly_once`, policy {POLICY}); input
  `shop_events`. Before it starts, two consumers of `actions` join groups of their own
  (`read_committed`): *stuck* polls once and then never again (its heartbeats keep it in
  the group, `max.poll.interval.ms` one hour), *slow* takes one record every 0.1 s.
- The sustained rate R: a backlog (60,000 events at full scale) is fed at once and R is
  `records_processed` (from `/health`) between 10 % and 80 % of it over the time
  taken. Without a pause, events are
  then fed at R/2 (the steady state), then a burst of {BURST_FACTOR:.0f} R x 5 s worth of
  events (capped) sent as fast as the machine allows (one `kcat` per input topic in
  parallel, murmur2 partitioning like the Java and Python clients; its achieved rate must
  be at least {BURST_FACTOR * 0.8:.0f} R), then the sentinels. The worker's VmRSS is read
  from `/proc/<pid>/status`
  every 0.5 s, labelled by phase; the peak of the burst and catch-up must stay within
  {RSS_BOUND:.0f}x the steady state's peak, and the group's committed input offsets must
  reach the topics' end again ("lag 0"), with the catch-up no slower than half R.
- The stuck consumer must show the actions waiting for it (its lag), while the worker
  caught up; all actions, read `read_committed`, must equal `suppressor replay` of exactly
  the lines fed (lost, duplicated, changed, extra all 0), the worker must count no late
  event (`suppressor_late_events_total`: on event time, with the whole burst in Kafka before
  it is read, nothing is late unless a topic with records still to come was left out as
  idle), and the worker must stop gracefully (exit 0).
"""
