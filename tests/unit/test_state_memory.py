"""RocksDB memory of the worker's tables is bounded by a setting (issue 6, item 4: a burst
must not grow the worker by the size of the new users' states)."""

from __future__ import annotations

from pathlib import Path

from suppressor.adapters.app import CLOCK_MEMORY, build_app
from suppressor.adapters.settings import Settings
from suppressor.adapters.state import RocksTable
from suppressor.adapters.topology import CLOCK_TABLE, USERS_TABLE

MIB = 2**20


def _options(table: RocksTable) -> tuple[int, int, int]:
    options = table.store.rocksdb_options
    return options.write_buffer_size, options.max_write_buffer_number, options.block_cache_size


def test_each_table_partition_gets_the_configured_memory(tmp_path: Path) -> None:
    app = build_app(Settings(data_dir=tmp_path, state_memory=64))
    users, clocks = app.tables[USERS_TABLE], app.tables[CLOCK_TABLE]
    assert isinstance(users, RocksTable) and isinstance(clocks, RocksTable)
    assert _options(users) == (16 * MIB, 2, 32 * MIB)  # 2 write buffers of 1/4, cache of 1/2
    assert _options(clocks) == (CLOCK_MEMORY * MIB // 4, 2, CLOCK_MEMORY * MIB // 2)
