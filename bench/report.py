"""The worker section of BENCHMARKS.md, from bench/out/worker/results.json (bench.worker)."""

from __future__ import annotations

from typing import Any

from bench.worker import SETTLE_S

TARGET_RATIO = 0.25
TARGET_P99_MS = 250.0
TARGET_RATIO_EOS = 0.20
TARGET_CPU_US = 60.0
TARGET_LIVE_CPU = 0.25
TARGET_RESTART_S = 60.0
TARGET_RESTORE_PER_S = 30_000.0


def _n(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _times_1000(value: float | None) -> float | None:
    return None if value is None else value * 1000


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def _header(*columns: str) -> str:
    """A markdown table header, the first column left-aligned, the others right."""
    aligns = ["---"] + ["---:"] * (len(columns) - 1)
    return "| " + " | ".join(columns) + " |\n|" + "|".join(aligns) + "|"


THROUGHPUT_HEADER = _header(
    "guarantee", "aiokafka passthrough events/s", "worker events/s in", "worker ÷ passthrough",
    "actions out", "actions/s out", "decisions out", "worker s", "worker start-up s",
    f"decisions out {SETTLE_S:.0f} s later", "worker events/s to 99% of those",
    "that ÷ passthrough", "worker CPU µs per event", "mean encoded state bytes (users)",
)  # fmt: skip
CEILING_HEADER = _header(
    "guarantee", "aiokafka passthrough events/s", "Faust passthrough events/s",
    "Faust ÷ aiokafka", "worker events/s in", "worker ÷ Faust",
)  # fmt: skip
BATCH_HEADER = _header(
    "aiokafka passthrough events/s (median; runs)", "batch loop events/s",
    "batch loop ÷ aiokafka", "batch loop ÷ worker", "decisions and actions out",
)  # fmt: skip
LATENCY_HEADER = _header(
    "run", "events/s fed", "measured events with a decision", "decisions matched",
    "p50 ms (decision record)",
    "p99 ms (decision record)", "p50 ms (seen read_committed)", "p99 ms (seen read_committed)",
    "stream time behind wall clock p50 / p99 ms", "worker's own handling p99 ms (histogram bucket)",
    "how late records reach the agent (wall clock - ts) p99 ms (histogram bucket)",
    "worker CPU, share of one core",
)  # fmt: skip


def _restart_header(partitions: int) -> str:
    return _header(
        "users of state", "users changelog records", "restart → `/health` ok s",
        "restart → first new event processed s",
        f"restart → its decision visible (read_committed) s, first / all {partitions} partitions",
        "partitions whose stream clock was not restored",
    )  # fmt: skip


def _full_restore(s: dict[str, Any]) -> str:
    if "full_restore_healthy_s" not in s:
        return ""  # measured before this row existed
    return (
        "\nThe same state on an empty data dir (a new machine or a lost volume: every partition "
        "restored from the whole changelog): `/health` ok after "
        f"{_n(s['full_restore_healthy_s'], 1)} s, {s['full_restore_users']:,.0f} users, "
        f"{_n(s['full_restore_records_per_s'])} changelog records/s including the start-up "
        f"(users counted in the restored RocksDB after the stop; mean encoded state "
        f"{_n(s.get('mean_state_bytes', 0))} bytes). "
        f"Floor (issue 20): at least {TARGET_RESTORE_PER_S:,.0f} records/s — "
        f"{_verdict(s['full_restore_records_per_s'] >= TARGET_RESTORE_PER_S)}. "
        "After the `kill -9` above, the worker restored only the changelogs' tails since "
        "each partition's checkpoint (the offset written with the states at every commit).\n"
    )


def _settled(base: dict[str, Any], work: dict[str, Any]) -> str:
    if "settled_events_per_s" not in work:
        return "— | — | —"  # measured before these columns existed
    ratio = work["settled_events_per_s"] / base["events_per_s"]
    return f"{work['decisions_later']:,} | {_n(work['settled_events_per_s'])} | {ratio:.3f}"


def _state(work: dict[str, Any]) -> str:
    if "mean_state_bytes" not in work:
        return "—"  # measured before this column existed
    return f"{_n(work['mean_state_bytes'])} ({work['users_stored']:,})"


def _outside(r: dict[str, Any]) -> str:
    """The batch-loop measurement (``bench.batch_loop``), when the run has one."""
    loop = r.get("batch_loop")
    if loop is None:
        return ""
    base = r["passthrough"]["at_least_once"]
    runs = ", ".join(_n(rate) for rate in base.get("runs_events_per_s", []))
    if loop["vs_passthrough"] >= TARGET_RATIO:
        verdict = (
            f"leaving Faust's stream path would meet the {TARGET_RATIO:.0%} target in this run."
        )
    else:
        verdict = (
            f"leaving Faust's stream path would not by itself meet the {TARGET_RATIO:.0%} "
            "target in this run; the rest of the gap is the suppressor's own per-event work "
            "(JSON parsing and validation, the state codec, RocksDB, output records)."
        )
    row = (
        f"| {_n(base['events_per_s'])} ({runs}) | {_n(loop['events_per_s'])} "
        f"| **{loop['vs_passthrough']:.3f}** | {loop['vs_worker']:.1f} | {loop['records_out']:,} |"
    )
    return f"""### Outside Faust: the worker's own work from a plain aiokafka loop

{BATCH_HEADER}
{row}

Not the product: a measurement for the design question above. `bench/batch_loop.py`
runs the worker's per-partition code unchanged (`suppressor.adapters.partition.PartitionRuntime`:
`parse_event`, the clock, the processor, user states in RocksDB with their at-least-once
origins) from an aiokafka `getmany` loop, at-least-once: every `commit_interval` it
flushes the outputs, then sends each user's latest state and the clocks to changelog
topics, then commits the offsets. It leaves out Faust (tables, rebalances, recovery, the
web server), exactly-once, ticks and watermarks, repartitioning and metrics, so it is an
upper bound for a worker built that way. It reaches {_n(loop["vs_passthrough"], 3)} of
the aiokafka passthrough, {loop["vs_worker"]:.1f} times the worker: {verdict}
"""


def replay_section(
    runs: list[dict[str, Any]],
    profile: dict[str, Any] | None,
    rss: dict[str, Any] | None,
    kafka: dict[str, Any] | None = None,
    engine_runs: list[dict[str, Any]] | None = None,
) -> str:
    """Replay at scale (issue 21): --jobs 1 and 2, peak RSS, the profile of --jobs 1."""
    header = _header(
        "input", "events", "--jobs 1 s", "events/s", "÷ JSON passthrough", "peak RSS MB",
        "--jobs 2 s", "speedup", "peak RSS MB (largest process)", "same bytes",
    )  # fmt: skip
    rows = "\n".join(
        f"| {r['input']} | {r['events']:,} | {r['jobs1_seconds']:.1f} "
        f"| {r['jobs1_events_per_s']:,.0f} | {r['jobs1_vs_json_passthrough']:.2f} "
        f"| {r['jobs1_peak_rss_mb']:,.0f} | {r['jobs2_seconds']:.1f} "
        f"| **{r['jobs2_speedup']:.2f}x** | {r['jobs2_peak_rss_mb']:,.0f} "
        f"| {'yes' if r['jobs2_same_bytes'] else '**no**'} |"
        for r in runs
    )
    text = f"""## Replay at scale (issue 21)

`suppressor replay FILE --jobs 1` and `--jobs 2` one after the other in the same run, each
in a fresh process, writing actions, decisions and dead letters to files (the engine table
above writes no decisions in its first replay column). "Same bytes": the three files of
`--jobs 2` are byte-identical to those of `--jobs 1`. The speedup is `--jobs 1` seconds ÷
`--jobs 2` seconds; on this shared 2-core machine it is bounded by whatever else runs.

{header}
{rows}
"""
    largest = max(runs, key=lambda r: r["events"])
    per_million = largest["jobs1_seconds"] * 1_000_000 / largest["events"]
    text += (
        f"\nTargets (issue 21), on the {largest['events']:,}-event run: 1,000,000 events in "
        f"≤ 10 s with `--jobs 1`: {per_million:.0f} s per million, "
        f"{_verdict(per_million <= 10)}; `--jobs 2` ≥ 1.6x `--jobs 1`: "
        f"{largest['jobs2_speedup']:.2f}x, {_verdict(largest['jobs2_speedup'] >= 1.6)}. "
        "The profile below says where `--jobs 1`'s time goes.\n"
    )
    engine = {r["input"]: r for r in engine_runs or []}.get(largest["input"])
    if engine is not None:
        alone = 1_000_000 / engine["engine_events_per_s"]
        text += (
            f"In this run the engine alone (`Processor.on_event` over events parsed "
            f"beforehand, nothing written: the table above) took {alone:.0f} s per million "
            f"events ({engine['engine_events_per_s']:,.0f}/s).\n"
        )
    if rss is not None:
        verdict = _verdict(rss["peak_rss_mb"] <= 1024)
        text += (
            f"\nPeak RSS of `--jobs 1` over {rss['input']}: **{rss['peak_rss_mb']:,.0f} MB** "
            f"in {rss['seconds']:.0f} s (target ≤ 1 GB: {verdict}); it grows with the users "
            "held, not with the length of the file.\n"
        )
    if kafka is not None:
        half = _verdict(kafka["kafka_vs_file_rate"] >= 0.5)
        small = _verdict(kafka["kafka_peak_rss_mb"] <= 1024)
        text += f"""
### `replay --from-kafka` against `replay FILE`, same records, same run

{kafka["records"]:,} synthetic records on a broker of their own (`deploy/local/kafka`, five
input topics of 8 partitions, each record stamped with the largest `ts` so far, produced in
{kafka["produce_seconds"]:.0f} s), read back by `replay --from-kafka` in a fresh process, and
the same events as a file by `replay FILE --jobs 1`; actions, decisions and DLQ to files.

| run | seconds | records/s | peak RSS MB |
|---|---:|---:|---:|
{_kafka_row("`--from-kafka`", kafka, "kafka_seconds", "kafka_records_per_s", "kafka_peak_rss_mb")}
{_kafka_row("file", kafka, "file_seconds", "file_events_per_s", "file_peak_rss_mb")}

From Kafka at **{kafka["kafka_vs_file_rate"]:.2f}** of the file's rate (target ≥ 0.5: {half});
peak RSS {kafka["kafka_peak_rss_mb"]:,.0f} MB (target ≤ 1 GB: {small}). Both hold every
user's state; the Kafka read adds at most 2,000 records per partition.
"""
    if profile is not None:
        groups = "\n".join(
            f"| {label} | {100 * share:.0f}% |" for label, share in profile["groups"].items()
        )
        top = "\n".join(
            f"| `{frame}` | {100 * share:.1f}% |" for frame, share in profile["top_self"]
        )
        text += f"""
### Where `--jobs 1` spends its time (py-spy, {profile["samples"]:,} samples)

`py-spy record -r 100 --format raw` over the synthetic replay above (bench/replay.py);
a part's share counts the samples with one of its functions on the stack.

| part | share of samples |
|---|---:|
{groups}

| function (own samples) | share |
|---|---:|
{top}
"""
    return text


def _kafka_row(name: str, kafka: dict[str, Any], seconds: str, rate: str, rss: str) -> str:
    return f"| {name} | {kafka[seconds]:.1f} | {kafka[rate]:,.0f} | {kafka[rss]:,.0f} |"


def worker_section(r: dict[str, Any]) -> str:
    base, work = r["passthrough"], r["worker"]
    guarantees = ("at_least_once", "exactly_once")
    throughput = "\n".join(
        f"| {g} | {_n(base[g]['events_per_s'])} | {_n(work[g]['events_per_s'])} "
        f"| **{work[g]['vs_passthrough']:.3f}** | {work[g]['actions']:,} "
        f"| {_n(work[g]['actions_per_s'], 1)} | {work[g]['decisions']:,} "
        f"| {_n(work[g]['seconds'], 1)} | {_n(work[g]['startup_s'], 1)} "
        f"| {_settled(base[g], work[g])} | {_n(work[g].get('cpu_us_per_event'))} "
        f"| {_state(work[g])} |"
        for g in guarantees
    )
    framework = r.get("faust", {})
    ceiling = "\n".join(
        f"| {g} | {_n(base[g]['events_per_s'])} | {_n(framework[g]['events_per_s'])} "
        f"| **{framework[g]['vs_passthrough']:.3f}** | {_n(work[g]['events_per_s'])} "
        f"| {work[g]['vs_faust']:.2f} |"
        for g in guarantees
        if g in framework
    )
    faust_alo = framework.get("at_least_once", {}).get("vs_passthrough")
    latency = "\n".join(
        f"| {name} | {_n(x['rate'])} "
        f"| {x['events_with_decision']:,} of {x['events_measured']:,} "
        f"| {x['decisions_measured']:,} "
        f"| {_n(x['record_p50_ms'])} | **{_n(x['record_p99_ms'])}** "
        f"| {_n(x['seen_p50_ms'])} | {_n(x['seen_p99_ms'])} "
        f"| {_n(x['stream_lag_p50_ms'])} / {_n(x['stream_lag_p99_ms'])} "
        f"| {_n(_times_1000(x['worker_decision_p99_s']))} "
        f"| {_n(x.get('read_lag_p99_ms'))} | {_n(x.get('worker_cpu_share'), 2)} |"
        for name, x in r["latency"].items()
    )
    s = r["restart"]
    restart = (
        f"| {s['users_before']:,.0f} | {s['changelog_records']:,} | {_n(s['healthy_s'], 1)} "
        f"| {_n(s['first_event_processed_s'], 1)} "
        f"| {_n(s['first_decision_s'], 1)} / {_n(s['all_partitions_s'], 1)} "
        f"| {s['partitions_without_stream_time']} of {r['partitions']} |"
    )
    ratio_alo = work["at_least_once"]["vs_passthrough"]
    ratio_eos = work["exactly_once"]["vs_passthrough"]
    cpu_alo = work["at_least_once"].get("cpu_us_per_event")
    state_alo = work["at_least_once"].get("mean_state_bytes")
    live = r["latency"].get("at_least_once_500_per_s", {}).get("worker_cpu_share")
    settle_s = work["at_least_once"].get("settle_window_s", SETTLE_S)
    lat_alo = r["latency"]["at_least_once"]
    seen_eos = r["latency"].get("exactly_once", {}).get("seen_p99_ms")
    restart_ok = s["users_before"] >= 990_000 and s["first_decision_s"] <= TARGET_RESTART_S
    p99 = lat_alo["record_p99_ms"]
    return f"""## Worker on the local broker (issues 4 and 20)

Measured {r.get("measured_at", "?")}: one worker process
(`python -m suppressor.entrypoints.worker`) and a
single-node Kafka 3.9 broker (`deploy/local/kafka`, port {r["port"]}) on the same 2 cores,
{r["partitions"]} partitions per topic (the default), default settings (`commit_interval` and
`tick_interval` 1 s, `producer_linger` 20 ms) unless a row says otherwise.
Backlog: {r["events"]:,} synthetic events
(`python -m bench --only worker --worker-events N` changes it).

### Throughput: catching up on a backlog, against a raw aiokafka passthrough

{THROUGHPUT_HEADER}
{throughput}

Floors (issue 20): the worker at least {TARGET_RATIO:.0%} of the passthrough at-least-once —
{_verdict(ratio_alo >= TARGET_RATIO)} ({ratio_alo:.1%}); at least {TARGET_RATIO_EOS:.0%}
exactly-once — {_verdict(ratio_eos >= TARGET_RATIO_EOS)} ({ratio_eos:.1%}); catch-up CPU at
most {TARGET_CPU_US:.0f} µs per event — {_verdict(cpu_alo is not None and cpu_alo <= TARGET_CPU_US)}
({_n(cpu_alo)} µs at-least-once); mean encoded state at most 1 KB per user —
{_verdict(state_alo is not None and state_alo <= 1024)} ({_n(state_alo)} bytes). CPU: the worker
process's user + system seconds (`/proc`) from its first event to the last committed offset,
÷ the events; state: the users table's values in the stopped worker's RocksDB.

### Faust's own ceiling: the same backlog through a Faust app that only forwards

{CEILING_HEADER}
{ceiling}

`bench/faust_passthrough.py`: one Faust agent on the five inputs sends every record (key,
value) to one output topic, with the worker's Faust settings (guarantee, `commit_interval`,
`producer_linger`, 64 KiB fetches, logging at info) and nothing else: no parsing, state,
engine, ticks or metrics. It sends as the worker does
(`suppressor.adapters.faust_internals.sender`): under
exactly-once in the transaction of the partition the record was read from. Before
2026-11-22 20:35 UTC it used Faust's `topic.send`, which sent outside any transaction,
so its exactly-once figure was not an exactly-once passthrough. Timed like the worker,
from its first record to its group's last committed offset. Faust's per-record path alone
(fetcher thread → conductor → stream → agent → send) reaches {_n(faust_alo, 3)} of the
aiokafka passthrough at-least-once, so the {TARGET_RATIO:.0%} target cannot be met by
any worker built on Faust streams on this machine. Since issue 20 the worker no longer takes
that path for its inputs: the project's Consumer hands each fetched batch of one partition to
the pipeline (README, "Input path"), so "worker ÷ Faust" above 1 is what leaving it bought;
the next table is the worker's own code from a plain aiokafka loop, for comparison.

{_outside(r)}
History (2026-11-22; the passthrough's absolute rate swings 2x between runs, compare
ratios): 09:05, first measurement, 0.029 at-least-once and 0.034 exactly-once. Then, on
branch `perf`: sends batched for up to `producer_linger` (Faust's default, 0, sent nearly
every record in a request of its own); fetches of 64 KiB per partition, so that the ticks
are not stuck behind a whole backlog; the last 2,048 decoded user states kept per
partition; Prometheus label lookups done once. In one A/B series (at-least-once, the
worker's CPU seconds until its decisions settled) the old code took 630 µs per event, the
new one 340 to 390 µs. 13:00: at-least-once holds the users' changelog records back to the
commit, the latest value per user (exactly-once still sends each record's state writes in
its transaction). 16:04: 0.060 and 0.044. 17:40: the Faust passthrough above, which
shows where the ceiling is. 20:35: the Faust passthrough's exactly-once output in its
transactions, as the worker's. 2026-12-06 (issue 20): the batch input path, writes held to
the commit with checkpoints, direct sends, metrics per chunk, msgspec admission and msgpack
states took the worker from 0.040 / 0.036 to about 0.12-0.14 / 0.08-0.17 (two runs, both on
a machine shared with test and fault-suite runs), and a profiled catch-up from 476 to 134 µs
of CPU per event (the last section).

### Event-to-decision latency at half (and a quarter) of the worker's at-least-once maximum

Policy `grace = "0s"` (see Method), events stamped with the wall clock as they are sent.

{LATENCY_HEADER}
{latency}

Floors (issue 20): p99 at half the maximum throughput at most {TARGET_P99_MS:.0f} ms
at-least-once (decision record) — {_verdict(p99 is not None and p99 <= TARGET_P99_MS)}
({_n(p99)} ms); at most `commit_interval` + {TARGET_P99_MS:.0f} ms exactly-once as seen
read_committed — {_verdict(seen_eos is not None and seen_eos <= 1000 + TARGET_P99_MS)}
({_n(seen_eos)} ms); worker CPU at a steady 500 events/s at most {TARGET_LIVE_CPU} of a
core — {_verdict(live is not None and live <= TARGET_LIVE_CPU)} ({_n(live, 2)}). An event is
applied once its partition's stream time passes its `ts` (+ grace), so the latency is how far
stream time trails the wall clock (the "stream time behind" column) plus the worker's own
handling (`suppressor_decision_seconds`, small). Stream time is the minimum over the input
topics and the other partitions' watermarks (they travel on the ticks); with the hybrid clock
each of them moves on with the wall clock since it last rose. Before that change (2026-11-22,
17:40 UTC) only the minimum did, so a sparse topic (a preference every few seconds per
partition) held it back by seconds: the 16:04 UTC run had p99 11,351 ms at-least-once at
1,438 events/s fed, with stream time 8.4 s behind at p50. Since 22:00 UTC a live partition's
watermarks (within `idle_timeout` of the wall clock) hold the others back only while it
forwards them events, and this run's producer keys by user id, so after the warm-up only
the input topics count: before, a scratch log of which source held each partition's
stream time at its ticks showed another partition's watermark in 241 of 256 samples,
0.17 to 1.1 s behind the wall clock, and the 20:44 UTC run had p99 781 ms (at-least-once) and
1,990 ms (exactly-once) at 1,069 events/s. The first run after the change (22:21 UTC, same
code) had p99 190 ms at-least-once, 2,331 ms exactly-once (its exactly-once maximum was
1,169 events/s, so that row ran at 89% of it) and 606 ms at a quarter load: runs differ a
lot on this shared machine. What stream time still trails by is how late
records reach the agent (Faust's fetcher thread and queues, and the worker's own backlog at
this load); the min over five topics takes the latest of them. Exactly-once adds the wait
for the transaction commit (`commit_interval`): a read_committed reader sees the decision
only once the partition's transaction commits ("seen"). Exactly-once's lower maximum also
puts this row closer to that maximum (the rate fed is half the at-least-once one). The
quarter-load row shows what the load costs, the 0.1 s tick row what fresher ticks buy
(each tick of each partition sends a watermark to every other partition: P * (P - 1)
records per `tick_interval`, 560/s for 8 partitions at 0.1 s). The last row holds each
fetch for up to 20 ms (`fetch_wait`, default 0; see the README): compare its CPU share with
the quarter-load row's; it adds up to 20 ms to when each record is read.
On 2026-12-06 the at-least-once half-load row fell seconds behind in both `make bench` runs
(records read up to 10 s late, the worker at half a core), while the exactly-once and 0.1 s
tick rows at the same rate kept up; both runs shared the machine with test and fault-suite
runs. The same row alone on the then quiet machine (same code, same 3,245 events/s, twice,
`bench.worker.measure_latency` from a script): p99 434 and 618 ms (decision record), records
read at most 0.5 and 1 s late, 0.60 and 0.61 of a core: so the seconds were the other jobs,
and the floor of 250 ms is still not met.

### Restart after `kill -9` with {s["users_before"]:,.0f} users of state

{_restart_header(r["partitions"])}
{restart}

Building that state (exactly-once, from an empty group) took {_n(s["build_s"], 0)} s.
Floor (issue 20), with 1,000,000 users: the first new decision at most {TARGET_RESTART_S:.0f} s
after the restart — {_verdict(restart_ok)}
({_n(s["first_decision_s"], 1)} s with {s["users_before"]:,.0f} users).
{_full_restore(s)}

### Method

- One broker for the whole run, started fresh by the bench (data in
  `bench/out/worker/kafka`) and stopped at the end, also on error. The backlog is the
  synthetic stream (`suppressor.core.datasets.synthetic`, seed 46), put once on the five input
  topics keyed by `user_id` (type → topic as `suppressor.adapters.feed` routes it), the catalog on
  the catalog topic. Every consumer below reads all of it with its own consumer group.
- *Passthrough* (the baseline, in the bench process): an aiokafka consumer on the five
  inputs (`read_committed`, no auto-commit) and an aiokafka producer (`acks=all`) to one
  output topic; every record is produced as it came (key, value). At-least-once: produce,
  `flush`, commit offsets every `commit_interval` (1 s, the worker's default).
  Exactly-once: a transactional producer, one transaction per `commit_interval` with the
  offsets in it (`send_offsets_to_transaction`). Time: first record read to last commit.
  It reads the backlog in a second or two, so one run's rate is noisy: since 2026-11-23
  it runs three times per guarantee, each with its own group, and the median is the
  baseline (the runs are listed in the "Outside Faust" table).
- *Worker*: a fresh `python -m suppressor.entrypoints.worker` per guarantee
  (`SUPPRESSOR_PROCESSING_GUARANTEE`)
  with its own app id, data dir and output topics, default policy. Time: from its first
  event counted in `suppressor_events_total` (start-up — catalog, table recovery, group
  join — is the separate column) until the group's committed offsets reach the end of
  every input partition. Actions and decisions are the worker's own counters
  (`suppressor_actions_total`, `+ suppressor_suppressed_total`); the last `grace` of event
  time stays held in the reorder buffers at the end of a backlog, as it should.
  Committed offsets do not mean decided: an event waits in its reorder buffer until
  stream time passes it, and stream time waits for the other partitions' watermarks
  (they come with the next ticks) and for every input topic — a sparse topic
  (preferences, reviews) read to its end holds stream time at its last `ts` (plus the wall
  clock since, hours of event time behind the others in a catch-up) until it has been
  quiet for `idle_timeout` (30 s). So the run goes on counting decisions for
  {settle_s:.0f} s after the offsets are committed; the last three columns are that count
  and the events/s (and ratio) from the first event to the moment the decision count
  reached 99% of it. For a short backlog that includes most of the `idle_timeout` wait,
  which is policy, not processing.
- *Latency*: a fresh worker and topics per row; policy `grace = "0s"`, so that the
  figure shows the pipeline rather than the 5 minutes every event waits by design with
  the default policy (with a grace `g`, add `g`). One consent per input topic and
  partition primes every topic's event time; then events of the synthetic stream (shuffled,
  new ids, `ts` = wall clock at sending, also the Kafka timestamp) are fed at a constant
  rate of half the worker's at-least-once events/s above (a quarter in the last row); the first
  {r.get("latency_warmup_s", 5):.0f} s are warm-up (longer than the default `idle_timeout`,
  30 s: until then a fresh worker's partitions still wait for each other's watermarks; since
  2026-11-22 22:00 UTC, before it 5 s), then
  {r.get("latency_seconds", 30):.0f} s are measured. Each decision read back
  (`read_committed`) is matched through `source_event_ids` to its latest source event:
  latency = the decision record's Kafka timestamp (when the worker produced it) minus that
  input record's timestamp, and — what an ad platform sees — the wall-clock moment the
  reader got it minus the same. Decisions due at a deadline (basket reminders) do not occur
  in so short a run. Events still held when the run ends (about 8 s after the last one is
  sent) have no decision and are not in the percentiles: the "measured events with a
  decision" column says how many are (consents and most cart removes make none). The
  stream-time column samples `suppressor_stream_time_seconds` of every partition once a
  second after the warm-up. The last two columns cover the measured part too (since
  2026-11-23): how late the worker read its input records (`suppressor_event_lag_seconds`,
  what that histogram grew by after the warm-up), and the worker process's CPU seconds
  (user + system, `/proc`) per second of wall clock. The rate fed is half of the
  catch-up maximum, where the worker reads big batches; live, the records come a few
  at a time and each costs more, so "half load" keeps the worker busier than half.
- *Restart*: a fresh worker (exactly-once) processes a synthetic stream of one event per
  user (seed 47) until its committed offsets reach the end and every partition has a
  stream time (topics with nothing to read hold it back for `idle_timeout` after the
  start; a worker killed before that saves none, and the purchases below would then wait
  for the clock instead of being late); `suppressor_users` is read; then SIGKILL, and the
  same command restarts on the same data dir. At the restart one purchase per partition
  is fed, dated 2019-09-01 — before stream time, so late and applied
  at once, without waiting for stream time. Timed from the restart: `/health` 200, the first
  event counted by `suppressor_events_total`, and those purchases' decisions read
  `read_committed`. The last column counts the partitions whose runtime started with no
  stream time (`stream time -4611686018427387904` in the worker log) after the restart.
  Then the worker is stopped and a new one starts on an empty data dir with the same
  settings: its time to `/health` ok is the whole changelogs' restore (the changelog
  records per second count the users changelog's records, start-up included).
- Everything shares 2 cores with the broker, the bench process and other people's jobs;
  run-to-run spread of the absolute rates is large, the ratios less so.
"""
