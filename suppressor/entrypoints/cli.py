"""The `suppressor` console script (SPEC section 7)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO, TextIO

from suppressor.adapters.kafka_replay import (
    add_kafka_arguments,
    kafka_settings,
    ordered,
    read_catalog,
    read_range,
)
from suppressor.core.catalog import Catalog
from suppressor.core.errors import SuppressorError
from suppressor.core.policy import Policy, load_policy
from suppressor.core.replay.compare import compare, print_report
from suppressor.core.replay.files import load_catalog, numbered_lines, open_input
from suppressor.core.replay.report import print_report as print_conversion_report
from suppressor.core.replay.run import FileSink, Progress, replay
from suppressor.entrypoints.explain import add_explain
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="suppressor",
        description="Retarget Suppressor: emit only basket-recovery and similar-item actions.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_replay(commands)
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
    replay_cmd.add_argument("--policy", help="policy TOML file (default: built-in defaults)")
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
    if args.from_kafka:
        return _run_replay_from_kafka(args)
    if args.events is None:
        raise SuppressorError("replay: give an events file (or - for stdin), or --from-kafka")
    if args.since is not None:
        raise SuppressorError("replay: --since goes with --from-kafka")
    policy = load_policy(args.policy)
    catalog, bad_catalog = load_catalog(args.catalog)
    if args.compare:
        return _run_compare(args, policy, catalog)
    handle, size = open_input(args.events)
    with handle:
        return _replay_to_outputs(
            args, numbered_lines(handle), policy, catalog, bad_catalog, args.events, size
        )


def _run_replay_from_kafka(args: argparse.Namespace) -> int:
    if args.events is not None:
        raise SuppressorError("replay: give an events file or --from-kafka, not both")
    if args.since is None:
        raise SuppressorError("replay --from-kafka needs --since TS")
    if args.compare:
        raise SuppressorError("replay: --compare does not work with --from-kafka yet")
    if args.until is not None and args.until <= args.since:
        raise SuppressorError("replay: --until must be later than --since")
    policy = load_policy(args.policy)
    settings = kafka_settings(args)
    if args.catalog is None:
        catalog, bad_catalog = read_catalog(settings)
    else:
        catalog, bad_catalog = load_catalog(args.catalog)
    records = ordered(read_range(settings, args.since, args.until))
    return _replay_to_outputs(args, records, policy, catalog, bad_catalog, "kafka", None)


def _replay_to_outputs(
    args: argparse.Namespace,
    lines: Iterable[tuple[int | SourcePosition, bytes]],
    policy: Policy,
    catalog: Catalog,
    bad_catalog: list[DeadLetter],
    source_name: str,
    size: int | None,
) -> int:
    with (
        _binary_output(args.actions, sys.stdout.buffer) as actions,
        _binary_output(args.decisions) as decisions,
        _binary_output(args.dlq) as dlq,
        _binary_output(args.conversions) as conversions,
    ):
        sink = FileSink(actions, decisions, dlq, conversions)
        for dead in bad_catalog:
            sink.dead_letter(dead)
        tally = replay(
            lines,
            policy,
            catalog,
            sink,
            source_name=source_name,
            until=args.until,
            progress=Progress(size),
        )
    for dead in bad_catalog:
        tally.dlq[dead.error_code] += 1
    if not args.quiet:
        print(f"replay: {tally.summary_line()}", file=sys.stderr)
    if args.report:
        print_conversion_report(tally, sys.stderr if args.actions is None else sys.stdout)
    return 0


def _run_compare(args: argparse.Namespace, policy_a: Policy, catalog: Catalog) -> int:
    policy_b = load_policy(args.compare)

    def lines() -> Iterator[tuple[int, bytes]]:
        handle, _ = open_input(args.events)
        with handle:
            yield from numbered_lines(handle)

    if args.events == "-":
        data = sys.stdin.buffer.read().splitlines()
        kept = [(n, line) for n, line in enumerate(data, start=1) if line.strip()]
        lines = lambda: iter(kept)  # noqa: E731 - stdin can be read once only

    result = compare(lines, policy_a, policy_b, catalog, source_name=args.events, until=args.until)
    name_a = f"A {args.policy or 'defaults'}"[-30:]
    name_b = f"B {args.compare}"[-30:]
    with _output(args.diff) as diff:
        print_report(result, name_a, name_b, sys.stdout, diff)
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
