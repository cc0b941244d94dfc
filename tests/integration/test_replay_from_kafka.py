"""`suppressor replay --from-kafka`: a time range of the input topics through the replay engine.

The events are produced with their event time as the Kafka timestamp (CreateTime), as a
producer that stamps records with the event's ``ts`` does; a bad line gets the timestamp
of the good line before it. So ``--until 2025-03-08`` bounds the range by event time too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from suppressor.adapters.feed import feed_catalog, feed_events, jsonl_lines, route_by_type
from suppressor.entrypoints.cli import main
from suppressor.wire.timefmt import parse_to_ms

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "examples" / "events.jsonl"
CATALOG = REPO / "examples" / "catalog.jsonl"
UNTIL = "2025-03-08T00:00:00Z"
EXTRA_BAD = [b"this is not json", b'{"type":"browse","user_id":"zoe"}']
INPUTS = ("events.browse", "events.cart", "events.purchase", "events.review", "events.preferences")


def produce_with_event_time(bootstrap: str, lines: Sequence[bytes], inputs: Sequence[str]) -> None:
    """Like suppressor.adapters.feed.feed_events, but the Kafka timestamp is the event's ts."""
    routes = route_by_type(inputs)
    kafka = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all")
    stamp = parse_to_ms("2025-03-01T00:00:00Z")
    try:
        for line in lines:
            try:
                event = json.loads(line)
                topic = routes[event["type"]]
                key: bytes | None = str(event["user_id"]).encode()
                stamp = parse_to_ms(event["ts"])
            except (ValueError, KeyError, TypeError):
                topic, key = inputs[0], None
            kafka.send(topic, key=key, value=line, timestamp_ms=stamp)
        kafka.flush()
    finally:
        kafka.close()


def kafka_flags(bootstrap: str, names: dict[str, str]) -> list[str]:
    inputs = ",".join(names[name] for name in INPUTS)
    return [
        "--broker",
        bootstrap,
        "--input-topics",
        inputs,
        "--catalog-topic",
        names["catalog"],
    ]


def run(args: list[str], out: Path, tag: str) -> dict[str, bytes]:
    files = {name: out / f"{tag}.{name}.jsonl" for name in ("actions", "decisions", "dlq")}
    flags = [arg for name, path in files.items() for arg in (f"--{name}", str(path))]
    assert main(["replay", *args, *flags, "--quiet"]) == 0
    return {name: path.read_bytes() for name, path in files.items()}


