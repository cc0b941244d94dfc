"""The `suppressor` console script (SPEC section 7)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from suppressor.adapters.kafka_replay import (
    RangeReader,
    add_kafka_arguments,
    as_line,
    kafka_settings,
    read_catalog,
)
from suppressor.adapters.settings import OPTIONS, Settings
from suppressor.core.catalog import Catalog
from suppressor.core.errors import SuppressorError
from suppressor.core.policy import Policy, load_policy
from suppressor.core.replay.compare import compare, print_report
from suppressor.core.replay.files import load_catalog, numbered_lines, open_input
from suppressor.core.replay.parallel import MAX_JOBS, replay_parallel
from suppressor.core.replay.report import print_report as print_conversion_report
from suppressor.core.replay.run import FileSink, replay
from suppressor.core.tally import Tally
from suppressor.entrypoints.explain import add_explain
from suppressor.entrypoints.progress import Bar
from suppressor.wire.outputs import DeadLetter, SourcePosition
from suppressor.wire.timefmt import parse_to_ms


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except SuppressorError as error:
        print(f"suppressor: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


POLICY_ENV = next(option.env for option in OPTIONS if option.field == "policy")


def package_version() -> str:
    try:
        return version("retarget-suppressor")
    except PackageNotFoundError:  # pragma: no cover - running from a tree not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="suppressor",
        description="Retarget Suppressor: emit only basket-recovery and similar-item actions.",
    )
    parser.add_argument("--version", action="version", version=f"suppressor {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_replay(commands)
    _add_catalog(commands)
    add_explain(commands)
    _add_schemas(commands)
    _add_topics(commands)
    _add_worker(commands)
    return parser


# --- replay ------------------------------------------------------------------------


def _add_replay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay_cmd = commands.add_parser(
        "replay",
        help="run a JSONL event history (or a time range of the input topics) through the engine",
        description="Run events through the same engine as the worker, deterministically. "
        "Bad lines go to --dlq and the run goes on.",
    )
    replay_cmd.add_argument(
        "events", nargs="?", help="events JSONL file, or - for stdin (not with --from-kafka)"
    )
    replay_cmd.add_argument(
        "--catalog", help="catalog JSONL file (with --from-kafka, default: the catalog topic)"
    )
    replay_cmd.add_argument(
        "--policy", help=f"policy TOML file (env {POLICY_ENV}; default: built-in defaults)"
    )
    replay_cmd.add_argument("--actions", help="write actions here (default: stdout)")
    replay_cmd.add_argument("--decisions", help="write one decision per trigger here")
    replay_cmd.add_argument("--dlq", help="write bad input lines here, with line and error code")
    replay_cmd.add_argument(
        "--conversions", help="write a record per closed attribution window here"
    )
    replay_cmd.add_argument(
        "--report",
        action="store_true",
        help="print conversion rates, treated vs holdout, with the lift's 95%% interval",
    )
    replay_cmd.add_argument(
        "--until", type=_timestamp, help="after the input, advance stream time to TS (RFC 3339)"
    )
    replay_cmd.add_argument(
        "--compare", metavar="POLICY_B", help="what-if: compare --policy with POLICY_B"
    )
    replay_cmd.add_argument("--diff", help="with --compare: write the differing users here")
    replay_cmd.add_argument("--quiet", action="store_true", help="no summary on stderr")
    replay_cmd.add_argument(
        "--summary-json", metavar="FILE", help="write the closing summary here as JSON"
    )
    replay_cmd.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run on N processes, users split by a hash of user_id; the same bytes as one "
        "(a file, not with --compare or --from-kafka)",
    )
    replay_cmd.add_argument(
        "--from-kafka",
        action="store_true",
        help="read the input topics' records with Kafka timestamps in [--since, --until) "
        "instead of a file; outputs still go to files/stdout, never to Kafka",
    )
    replay_cmd.add_argument(
        "--since", type=_timestamp, help="with --from-kafka (required): start of the range"
    )
    add_kafka_arguments(replay_cmd)
    replay_cmd.set_defaults(run=_run_replay)


def _timestamp(text: str) -> int:
    try:
        return parse_to_ms(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _run_replay(args: argparse.Namespace) -> int:
    if args.jobs < 1 or args.jobs > MAX_JOBS:
        raise SuppressorError(f"replay: --jobs must be 1 to {MAX_JOBS}, got {args.jobs}")
    if args.from_kafka:
        return _run_replay_from_kafka(args)
    if args.events is None:
        raise SuppressorError("replay: give an events file (or - for stdin), or --from-kafka")
    if args.since is not None:
        raise SuppressorError("replay: --since goes with --from-kafka")
    policy = _replay_policy(args)
    catalog, bad_catalog = load_catalog(args.catalog)
    if args.events == "-" and (args.compare or args.jobs > 1):
        with tempfile.TemporaryDirectory(prefix="replay-stdin-") as tmp:
            args.events = str(Path(tmp) / "stdin.jsonl")  # read twice: kept in a file
            with open(args.events, "wb") as spool:
                shutil.copyfileobj(sys.stdin.buffer, spool)
            return _run_file(args, policy, catalog, bad_catalog, source_name="-")
    return _run_file(args, policy, catalog, bad_catalog, source_name=args.events)


def _run_file(
    args: argparse.Namespace,
    policy: Policy,
    catalog: Catalog,
    bad_catalog: list[DeadLetter],
    source_name: str,
) -> int:
    if args.compare:
        if args.jobs > 1:
            raise SuppressorError("replay: --compare runs one process (leave out --jobs)")

        def lines() -> Iterator[tuple[int, bytes]]:
            handle, _ = open_input(args.events)
            with handle:
                yield from numbered_lines(handle)

        file_size = Path(args.events).stat().st_size
        return _run_compare(args, policy, catalog, lines, file_size, "B", source_name)
    handle, size = open_input(args.events)
    started = time.monotonic()
    with handle, _outputs(args, bad_catalog) as sink:
        if args.jobs > 1:
            assert size is not None
            total = size * (1 + args.jobs)  # the scan, then every job reads the whole file
            with Bar(f"replay ({args.jobs} jobs)", total, "B") as bar:
                tally = replay_parallel(
                    args.events, policy, catalog, sink, jobs=args.jobs, until=args.until,
                    progress=bar, source_name=source_name,
                )  # fmt: skip
        else:
            with Bar("replay", size, "B") as bar:
                tally = replay(
                    numbered_lines(handle), policy, catalog, sink, source_name=source_name,
                    until=args.until, progress=bar,
                )  # fmt: skip
    return _close_replay(args, tally, bad_catalog, started, source_name)


def _run_replay_from_kafka(args: argparse.Namespace) -> int:
    if args.events is not None:
        raise SuppressorError("replay: give an events file or --from-kafka, not both")
    if args.since is None:
        raise SuppressorError("replay --from-kafka needs --since TS")
    if args.until is not None and args.until <= args.since:
        raise SuppressorError("replay: --until must be later than --since")
    if args.jobs > 1:
        raise SuppressorError("replay: --jobs works on a file; --from-kafka runs one process")
    policy = _replay_policy(args)
    settings = kafka_settings(args)
    if args.catalog is None:
        catalog, bad_catalog = read_catalog(settings)
    else:
        catalog, bad_catalog = load_catalog(args.catalog)
    reader = RangeReader(settings, args.since, args.until)
    if args.compare:
        return _compare_from_kafka(args, policy, catalog, settings, reader)
    started = time.monotonic()
    try:
        with _outputs(args, bad_catalog) as sink, _kafka_bar("replay from Kafka", reader) as bar:
            lines = (as_line(record) for record in reader.records(bar.advance))
            tally = replay(lines, policy, catalog, sink, source_name="kafka", until=args.until)
    finally:
        reader.close()
    return _close_replay(args, tally, bad_catalog, started, "kafka")


def _compare_from_kafka(
    args: argparse.Namespace,
    policy: Policy,
    catalog: Catalog,
    settings: Settings,
    first: RangeReader,
) -> int:
    """The range is read twice, streaming, once per policy: the second read takes the
    offsets of the first, so both see the same records whatever is written meanwhile."""
    readers = [first]

    def lines() -> Iterator[tuple[SourcePosition, bytes]]:
        reader = (
            readers.pop()
            if readers
            else RangeReader(settings, args.since, args.until, bounds=first)
        )
        try:
            with _kafka_bar("compare from Kafka", reader) as bar:
                yield from (as_line(record) for record in reader.records(bar.advance))
        finally:
            reader.close()

    return _run_compare(args, policy, catalog, lines, None, "", "kafka")


def _kafka_bar(desc: str, reader: RangeReader) -> Bar:
    bar = Bar(desc, reader.total, " offsets")
    bar.note(partitions=reader.partitions)
    return bar


def _replay_policy(args: argparse.Namespace) -> Policy:
    """``--policy``, else ``SUPPRESSOR_POLICY`` (as the worker), else the defaults."""
    return load_policy(args.policy or os.environ.get(POLICY_ENV) or None)


@contextlib.contextmanager
def _outputs(args: argparse.Namespace, bad_catalog: list[DeadLetter]) -> Iterator[FileSink]:
    with (
        _binary_output(args.actions, sys.stdout.buffer) as actions,
        _binary_output(args.decisions) as decisions,
        _binary_output(args.dlq) as dlq,
        _binary_output(args.conversions) as conversions,
    ):
        sink = FileSink(actions, decisions, dlq, conversions)
        for dead in bad_catalog:
            sink.dead_letter(dead)
        yield sink


def _close_replay(
    args: argparse.Namespace,
    tally: Tally,
    bad_catalog: list[DeadLetter],
    started: float,
    source_name: str,
) -> int:
    for dead in bad_catalog:
        tally.dlq[dead.error_code] += 1
    if not args.quiet:
        print(f"replay: {tally.summary_line()}", file=sys.stderr)
    if args.report:
        print_conversion_report(tally, sys.stderr if args.actions is None else sys.stdout)
    summary = {"input": source_name, "jobs": args.jobs, **tally.as_dict()}
    _write_summary(args, summary, started)
    return 0


def _write_summary(args: argparse.Namespace, summary: dict[str, Any], started: float) -> None:
    if args.summary_json is None:
        return
    summary = {**summary, "seconds": round(time.monotonic() - started, 3)}
    with _output(args.summary_json) as out:
        assert out is not None
        json.dump(summary, out, indent=2)
        out.write("\n")


def _run_compare(
    args: argparse.Namespace,
    policy_a: Policy,
    catalog: Catalog,
    lines: Callable[[], Iterable[tuple[int, bytes]] | Iterable[tuple[SourcePosition, bytes]]],
    size: int | None,
    unit: str,
    source_name: str,
) -> int:
    policy_b = load_policy(args.compare)
    started = time.monotonic()

    def metered(label: str) -> Callable[[], Iterator[tuple[int | SourcePosition, bytes]]]:
        def read() -> Iterator[tuple[int | SourcePosition, bytes]]:
            if unit != "B":  # Kafka: the reader draws its own bar
                yield from lines()
                return
            with Bar(f"compare ({label})", size, unit) as bar:
                for number, raw in lines():
                    bar.advance(len(raw) + 1)
                    yield number, raw

        return read

    result = compare(
        metered("A"), policy_a, policy_b, catalog, source_name=source_name, until=args.until,
        second=metered("B"),
    )  # fmt: skip
    name_a = f"A {args.policy or os.environ.get(POLICY_ENV) or 'defaults'}"[-30:]
    name_b = f"B {args.compare}"[-30:]
    with _output(args.diff) as diff:
        print_report(result, name_a, name_b, sys.stdout, diff)
    summary = {
        "input": source_name,
        "a": result.a.as_dict(),
        "b": result.b.as_dict(),
        "users_whose_actions_differ": len(result.differing),
    }
    _write_summary(args, summary, started)
    return 0


@contextlib.contextmanager
def _binary_output(path: str | None, default: BinaryIO | None = None) -> Iterator[BinaryIO | None]:
    if path is None:
        yield default
        if default is not None:
            default.flush()
        return
    try:
        handle = open(path, "wb")  # noqa: SIM115
    except OSError as error:
        raise SuppressorError(f"{path}: cannot write: {error.strerror}") from None
    with handle:
        yield handle


@contextlib.contextmanager
def _output(path: str | None, default: TextIO | None = None) -> Iterator[TextIO | None]:
    if path is None:
        yield default
        return
    try:
        handle = open(path, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as error:
        raise SuppressorError(f"{path}: cannot write: {error.strerror}") from None
    with handle:
        yield handle


# --- catalog load --------------------------------------------------------------------


def _add_catalog(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser("catalog", help="put a catalog file on the catalog topic")
    actions = cmd.add_subparsers(dest="catalog_command", required=True, metavar="ACTION")
    load = actions.add_parser(
        "load",
        help="put a catalog JSONL file on the catalog topic, validated as the worker does",
        description="Put each item of a catalog JSONL file on the catalog topic, keyed by "
        'its item_id. A line {"item_id": ID, "deleted": true} sends a tombstone for ID. '
        "A line the worker would refuse goes to the dead-letter topic (or --dlq FILE) "
        "with the worker's error code, and the rest is loaded.",
    )
    load.add_argument("file", help="catalog JSONL file, or - for stdin")
    load.add_argument("--dlq", help="write bad lines here instead of the dead-letter topic")
    _add_settings(load)
    load.set_defaults(run=_run_catalog_load)


def _run_catalog_load(args: argparse.Namespace) -> int:
    from suppressor.adapters.feed import load_catalog_file
    from suppressor.adapters.settings import settings_from_args

    settings = settings_from_args(args)
    with _binary_output(args.dlq) as dlq:
        report = load_catalog_file(
            settings.bootstrap_servers, args.file, settings.catalog_topic,
            dlq_topic=settings.dlq_topic, dlq_file=dlq,
            client_config=settings.kafka_client_config(),
        )  # fmt: skip
    where = args.dlq or settings.dlq_topic
    print(
        f"catalog: {report.items} items and {report.tombstones} tombstones to "
        f"{settings.catalog_topic}, {report.dead_letters} bad lines to {where}",
        file=sys.stderr,
    )
    return 1 if report.dead_letters else 0


# --- schemas, topics, worker ------------------------------------------------------------


def _add_schemas(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser("schemas", help="write the JSON Schema of every record")
    cmd.add_argument("--out", help="directory (default: suppressor/wire/json in the source tree)")
    cmd.set_defaults(run=_run_schemas)


def _run_schemas(args: argparse.Namespace) -> int:
    from pathlib import Path

    from suppressor.wire.jsonschema import JSON_DIR, write_all

    for path in write_all(Path(args.out) if args.out else JSON_DIR):
        print(path)
    return 0


def _add_topics(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "topics", help="create the topics (inputs co-partitioned, catalog compacted)"
    )
    _add_settings(cmd)
    cmd.set_defaults(run=_run_topics)


def _add_worker(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser("worker", help="run the Faust worker")
    _add_settings(cmd)
    cmd.set_defaults(run=_run_worker)


def _add_settings(cmd: argparse.ArgumentParser) -> None:
    from suppressor.adapters.settings import add_settings_arguments

    add_settings_arguments(cmd)


def _run_topics(args: argparse.Namespace) -> int:
    from suppressor.adapters.admin import ensure_topics, list_topics
    from suppressor.adapters.settings import settings_from_args
    from suppressor.adapters.topology import Topology

    settings = settings_from_args(args)
    bootstrap = settings.bootstrap_servers
    specs = Topology.from_settings(settings).user_topic_specs()
    created = set(ensure_topics(bootstrap, specs, client_config=settings.kafka_client_config()))
    existing = list_topics(bootstrap, client_config=settings.kafka_client_config())
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        compacted = " compacted" if spec.compacted else ""
        print(f"{state:8} {spec.name} ({existing.get(spec.name, '?')} partitions{compacted})")
    return 0


def _run_worker(args: argparse.Namespace) -> int:
    from suppressor.adapters.settings import settings_from_args
    from suppressor.entrypoints.worker import run_worker

    return run_worker(settings_from_args(args))


if __name__ == "__main__":
    sys.exit(main())
