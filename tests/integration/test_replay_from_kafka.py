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
