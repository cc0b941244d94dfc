"""Topic administration: the product's topics with the right partitions and cleanup policies.

Errors raised here (kafka-python's own errors are converted at this boundary)::

    TopicAdminError            anything that stops topic administration
     ├── BrokerUnavailable     no broker answered within the timeout
     └── TopicMismatch         an existing topic differs from its spec

Every topic gets the same partition count, the catalog included. Faust refuses
to update a table from a topic whose partition count differs from the table's
changelog (``PartitionsMismatch``), and co-partitioned inputs must agree anyway;
a catalog fed into a table from its own topic meets the same check.

Replication follows the broker's ``default.replication.factor`` (1 on the
local broker, typically 3 on a real cluster).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from suppressor.core.errors import SuppressorError

log = logging.getLogger(__name__)

CLIENT_ID = "retarget-suppressor-admin"
_LEGAL_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
_USE_BROKER_DEFAULT = -1


class TopicAdminError(SuppressorError):
    """Topic administration failed; the message names the topic or setting and the fix."""


class BrokerUnavailable(TopicAdminError):
    """No Kafka broker could be reached within the timeout."""


class TopicMismatch(TopicAdminError):
    """An existing topic differs from its spec in a way a worker cannot live with."""

    def __init__(self, topic: str, setting: str, existing: object, wanted: object, fix: str):
        self.topic = topic
        self.setting = setting
        self.existing = existing
        self.wanted = wanted
        super().__init__(
            f"topic {topic!r} exists with {setting} {existing}, but {wanted} is configured. {fix}"
        )


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the product needs it; ``compacted`` sets ``cleanup.policy=compact``."""

    name: str
    partitions: int
    compacted: bool = False
    config: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not _LEGAL_TOPIC_NAME.match(self.name) or self.name in {".", ".."}:
            raise ValueError(
                f"topic name {self.name!r} is not legal in Kafka: use 1-249 of a-z A-Z 0-9 . _ -"
            )
        if self.partitions < 1:
            raise ValueError(f"topic {self.name!r}: partitions must be >= 1, got {self.partitions}")
        if self.compacted and self.config.get("cleanup.policy", "compact") != "compact":
            raise ValueError(
                f"topic {self.name!r}: compacted=True contradicts "
                f"cleanup.policy={self.config['cleanup.policy']!r} in config"
            )

    def topic_config(self) -> dict[str, str]:
        """The topic-level settings to create it with."""
        config = dict(self.config)
        if self.compacted:
            config["cleanup.policy"] = "compact"
        return config

    @property
    def cleanup_policy(self) -> frozenset[str]:
        return _policy_set(self.topic_config().get("cleanup.policy", "delete"))


def default_topic_specs(
    inputs: Sequence[str], catalog: str, outputs: Sequence[str], partitions: int
) -> list[TopicSpec]:
    """Inputs, the compacted catalog and the outputs, all with ``partitions`` partitions."""
    return [
        *(TopicSpec(name, partitions) for name in inputs),
        TopicSpec(catalog, partitions, compacted=True),
        *(TopicSpec(name, partitions) for name in outputs),
    ]


def bootstrap_servers(broker: str) -> list[str]:
    """``host:port`` list from a faust-style broker URL (``kafka://a:9092;kafka://b:9092``)."""
    servers = [
        re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", part.strip()).rstrip("/")
        for part in re.split(r"[;,]", broker)
    ]
    servers = [server for server in servers if server]
    if not servers:
        raise TopicAdminError(f"broker address {broker!r} names no host: use e.g. localhost:9092")
    return servers


def ensure_topics(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    client_config: Mapping[str, object] | None = None,
    timeout_s: float = 30,
) -> list[str]:
    """Create the topics of ``specs`` that do not exist yet and return their names.

    Existing topics are left alone, so running it twice is safe; but an existing
    topic with another partition count or cleanup policy raises ``TopicMismatch``
    before anything is created. ``client_config`` carries the Kafka client's
    security settings (``security_protocol``, ``sasl_*``, ``ssl_*``) as
    kafka-python's ``KafkaAdminClient`` names them. ``timeout_s`` bounds each
    round trip to the cluster.
    """
    wanted = _unique_specs(specs)
    if not wanted:
        return []
    with _admin(bootstrap, client_config, timeout_s) as admin:
        existing = _partition_counts(admin, list(wanted))
        _check_existing(admin, [wanted[name] for name in existing], existing)
        missing = [spec for name, spec in wanted.items() if name not in existing]
        if not missing:
            return []
        created, raced = _create(admin, missing, timeout_s)
        if raced:  # someone else created them meanwhile: they must still fit
            _check_existing(admin, raced, _partition_counts(admin, [s.name for s in raced]))
        return created


