"""``python -m faults.poisoned_worker <worker args>``: the worker with one injected internal error.

The ``poison`` scenario needs a bug the product does not have: an exception while one
record is processed. Rather than a test hook in the product, this wrapper patches the
engine's per-event entry point, *before* the worker starts, to raise
``RuntimeError("injected fault")`` when handed the event whose ``event_id`` is in
``FAULTS_POISON_EVENT_ID``; everything else is the normal worker (``WORKER``), with the
same arguments and ``SUPPRESSOR_*`` settings. The patch raises before the engine touches
the user's state, so a worker that refuses the record (to the dead-letter topic) and goes
on holds the state it would hold had the event never been sent.

The names patched are the two below and nowhere else: when the product's modules move,
change them here. The wrapper refuses to start (exit status 3, a message on stderr) when
one of them is missing, rather than run a worker with no fault in it.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

PATCHED = ("suppressor.core.engine", "Engine", "ingest_in_place")
"""(module, class, method): called once per event as it reaches its user's state, with
the event (anything with an ``event_id`` attribute) among its arguments."""
WORKER = ("suppressor.entrypoints.worker", "main")
"""(module, function): the worker's entry point, ``main(argv) -> exit status``."""
POISON_ENV = "FAULTS_POISON_EVENT_ID"
MESSAGE = "injected fault"
"""The exception's text; the scenario finds it in the worker's log."""
FIRED = "faults.poisoned_worker: injected fault raised for the poisoned event"
"""Printed to stderr (the worker's log) each time the fault is raised."""


MISSING = 3
"""Exit status when a patched name is missing."""


class PatchTargetMissing(RuntimeError):
    pass


def _resolve(module_name: str, *attributes: str) -> tuple[Any, Any]:
    """(owner of the last attribute, its value); PatchTargetMissing names what is missing."""
    dotted = ".".join((module_name, *attributes))
    try:
        owner: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise PatchTargetMissing(
            f"faults.poisoned_worker: cannot import {module_name} ({error}); the product's "
            f"modules moved: update PATCHED/WORKER in faults/poisoned_worker.py"
        ) from error
    for number, name in enumerate(attributes):
        value = getattr(owner, name, None)
        if value is None:
            raise PatchTargetMissing(
                f"faults.poisoned_worker: {dotted} does not exist; the product changed: "
                f"update PATCHED/WORKER in faults/poisoned_worker.py"
            )
        if number < len(attributes) - 1:
            owner = value
    return owner, value


def poison(event_id: str) -> None:
    """Patch ``PATCHED`` to raise for the event with ``event_id``."""
    module_name, class_name, method_name = PATCHED
    owner, original = _resolve(module_name, class_name, method_name)
    if not callable(original):
        raise PatchTargetMissing(f"faults.poisoned_worker: {PATCHED} is not callable")

    def poisoned(*args: Any, **kwargs: Any) -> Any:
        for value in (*args, *kwargs.values()):
            if getattr(value, "event_id", None) == event_id:
                print(FIRED, file=sys.stderr, flush=True)
                raise RuntimeError(MESSAGE)
        return original(*args, **kwargs)

    setattr(owner, method_name, poisoned)


def main(argv: list[str] | None = None) -> int:
    event_id = os.environ.get(POISON_ENV)
    if not event_id:
        print(f"faults.poisoned_worker: set {POISON_ENV} to the event id to fail", file=sys.stderr)
        return 2
    try:
        poison(event_id)
        _, worker_main = _resolve(*WORKER)
    except PatchTargetMissing as missing:
        print(missing, file=sys.stderr)
        return MISSING
    run: Callable[[list[str]], int] = worker_main
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