def records(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def action_ids(data: bytes) -> set[str]:
    return {record["action_id"] for record in records(data)}


@pytest.fixture
def fed_topics(kafka_bootstrap: str, default_topics: dict[str, str]) -> dict[str, str]:
    lines = list(jsonl_lines(EVENTS)) + EXTRA_BAD
    produce_with_event_time(kafka_bootstrap, lines, [default_topics[n] for n in INPUTS])
    feed_catalog(kafka_bootstrap, jsonl_lines(CATALOG), default_topics["catalog"])
    return default_topics


def test_a_range_of_the_topics_gives_the_actions_of_the_file(
    kafka_bootstrap: str, fed_topics: dict[str, str], tmp_path: Path
) -> None:
    from_file = run([str(EVENTS), "--catalog", str(CATALOG), "--until", UNTIL], tmp_path, "file")
    kafka_args = [
        "--from-kafka",
        "--since",
        "2025-01-01T00:00:00Z",
        "--until",
        UNTIL,
        *kafka_flags(kafka_bootstrap, fed_topics),
    ]
    first = run(kafka_args, tmp_path, "kafka1")
    second = run(kafka_args, tmp_path, "kafka2")

    # Same topic contents, byte-identical outputs.
    assert first == second
    # The file's late event (demo-036, a cart add at 12:00 after a 13:30 browse) is in
    # Kafka timestamp (= event time) order no longer late; it lands in ivy's basket either
    # way, so the actions are the same.
    assert action_ids(first["actions"]) == action_ids(from_file["actions"])
    assert first["actions"]
    # The decisions too: a late event is still applied (only counted as late).
    decisions = {d["decision_id"] for d in records(first["decisions"])}
    assert decisions == {d["decision_id"] for d in records(from_file["decisions"])}

    # Every bad line is a dead letter with its topic, partition and offset.
    dead = records(first["dlq"])
    file_dead = records(from_file["dlq"])
    assert len(dead) == len(file_dead) + len(EXTRA_BAD)
    for letter in dead:
        source = letter["source"]
        assert source["topic"] in fed_topics.values()
        assert isinstance(source["partition"], int) and isinstance(source["offset"], int)
        assert "file" not in source
    originals = {letter["original"] for letter in dead}
    assert {line.decode() for line in EXTRA_BAD} <= originals
    assert {letter["original"] for letter in file_dead} <= originals


def test_the_catalog_file_can_replace_the_catalog_topic(
    kafka_bootstrap: str, fed_topics: dict[str, str], tmp_path: Path
) -> None:
    from_topic = run(
        ["--from-kafka", "--since", "2025-01-01T00:00:00Z", "--until", UNTIL,
         *kafka_flags(kafka_bootstrap, fed_topics)],
        tmp_path, "topic",
    )  # fmt: skip
    from_file = run(
        ["--from-kafka", "--since", "2025-01-01T00:00:00Z", "--until", UNTIL,
         "--catalog", str(CATALOG), *kafka_flags(kafka_bootstrap, fed_topics)],
        tmp_path, "file",
    )  # fmt: skip

    assert from_topic == from_file


def test_a_since_after_everything_gives_no_actions(
    kafka_bootstrap: str, fed_topics: dict[str, str], tmp_path: Path
) -> None:
    out = run(
        ["--from-kafka", "--since", "2025-03-09T00:00:00Z",
         *kafka_flags(kafka_bootstrap, fed_topics)],
        tmp_path, "late",
    )  # fmt: skip

    assert out == {"actions": b"", "decisions": b"", "dlq": b""}


def test_an_until_before_the_end_bounds_the_range(
    kafka_bootstrap: str, fed_topics: dict[str, str], tmp_path: Path
) -> None:
    whole = run(
        ["--from-kafka", "--since", "2025-01-01T00:00:00Z", "--until", UNTIL,
         *kafka_flags(kafka_bootstrap, fed_topics)],
        tmp_path, "whole",
    )  # fmt: skip
    early = run(
        ["--from-kafka", "--since", "2025-01-01T00:00:00Z", "--until", "2025-03-03T09:03:00Z",
         *kafka_flags(kafka_bootstrap, fed_topics)],
        tmp_path, "early",
    )  # fmt: skip

    assert len(records(early["decisions"])) < len(records(whole["decisions"]))


def test_records_fed_with_wall_clock_timestamps_are_all_in_their_send_time_range(
    kafka_bootstrap: str, default_topics: dict[str, str], tmp_path: Path
) -> None:
    """suppressor.adapters.feed.feed_events stamps records with the time they are sent: the range is
    then by send time, and --until (also the end of the range) must be after it. Records
    sent in the same millisecond are ordered by topic, not by file line, so the actions
    may differ from the file's (a purchase before the cart add it follows): only the
    range and the determinism are checked here."""
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    feed_events(kafka_bootstrap, jsonl_lines(EVENTS), [default_topics[n] for n in INPUTS])
    feed_catalog(kafka_bootstrap, jsonl_lines(CATALOG), default_topics["catalog"])
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
    args = [
        "--from-kafka", "--since", since, "--until", until,
        *kafka_flags(kafka_bootstrap, default_topics),
    ]  # fmt: skip

    first, second = run(args, tmp_path, "k1"), run(args, tmp_path, "k2")
    from_file = run([str(EVENTS), "--catalog", str(CATALOG), "--until", until], tmp_path, "f")

    assert first == second
    assert len(records(first["dlq"])) == len(records(from_file["dlq"])) == 4
    assert first["actions"]


def test_since_is_required_with_from_kafka(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--from-kafka"]) == 2
    assert "--since" in capsys.readouterr().err


# --- streaming (issue 21) -------------------------------------------------------------


def produce_stamped_in_arrival_order(
    bootstrap: str, lines: Sequence[bytes], inputs: Sequence[str]
) -> list[tuple[int, str, int, int, bytes]]:
    """Each line to the topic of its type, stamped with the largest ts so far (the time it
    arrived: a late event keeps its ts and gets a later stamp), so every partition's
    timestamps only grow. Returns (timestamp, topic, partition, offset, value) as acked."""
    routes = route_by_type(inputs)
    kafka = KafkaProducer(bootstrap_servers=bootstrap.split(","), acks="all", linger_ms=5)
    stamp = 0
    sent = []
    try:
        for line in lines:
            event = json.loads(line)
            stamp = max(stamp, parse_to_ms(event["ts"]))
            future = kafka.send(
                routes[event["type"]], key=event["user_id"].encode(), value=line,
                timestamp_ms=stamp,
            )  # fmt: skip
            sent.append((stamp, line, future))
        kafka.flush()
    finally:
        kafka.close()
    acked = []
    for stamp_, line, future in sent:
        meta = future.get(timeout=30)
        acked.append((stamp_, meta.topic, meta.partition, meta.offset, line))
    return acked


@pytest.fixture
def synthetic_stream(tmp_path: Path) -> tuple[list[bytes], Path]:
    from suppressor.core.datasets import synthetic

    synthetic.generate(tmp_path / "syn.jsonl", tmp_path / "catalog.jsonl", events=6_000, users=300)
    lines = (tmp_path / "syn.jsonl").read_bytes().splitlines()
    return lines, tmp_path / "catalog.jsonl"


def test_a_range_wider_than_a_fetch_streams_to_the_bytes_of_the_file_in_kafka_order(
    kafka_bootstrap: str,
    default_topics: dict[str, str],
    synthetic_stream: tuple[list[bytes], Path],
    tmp_path: Path,
) -> None:
    """6,000 records on 5 topics x 3 partitions (a fetch returns at most 500): the k-way
    merge gives the records in (timestamp, topic, partition, offset) order, so the replay
    equals a file replay of them written in that order."""
    lines, catalog = synthetic_stream
    inputs = [default_topics[n] for n in INPUTS]
    acked = produce_stamped_in_arrival_order(kafka_bootstrap, lines, inputs)
    in_order = tmp_path / "in-kafka-order.jsonl"
    in_order.write_bytes(b"".join(value + b"\n" for *_, value in sorted(acked)))
    until = "2019-10-09T00:00:00Z"
    flags = ["--catalog", str(catalog), "--until", until]
    from_file = run([str(in_order), *flags], tmp_path, "file")
    since = "2019-09-01T00:00:00Z"
    kafka_args = [
        "--from-kafka",
        "--since",
        since,
        *flags,
        *kafka_flags(kafka_bootstrap, default_topics),
    ]

    from_kafka = run(kafka_args, tmp_path, "kafka")

    assert from_kafka["actions"] and from_kafka["decisions"]
    assert from_kafka["actions"] == from_file["actions"]
    assert from_kafka["decisions"] == from_file["decisions"]


def test_small_buffers_give_the_same_order(
    kafka_bootstrap: str,
    default_topics: dict[str, str],
    synthetic_stream: tuple[list[bytes], Path],
) -> None:
    """Per-partition buffers of 3 records: partitions leave and rejoin the assignment all
    along."""
    from suppressor.adapters.kafka_replay import RangeReader
    from suppressor.adapters.settings import settings_from_values

    lines, _ = synthetic_stream
    inputs = [default_topics[n] for n in INPUTS]
    acked = produce_stamped_in_arrival_order(kafka_bootstrap, lines[:2_000], inputs)
    settings = settings_from_values({"broker": kafka_bootstrap, "input_topics": inputs}, {})
    reader = RangeReader(settings, 0, None, buffer=3)
    offsets: list[int] = []
    try:
        got = [
            (r.timestamp, r.topic, r.partition, r.offset, r.value)
            for r in reader.records(offsets.append)
        ]
    finally:
        reader.close()
    assert got == sorted(acked)
    assert sum(offsets) == reader.total == len(acked)


def test_compare_works_from_kafka(
    kafka_bootstrap: str,
    fed_topics: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    policies = ["--policy", str(REPO / "examples" / "policy.toml")]
    policies += ["--compare", str(REPO / "examples" / "policy-strict.toml")]
    range_ = ["--since", "2025-01-01T00:00:00Z", "--until", UNTIL]
    assert (
        main(["replay", str(EVENTS), "--catalog", str(CATALOG), *policies, "--until", UNTIL]) == 0
    )
    from_file = capsys.readouterr().out
    kafka = ["--from-kafka", *range_, *kafka_flags(kafka_bootstrap, fed_topics)]
    assert main(["replay", *kafka, "--catalog", str(CATALOG), *policies]) == 0
    from_kafka = capsys.readouterr().out

    assert "too_personal" in from_kafka
    # the file's one late event is in time order on Kafka: the same table
    assert from_kafka == from_file


def test_catalog_load_puts_items_and_tombstones_and_dead_letters(
    kafka_bootstrap: str, default_topics: dict[str, str], tmp_path: Path
) -> None:
    from suppressor.adapters.feed import read_topic
    from suppressor.adapters.kafka_replay import read_catalog
    from suppressor.adapters.settings import settings_from_values

    catalog = tmp_path / "catalog.jsonl"
    good = CATALOG.read_bytes().splitlines()
    first_id = json.loads(good[0])["item_id"]
    bad = [b"not json", b'{"item_id": "x", "title": "X", "kind": "car"}']
    deleted = json.dumps({"item_id": first_id, "deleted": True}).encode()
    catalog.write_bytes(b"\n".join([*good, *bad, deleted]) + b"\n")
    flags = ["--broker", kafka_bootstrap, "--catalog-topic", default_topics["catalog"]]
    flags += ["--dlq-topic", default_topics["events.dlq"]]

    assert main(["catalog", "load", str(catalog), *flags]) == 1  # some lines were bad

    settings = settings_from_values(
        {"broker": kafka_bootstrap, "catalog_topic": default_topics["catalog"]}, {}
    )
    loaded, dead = read_catalog(settings)
    assert dead == []
    assert loaded.get(first_id) is None  # the tombstone removed it
    assert len(loaded) == len(good) - 1
    letters = [
        r.json() for r in read_topic(kafka_bootstrap, default_topics["events.dlq"], settle_s=2.0)
    ]
    assert [letter["error_code"] for letter in letters] == ["bad_catalog_item"] * 2
    assert all(letter["source"]["file"] == str(catalog) for letter in letters)