def list_topics(
    bootstrap: str,
    client_config: Mapping[str, object] | None = None,
    *,
    include_internal: bool = False,
    timeout_s: float = 30,
) -> dict[str, int]:
    """Topic name → partition count, without Kafka's internal topics unless asked."""
    with _admin(bootstrap, client_config, timeout_s) as admin:
        return _partition_counts(admin, None, include_internal=include_internal)


def topic_configs(
    bootstrap: str,
    topics: Sequence[str],
    client_config: Mapping[str, object] | None = None,
    timeout_s: float = 30,
) -> dict[str, dict[str, str]]:
    """Every effective setting of existing topics, by name (missing ones left out)."""
    with _admin(bootstrap, client_config, timeout_s) as admin:
        present = list(_partition_counts(admin, list(topics)))
        return _topic_configs(admin, present) if present else {}


def topic_config(
    bootstrap: str,
    topic: str,
    client_config: Mapping[str, object] | None = None,
    timeout_s: float = 30,
) -> dict[str, str]:
    """Every effective setting of one topic (``cleanup.policy``, ``retention.ms``, ...)."""
    with _admin(bootstrap, client_config, timeout_s) as admin:
        if topic not in _partition_counts(admin, [topic]):
            raise TopicAdminError(f"topic {topic!r} does not exist at {bootstrap}")
        return _topic_configs(admin, [topic])[topic]


# --- the kafka-python boundary ------------------------------------------------------


@contextmanager
def _admin(
    bootstrap: str, client_config: Mapping[str, object] | None, timeout_s: float
) -> Iterator[Any]:
    timeout_ms = max(1, int(timeout_s * 1000))
    config: dict[str, object] = {
        "client_id": CLIENT_ID,
        "bootstrap_timeout_ms": timeout_ms,
        "request_timeout_ms": timeout_ms,
    }
    config.update({key: _plain(value) for key, value in (client_config or {}).items()})
    if "bootstrap_servers" in config:
        raise TopicAdminError("client_config must not set bootstrap_servers: pass it as bootstrap")
    servers = bootstrap_servers(bootstrap)
    try:
        admin = KafkaAdminClient(bootstrap_servers=servers, **config)
    except kafka_errors.KafkaConfigurationError as exc:
        raise TopicAdminError(f"Kafka client settings: {exc}") from exc
    except (kafka_errors.KafkaError, OSError) as exc:
        raise BrokerUnavailable(
            f"no Kafka broker answered at {','.join(servers)} within {timeout_s:g}s ({exc}). "
            "Is it running (deploy/local/kafka start for a local one) and are the address "
            "and the security settings right?"
        ) from exc
    try:
        with _converted_errors(bootstrap):
            yield admin
    finally:
        admin.close()


def _plain(value: object) -> object:
    """Unwrap pydantic ``SecretStr`` values: kafka-python wants the plain string."""
    get_secret = getattr(value, "get_secret_value", None)
    return get_secret() if callable(get_secret) else value


@contextmanager
def _converted_errors(bootstrap: str) -> Iterator[None]:
    try:
        yield
    except (kafka_errors.KafkaTimeoutError, kafka_errors.KafkaConnectionError) as exc:
        raise BrokerUnavailable(f"Kafka at {bootstrap} stopped answering: {exc}") from exc
    except kafka_errors.AuthorizationError as exc:
        raise TopicAdminError(
            f"Kafka at {bootstrap} refused: {exc}. The client's principal needs DESCRIBE, "
            "DESCRIBE_CONFIGS and CREATE on the topics (ACLs)."
        ) from exc
    except kafka_errors.KafkaError as exc:
        raise TopicAdminError(f"Kafka at {bootstrap}: {exc}") from exc


def _broker_error(code: int, topic: str, message: str | None = None) -> TopicAdminError:
    error = kafka_errors.for_code(code)
    detail = message or getattr(error, "description", "") or error.__name__
    if issubclass(error, kafka_errors.AuthorizationError):
        return TopicAdminError(
            f"topic {topic!r}: not authorized ({detail}). The client's principal needs "
            "DESCRIBE, DESCRIBE_CONFIGS and CREATE on it (ACLs)."
        )
    return TopicAdminError(f"topic {topic!r}: {error.__name__}: {detail}")


