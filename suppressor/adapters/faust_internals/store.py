"""Faust's RocksDB table store, with per-partition access and a checkpoint.

The worker writes a partition's users to RocksDB only once their changelog records are
committed (``suppressor.adapters.state.PartitionKV``), in one WriteBatch with the offset of
the last of them: the local store never holds what the committed changelog does not, and
that offset (Faust's own key for it, ``persisted_offset``) says where a restart resumes
reading the changelog. A graceful restart, a ``kill -9``, a partition coming back after a
rebalance: each reads only the changelog's tail since its checkpoint, not the whole of
it. Recovery (Faust's, and ``consumer.Consumer``'s batch restore) writes the changelog's
records with their offset the same way. With no checkpoint the whole changelog is read.

Faust's ``persisted_offset`` returns None for none; here -1: Faust's recovery seeks a
standby partition added while it restarts to its offset, and None made aiokafka refuse
("Offset must be a positive integer", the fault suite's storm with a standby replica).

A partition written by the code before checkpoints (marked ``<partition>.dirty``) is
wiped when it is next assigned, as that code did: its local state may be ahead of the
changelog.

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

CHECKPOINT_KEY = RocksDBStore.offset_key
"""Where a partition's database keeps the changelog offset it holds everything up to."""


class PartitionedRocksDB(RocksDBStore):
    """Faust's RocksDB store plus explicit per-partition access and a checkpoint."""

    def persisted_offset(self, tp: TP) -> int:
        """The changelog offset this partition's database holds everything up to; -1 for
        none (read the whole changelog)."""
        found = super().persisted_offset(tp)
        return -1 if found is None else found

    def partition_db(self, partition: int) -> Any:
        return self._db_for_partition(partition)

    def visible_items(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        return self._visible_items(self._db_for_partition(partition))

    async def assign_partitions(
        self, table: CollectionT, tps: set[TP], generation_id: int = 0
    ) -> None:
        standbys = self.app.assignor.assigned_standbys()
        for tp in tps:
            if tp.topic in table.changelog_topic.topics and tp not in standbys:
                self._wipe_if_dirty(tp.partition)
        await super().assign_partitions(table, tps, generation_id)

    def _wipe_if_dirty(self, partition: int) -> None:
        """A partition written by the code before checkpoints: rebuilt from the changelog."""
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
