"""The fence around Faust's internals (README in suppressor/adapters/faust_internals/).

The layer contracts themselves are import-linter's (``make lint``); what it cannot check is
who reaches into an external package's private parts, so this test does: no module outside
the fence imports the fragile parts of faust, mode or aiokafka, or names a private
attribute of theirs."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "suppressor"
FENCE = PACKAGE / "adapters" / "faust_internals"

FRAGILE_MODULES = (
    "faust.transport",
    "faust.stores",
    "faust.tables",
    "faust.web",
    "faust.sensors",
    "faust.worker",
    "mode.utils.queues",
    "mode.worker",
    "aiokafka.producer",
    "aiokafka.consumer",
)
PRIVATE_NAMES = {
    # faust
    "_transaction_producers", "_trn_locks", "_read_offset", "_new_consumer_thread",
    "_fetch_records", "_create_worker_consumer", "_wait_next_records", "_is_changelog_tp",
    "_ensure_consumer", "_committed_offset", "_on_partitions_revoked",
    "_on_partitions_assigned", "_active_partitions", "_paused_partitions", "_gap", "_acked",
    "_acked_index", "_new_producer", "_new_consumer", "_new_web", "_db_for_partition",
    "_visible_items", "_new_store", "_stream_label", "_clear_partition_related_metrics",
    "_schedule_shutdown",
    # aiokafka
    "_txn_manager", "_subscription", "_fetch_min_bytes", "_fetch_max_wait_ms",
    # mode
    "_suspend", "_resume",
}  # fmt: skip


def _outside_the_fence() -> list[Path]:
    return [path for path in PACKAGE.rglob("*.py") if FENCE not in path.parents]


def test_only_the_fence_imports_the_fragile_parts_of_faust_mode_and_aiokafka() -> None:
    found = []
    for path in _outside_the_fence():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [
                f"{path.relative_to(REPO)}: {name}"
                for name in names
                if name.startswith(FRAGILE_MODULES)
            ]
    assert found == []


def test_only_the_fence_names_a_private_attribute_of_faust_mode_or_aiokafka() -> None:
    found = []
    for path in _outside_the_fence():
        for node in ast.walk(ast.parse(path.read_text())):
            name = None
            if isinstance(node, ast.Attribute | ast.FunctionDef | ast.AsyncFunctionDef):
                name = node.attr if isinstance(node, ast.Attribute) else node.name
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value
            if name in PRIVATE_NAMES:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert found == []


def test_the_fence_has_a_readme_naming_every_module() -> None:
    readme = (FENCE / "README.md").read_text()
    for module in FENCE.glob("*.py"):
        if module.name != "__init__.py":
            assert f"`{module.name}`" in readme, module.name
