"""Faust's RocksDB table store, with per-partition access and dirty partitions wiped.

Local state written by an active worker can be ahead of the committed
changelog (a transaction aborted by ``kill -9``), and recovery here always
re-reads the changelog from its start (no persisted offsets, see
``set_persisted_offset``) over whatever is on disk. A partition this process
wrote to is therefore marked dirty, and a dirty partition is wiped when it is
next assigned: the changelog alone (read_committed) rebuilds it. Standby
replicas work, but a promoted standby re-reads the changelog like anyone else:
correct, not faster.

See README.md in this folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables.table import Table
from faust.types import TP, StoreT
from faust.types.tables import CollectionT
from yarl import URL


class PartitionedRocksDB(RocksDBStore):
    """Faust's RocksDB store plus explicit per-partition access and dirty-partition wiping."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._marked: set[int] = set()

    def persisted_offset(self, tp: TP) -> int | None:
        """Always recover from the start of the changelog (see set_persisted_offset)."""
        return None

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """Not kept: our own changelog writes never advance it, a wiped partition must
        start over, and with Faust's stale highwaters (see
        suppressor.adapters.faust_internals.consumer) it stopped
        workers with a ConsistencyError. The changelog is compacted: reading it from the
        start costs about one record per user."""

    def partition_db(self, partition: int) -> Any:
        return self._db_for_partition(partition)

    def visible_items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        return self._visible_items(self._db_for_partition(partition))

    def mark_dirty(self, partition: int) -> None:
        if partition not in self._marked:
            self._dirty_marker(partition).touch()
            self._marked.add(partition)

    async def assign_partitions(
        self, table: CollectionT, tps: set[TP], generation_id: int = 0
    ) -> None:
        standbys = self.app.assignor.assigned_standbys()
        for tp in tps:
            if tp.topic in table.changelog_topic.topics and tp not in standbys:
                self._wipe_if_dirty(tp.partition)
        await super().assign_partitions(table, tps, generation_id)

    def _wipe_if_dirty(self, partition: int) -> None:
        marker = self._dirty_marker(partition)
        if not marker.exists():
            return
        db = self._db_for_partition(partition)
        keys = list(db.keys())
        for key in keys:
            db.delete(key)
        self.log.info(
            "partition %d: wiped %d local keys, recovering from the changelog", partition, len(keys)
        )
        marker.unlink()
        self._marked.discard(partition)

    def _dirty_marker(self, partition: int) -> Path:
        path = self.partition_path(partition)
        return path.with_name(path.name + ".dirty")


class RocksTable(Table):
    """A Faust table on PartitionedRocksDB, raw bytes keys and values."""

    def _new_store(self) -> StoreT:
        return PartitionedRocksDB(
            URL("rocksdb://"),
            self.app,
            self,
            table_name=self.name,
            key_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            value_type=bytes,
            options=self.options,
        )

    @property
    def store(self) -> PartitionedRocksDB:
        data = self.data
        assert isinstance(data, PartitionedRocksDB)
        return data