def _partition_counts(
    admin: Any, names: list[str] | None, *, include_internal: bool = True
) -> dict[str, int]:
    """Partition counts of the topics that exist, among ``names`` (None: all)."""
    counts: dict[str, int] = {}
    for topic in admin.describe_topics(names):
        code = topic["error_code"]
        if code == kafka_errors.UnknownTopicOrPartitionError.errno:
            continue
        if code:
            raise _broker_error(code, topic["name"])
        if topic.get("is_internal") and not include_internal:
            continue
        counts[topic["name"]] = len(topic["partitions"])
    return counts


def _topic_configs(admin: Any, names: Sequence[str]) -> dict[str, dict[str, str]]:
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    described = admin.describe_configs(resources, config_filter="all").get("topic", {})
    return {
        name: {key: entry["value"] for key, entry in described.get(name, {}).items()}
        for name in names
    }


def _check_existing(admin: Any, specs: Sequence[TopicSpec], counts: Mapping[str, int]) -> None:
    for spec in specs:
        if counts[spec.name] != spec.partitions:
            raise TopicMismatch(
                spec.name,
                "partitions",
                counts[spec.name],
                spec.partitions,
                f"Kafka cannot shrink a topic, and growing it moves keys to other partitions "
                f"(per-user state would be split). Either configure {counts[spec.name]} "
                f"partitions, or delete the topic (its data is lost) and create it again.",
            )
    configs = _topic_configs(admin, [spec.name for spec in specs]) if specs else {}
    for spec in specs:
        _log_other_settings(spec, configs[spec.name])
        existing = _policy_set(configs[spec.name].get("cleanup.policy", "delete"))
        if existing != spec.cleanup_policy:
            wanted = ",".join(sorted(spec.cleanup_policy))
            raise TopicMismatch(
                spec.name,
                "cleanup.policy",
                ",".join(sorted(existing)),
                wanted,
                f"Fix: kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics "
                f"--entity-name {spec.name} --add-config cleanup.policy={wanted}",
            )


ADVISORY = ("retention.ms", "max.compaction.lag.ms", "segment.ms", "delete.retention.ms")
"""Settings an existing topic may differ in: the worker runs, and the difference is logged."""


def _log_other_settings(spec: TopicSpec, existing: Mapping[str, str]) -> None:
    for key in ADVISORY:
        wanted = spec.config.get(key)
        if wanted is not None and existing.get(key) != wanted:
            log.warning(
                "topic %s has %s=%s, but %s is configured (it is left as it is; to apply it: "
                "kafka-configs.sh --bootstrap-server <broker> --alter --entity-type topics "
                "--entity-name %s --add-config %s=%s)",
                spec.name,
                key,
                existing.get(key),
                wanted,
                spec.name,
                key,
                wanted,
            )


def _create(
    admin: Any, specs: Sequence[TopicSpec], timeout_s: float
) -> tuple[list[str], list[TopicSpec]]:
    """Create ``specs``; returns the names created and the specs someone else created first."""
    timeout_ms = max(1, int(timeout_s * 1000))
    request = {
        spec.name: {
            "num_partitions": spec.partitions,
            "replication_factor": _USE_BROKER_DEFAULT,
            "configs": spec.topic_config(),
        }
        for spec in specs
    }
    response = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
    results = {result["name"]: result for result in response["topics"]}
    created: list[str] = []
    raced: list[TopicSpec] = []
    failures: list[str] = []
    for spec in specs:
        result = results.get(spec.name, {"error_code": -1, "error_message": "no answer"})
        code = result["error_code"]
        if code == 0:
            created.append(spec.name)
            log.info("created topic %s (%d partitions)", spec.name, spec.partitions)
        elif code == kafka_errors.TopicAlreadyExistsError.errno:
            raced.append(spec)
        else:
            failures.append(str(_broker_error(code, spec.name, result.get("error_message"))))
    if failures:
        done = f" (created meanwhile: {', '.join(created)})" if created else ""
        raise TopicAdminError("could not create topics: " + "; ".join(failures) + done)
    try:
        admin.wait_for_topics(created, timeout_ms=timeout_ms)
    except kafka_errors.KafkaTimeoutError as exc:
        raise TopicAdminError(
            f"created {', '.join(created)}, but not all partitions had a leader within "
            f"{timeout_s:g}s: {exc}"
        ) from exc
    return created, raced


def _unique_specs(specs: Sequence[TopicSpec]) -> dict[str, TopicSpec]:
    unique: dict[str, TopicSpec] = {}
    for spec in specs:
        if unique.setdefault(spec.name, spec) != spec:
            raise ValueError(f"topic {spec.name!r} is configured twice, differently")
    return unique


def _policy_set(policy: str) -> frozenset[str]:
    return frozenset(part.strip() for part in policy.split(",") if part.strip())
