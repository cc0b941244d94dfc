"""Run the worker: ``suppressor worker``, ``python -m suppressor.entrypoints.worker`` or
the faust CLI.

    suppressor worker --broker localhost:9092 --policy policy.toml
    python -m suppressor.entrypoints.worker --broker localhost:9092   # without the CLI
    SUPPRESSOR_BROKER=localhost:9092 faust -A suppressor.entrypoints.worker:app worker -l info

The last form builds the app from ``SUPPRESSOR_*`` variables alone (this
module's ``app`` attribute is created on first access), for people who run
Faust apps with Faust's own command line. SIGTERM / SIGINT stop the worker
gracefully: the current transactions commit, the consumer group is left.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from suppressor.adapters.app import SuppressorApp, build_app, prepare_topics
from suppressor.adapters.faust_internals.worker import faust_worker
from suppressor.adapters.logs import redact_everywhere
from suppressor.adapters.observe import WorkerObserver
from suppressor.adapters.settings import (
    Settings,
    add_settings_arguments,
    settings_from_args,
    settings_from_env,
)
from suppressor.adapters.stopping import EXIT_FATAL, STOPPER
from suppressor.adapters.topology import Topology
from suppressor.core.errors import SuppressorError
from suppressor.core.policy import load_policy

_app: SuppressorApp | None = None


def run_worker(settings: Settings, observer: WorkerObserver | None = None) -> int:
    """Start the worker and block until it stops; the exit status.

    Bad settings, policy or topics raise SuppressorError before anything starts.
    """
    redact_everywhere(settings.secrets())
    policy = load_policy(settings.policy)
    prepare_topics(settings, Topology.from_settings(settings), policy)
    worker = faust_worker(build_app(settings, observer, policy), settings)
    try:
        worker.execute_from_commandline()
    except SystemExit as stopped:
        return EXIT_FATAL if STOPPER.cause is not None else _exit_status(stopped.code)
    return EXIT_FATAL if STOPPER.cause is not None else 0


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def __getattr__(name: str) -> Any:
    """``suppressor.entrypoints.worker:app`` for ``faust -A``: built once, from the environment."""
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        settings = settings_from_env()
        redact_everywhere(settings.secrets())
        _app = build_app(settings)
    return _app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m suppressor.entrypoints.worker",
        description="Run the Retarget Suppressor worker.",
    )
    add_settings_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_worker(settings_from_args(args))
    except SuppressorError as error:
        print(f"suppressor worker: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
