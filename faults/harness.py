"""The fault suite's plumbing: the broker, a scenario's context and outcome, the report.

See ``faults/__init__.py`` for how to write a scenario.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from tests.integration.worker_helpers import REPO, Deployment

Scale = Literal["small", "full"]

BROKER_PORT = 19792
CONTROLLER_PORT = 19793
"""The suite's own broker; never 9092/19092/19392, where other brokers run."""
VAR = REPO / "var" / "faults"
KAFKA_SCRIPT = REPO / "deploy" / "local" / "kafka"
REPORT = REPO / "RELIABILITY.md"


# --- the broker ---------------------------------------------------------------------------


class LocalBroker:
    """``deploy/local/kafka`` on the suite's port, with a fresh data dir."""

    def __init__(
        self, data_dir: Path, port: int = BROKER_PORT, controller_port: int = CONTROLLER_PORT
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.controller_port = controller_port
        self.bootstrap = f"localhost:{port}"

    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("KAFKA_") or key == "KAFKA_LIBS_DIR"
        }
        env.update(
            KAFKA_PORT=str(self.port),
            KAFKA_CONTROLLER_PORT=str(self.controller_port),
            KAFKA_DATA_DIR=str(self.data_dir),
            KAFKA_PYTHON=sys.executable,
            KAFKA_STOP_WITH_PID=str(os.getpid()),  # the broker goes when the suite is killed
        )
        return env

    def _script(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KAFKA_SCRIPT), command],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
        )

    def start(self) -> str:
        started = self._script("start")
        if started.returncode != 0:
            raise RuntimeError(
                f"the suite's broker did not start on port {self.port}:\n{started.stderr}"
            )
        return self.bootstrap

    def stop(self) -> None:
        self._script("stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self._script("status").returncode == 0


# --- a scenario's context and outcome -----------------------------------------------------


@dataclass
class Context:
    bootstrap: str
    broker: LocalBroker | None
    """None when the broker is not the suite's own (pytest's session broker)."""
    workdir: Path
    scale: Scale
    seed: int = 46
    log_sink: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr))

    def pick(self, *, small: Any, full: Any) -> Any:
        return full if self.scale == "full" else small

    def deployment(self, name: str = "d", **kwargs: Any) -> Deployment:
        """A Deployment with topics under a prefix no other run shares."""
        label = re.sub(r"[^a-zA-Z0-9_-]+", "-", f"{self.workdir.name}-{name}")[:60]
        prefix = f"f-{label}-{uuid.uuid4().hex[:8]}."
        return Deployment(self.bootstrap, prefix, self.workdir / name, **kwargs)

    def log(self, message: str) -> None:
        self.log_sink(f"faults[{self.workdir.name}] {time.strftime('%H:%M:%S')} {message}")


@dataclass
class Outcome:
    name: str
    passed: bool
    figures: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    notes: list[str] = field(default_factory=list)
    title: str = ""
    headline: str = ""
    """One short line for the summary table."""
    seconds: float = 0.0
    scale: str = ""
    date: str = ""


Scenario = Callable[[Context], Outcome]


def broker_port() -> int:
    """The suite's broker port: ``FAULTS_KAFKA_PORT``, else 19792 (two suites side by side
    on one machine need two ports; the controller takes the next one)."""
    return int(os.environ.get("FAULTS_KAFKA_PORT", BROKER_PORT))


def run_scenarios(
    scenarios: Sequence[tuple[str, Scenario]],
    scale: Scale,
    *,
    fresh: bool = True,
    port: int | None = None,
) -> list[Outcome]:
    """Start the broker (on ``port``, default ``broker_port()``), run each scenario (an
    exception is a failed outcome), stop it."""
    VAR.mkdir(parents=True, exist_ok=True)
    port = port or broker_port()
    data_dir = VAR / ("kafka" if port == BROKER_PORT else f"kafka-{port}")
    broker = LocalBroker(data_dir, port, port + 1)
    if fresh:
        broker.stop()  # a broker left over from a killed run
        shutil.rmtree(broker.data_dir, ignore_errors=True)
    outcomes: list[Outcome] = []
    try:
        print(f"faults: starting the suite's broker on port {broker.port}", file=sys.stderr)
        bootstrap = broker.start()
        for name, scenario in scenarios:
            workdir = VAR / name
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True)
            ctx = Context(bootstrap, broker, workdir, scale)
            started = time.monotonic()
            ctx.log(f"scenario {name} ({scale}) ...")
            try:
                outcome = scenario(ctx)
            except Exception as error:  # reported, and the next scenario still runs
                outcome = Outcome(
                    name,
                    False,
                    notes=[
                        f"the scenario raised {type(error).__name__}: {error}",
                        "```\n" + traceback.format_exc()[-3000:] + "\n```",
                    ],
                )
            outcome.seconds = round(time.monotonic() - started, 1)
            outcome.scale = scale
            outcome.date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            ctx.log(f"scenario {name}: {'PASS' if outcome.passed else 'FAIL'} {outcome.seconds}s")
            outcomes.append(outcome)
            if not broker.is_running():  # a scenario that stopped it must not break the next
                broker.start()
    finally:
        broker.stop()
        print("faults: broker stopped", file=sys.stderr)
    return outcomes


