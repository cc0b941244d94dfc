"""The worker's topics: the configured ones and the internal ones named after the app id.

Every topic has the same partition count, so partition number p of every input
topic, of the internal topics and of the state changelogs is one unit of work
(one user set, one stream time, one transaction).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka.partitioner import murmur2

from suppressor.adapters.admin import TopicSpec, default_topic_specs
from suppressor.adapters.settings import Settings

DAY_MS = 86_400_000

CHANGELOG_MAX_MESSAGE_BYTES = 8 * 2**20
"""``max.message.bytes`` of the changelog topics the worker creates: four times the largest
user state the default state limits allow (suppressor.core.codec.worst_case_state_bytes)."""

USERS_TABLE = "users"
CLOCK_TABLE = "stream_clock"

INTERNAL_RETENTION_MS = {
    "repartition": 7 * 24 * 3600 * 1000,  # like an input topic: a backlog must survive downtime
    "ticks": 3600 * 1000,  # a tick is only a wake-up call
}


@dataclass(frozen=True)
class Topology:
    inputs: tuple[str, ...]
    repartition: str
    ticks: str
    catalog: str
    actions: str
    decisions: str
    conversions: str
    dlq: str
    partitions: int
    app_id: str
    changelog_compaction_lag_ms: int = 7 * DAY_MS
    dlq_retention_ms: int = 7 * DAY_MS
    decisions_retention_ms: int = 30 * DAY_MS

    @classmethod
    def from_settings(cls, settings: Settings) -> Topology:
        return cls(
            inputs=settings.input_topics,
            repartition=f"{settings.app_id}-events-by-user",
            ticks=f"{settings.app_id}-ticks",
            catalog=settings.catalog_topic,
            actions=settings.actions_topic,
            decisions=settings.decisions_topic,
            conversions=settings.conversions_topic,
            dlq=settings.dlq_topic,
            partitions=settings.partitions,
            app_id=settings.app_id,
            changelog_compaction_lag_ms=settings.changelog_compaction_lag,
            dlq_retention_ms=settings.dlq_retention,
            decisions_retention_ms=settings.decisions_retention,
        )

    @property
    def data_topics(self) -> tuple[str, ...]:
        """Topics whose records carry events: the inputs and the repartitioned copies."""
        return (*self.inputs, self.repartition)

    @property
    def consumed(self) -> tuple[str, ...]:
        """What the agent reads: the inputs, the repartition topic, the ticks."""
        return (*self.inputs, self.repartition, self.ticks)

    def source(self, partition: int) -> str:
        """The clock's name for repartitioned events coming from ``partition``."""
        return f"{self.repartition}/{partition}"

    def clock_topics(self, partition: int) -> tuple[str, ...]:
        """What partition ``partition``'s stream time is the minimum over: its inputs and
        every other partition forwarding to it (a partition never forwards to itself)."""
        others = (self.source(q) for q in range(self.partitions) if q != partition)
        return (*self.inputs, *others)

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.actions, self.decisions, self.conversions, self.dlq)

    def user_topic_specs(self) -> list[TopicSpec]:
        """The topics ``suppressor topics`` creates. The dead letters (copies of bad input,
        personal data included) and the decisions (every user's suppressions) are kept for
        a set time (``dlq_retention``, ``decisions_retention``)."""
        retention = {
            self.dlq: self.dlq_retention_ms,
            self.decisions: self.decisions_retention_ms,
        }
        return [
            TopicSpec(spec.name, spec.partitions, spec.compacted, {"retention.ms": str(kept)})
            if (kept := retention.get(spec.name)) is not None
            else spec
            for spec in default_topic_specs(
                self.inputs, self.catalog, self.outputs, self.partitions
            )
        ]

    def changelog(self, table: str) -> str:
        """Faust's name for a table's changelog topic."""
        return f"{self.app_id}-{table}-changelog"

    def internal_topic_specs(self) -> list[TopicSpec]:
        """Created by the worker at start, with the broker's default replication (Faust
        would create the changelogs with one replica)."""
        return [
            *(
                TopicSpec(name, self.partitions, config={"retention.ms": str(retention)})
                for name, retention in (
                    (self.repartition, INTERNAL_RETENTION_MS["repartition"]),
                    (self.ticks, INTERNAL_RETENTION_MS["ticks"]),
                )
            ),
            *(
                TopicSpec(
                    self.changelog(table),
                    self.partitions,
                    compacted=True,
                    config=self.changelog_config(),
                )
                for table in (USERS_TABLE, CLOCK_TABLE)
            ),
        ]

    def changelog_config(self) -> dict[str, str]:
        """Erasure that completes on disk: a ``forget``'s tombstone replaces the user's
        states in the changelog once compaction runs, and ``max.compaction.lag.ms`` (with a
        segment rolled as often, since the active segment is never compacted) bounds
        when that is; the tombstone itself goes ``delete.retention.ms`` later. Records up
        to CHANGELOG_MAX_MESSAGE_BYTES hold the largest state the limits allow."""
        lag = str(self.changelog_compaction_lag_ms)
        return {
            "max.compaction.lag.ms": lag,
            "segment.ms": lag,
            "delete.retention.ms": str(DAY_MS),
            "max.message.bytes": str(CHANGELOG_MAX_MESSAGE_BYTES),
        }

    def one_user_per_partition(self, prefix: str) -> list[str]:
        """``prefix-N`` user ids, the first found on each partition, in partition order."""
        found: dict[int, str] = {}
        number = 0
        while len(found) < self.partitions:
            user = f"{prefix}-{number}"
            found.setdefault(self.partition_for(user), user)
            number += 1
        return [found[p] for p in sorted(found)]

    def partition_for(self, user_id: str) -> int:
        """The partition a producer keying by user_id puts the user on (Kafka's murmur2)."""
        return (murmur2(user_id.encode()) & 0x7FFFFFFF) % self.partitions