# --- RELIABILITY.md -------------------------------------------------------------------------

_MARK = re.compile(r"^<!-- scenario: (\S+) (\{.*\}) -->$", re.M)


def write_report(outcomes: Sequence[Outcome], order: Sequence[str], path: Path = REPORT) -> None:
    """Rewrite the report: this run's scenarios replace their sections; the sections of
    scenarios not run this time (``--only``) are kept as they were, with their own date."""
    sections: dict[str, tuple[dict[str, Any], str]] = {}
    if path.exists():
        sections.update(_parse_sections(path.read_text()))
    for outcome in outcomes:
        sections[outcome.name] = _render_section(outcome)
    names = [n for n in order if n in sections] + sorted(set(sections) - set(order))
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability",
        "",
        f"Written by `make faults` (`python -m faults`) on {now}, Python "
        f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores shared "
        "with other work, one local single-node Kafka 3.9 broker (KRaft, "
        f"`deploy/local/kafka`) started by the suite; code at {_revision()}.",
        "Each scenario runs real `python -m suppressor.entrypoints.worker` processes against "
        "that broker; "
        "its section says when and at what scale it last ran (`--only` reruns one and keeps "
        "the others' sections). A scenario passes only when every check in its method held.",
        "",
        "| scenario | result | scale | run | in short |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        meta, _ = sections[name]
        lines.append(
            f"| [{name}](#{name}) | {'pass' if meta['passed'] else '**FAIL**'} | "
            f"{meta['scale']} | {meta['date']}, {meta['seconds']} s | {meta['headline']} |"
        )
    lines.append("")
    for name in names:
        lines.append(sections[name][1].rstrip() + "\n")
    path.write_text("\n".join(lines))


def _revision() -> str:
    """The commit, and the files changed since it, if any (others may be editing)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
    except OSError:
        return "an unknown revision"
    dirty = sorted(line[3:] for line in changed if line.strip() and line[3:].endswith(".py"))
    return f"`{commit}`" + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")


def _render_section(outcome: Outcome) -> tuple[dict[str, Any], str]:
    meta = {
        "passed": outcome.passed,
        "scale": outcome.scale,
        "date": outcome.date,
        "seconds": outcome.seconds,
        "headline": outcome.headline.replace("|", "/"),
    }
    title = outcome.title or outcome.name
    lines = [
        f"<!-- scenario: {outcome.name} {json.dumps(meta)} -->",
        f'<a id="{outcome.name}"></a>',
        f"## {title}: {'pass' if outcome.passed else 'FAIL'}",
        "",
        f"`python -m faults --only {outcome.name} --scale {outcome.scale}` on {outcome.date}, "
        f"{outcome.seconds} s.",
        "",
    ]
    if outcome.figures:
        lines += ["| figure | value |", "|---|---:|"]
        for label, value in outcome.figures.items():
            lines.append(f"| {label} | {_cell(value)} |")
        lines.append("")
    if outcome.notes:
        lines += ["**Findings and notes**", ""]
        lines += [f"- {note}" if not note.startswith("```") else note for note in outcome.notes]
        lines.append("")
    if outcome.method:
        lines += ["### Method", "", outcome.method.strip(), ""]
    return meta, "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value).replace("|", "/")


def _parse_sections(text: str) -> dict[str, tuple[dict[str, Any], str]]:
    marks = list(_MARK.finditer(text))
    sections: dict[str, tuple[dict[str, Any], str]] = {}
    for number, mark in enumerate(marks):
        end = marks[number + 1].start() if number + 1 < len(marks) else len(text)
        sections[mark.group(1)] = (json.loads(mark.group(2)), text[mark.start() : end])
    return sections
