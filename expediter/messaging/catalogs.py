"""The topic catalog as a model: every topic of the system (:class:`TopicSpec`), and which must
share a partition count (:class:`Catalog`).

A :class:`Catalog` is only ever built from a file that passed every check
(:mod:`expediter.messaging.cataloging` reads it, :mod:`expediter.messaging.catalogchecking`
checks it), so its specs are resolved: defaults merged, ``{capability}`` templates expanded.

Who uses it: :mod:`expediter.messaging.provisioning` (applies it to a cluster), the CLI, the
KEDA renderer and the replay tools, which learn topic names, partitions and retry tiers from it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from expediter.errors import ConfigurationError

__all__ = [
    "COMPACTION_ONLY_CONFIGS",
    "DEFAULT_CATALOG",
    "KAFKA_TOPIC_CONFIGS",
    "TOPIC_NAME",
    "Catalog",
    "CleanupPolicy",
    "TopicRole",
    "TopicSpec",
    "parse_duration_ms",
]

DEFAULT_CATALOG = Path("topics/topics.yaml")
"""Where the CLI looks for the catalog, relative to the working directory."""

TopicRole = Literal[
    "tasks",
    "retry",
    "dlq",
    "results",
    "completions",
    "commands",
    "state",
    "registry",
    "changelog",
    "ledger",
    "approvals",
]
"""What a topic is for. Other components find topics by role (and capability), not by name."""

CleanupPolicy = Literal["delete", "compact", "compact,delete"]

KAFKA_TOPIC_CONFIGS = frozenset(
    {
        "cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
        "compression.zstd.level", "delete.retention.ms", "file.delete.delay.ms",
        "flush.messages", "flush.ms", "follower.replication.throttled.replicas",
        "index.interval.bytes", "leader.replication.throttled.replicas",
        "local.retention.bytes", "local.retention.ms", "max.compaction.lag.ms",
        "max.message.bytes", "message.timestamp.after.max.ms", "message.timestamp.before.max.ms",
        "message.timestamp.type", "min.cleanable.dirty.ratio", "min.compaction.lag.ms",
        "min.insync.replicas", "preallocate", "remote.log.copy.disable",
        "remote.log.delete.on.disable", "remote.storage.enable", "retention.bytes",
        "retention.ms", "segment.bytes", "segment.index.bytes", "segment.jitter.ms",
        "segment.ms", "unclean.leader.election.enable",
    }
)  # fmt: skip
"""The topic-level configs of Kafka 4.1, so that a typo fails ``check`` rather than ``apply``.
An integration test compares this set with what the broker reports."""

COMPACTION_ONLY_CONFIGS = frozenset(
    {"delete.retention.ms", "max.compaction.lag.ms", "min.cleanable.dirty.ratio",
     "min.compaction.lag.ms"}
)  # fmt: skip
"""Configs that only the log cleaner reads; on a ``delete`` topic they are a mistake."""

TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
"""What Kafka accepts as a topic name."""
_DURATION = re.compile(r"(\d+)\s*(ms|s|m|h|d|w)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration_ms(value: object) -> int:
    """``7d``, ``12h``, ``30m``, ``10s``, ``500ms``, ``1w``, an integer of milliseconds, or
    ``infinite`` (-1, Kafka's word for "keep forever") to milliseconds; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= -1:
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("infinite", "-1"):
            return -1
        match = _DURATION.fullmatch(text)
        if match:
            return int(match.group(1)) * _UNIT_MS[match.group(2)]
    raise ValueError(f"is not a duration (got {value!r})")


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the catalog wants it: defaults merged, template expanded."""

    name: str
    role: TopicRole
    partitions: int
    replication_factor: int
    min_insync_replicas: int
    cleanup_policy: CleanupPolicy
    retention_ms: int | None
    """None: the cluster's default; -1: forever."""
    configs: Mapping[str, str]
    """Other Kafka topic configs, as strings (never the three fields above)."""
    capability: str | None = None
    delay_ms: int | None = None
    owner: str = "expediter"
    description: str = ""
    key: str = ""
    """Where in the file it comes from (``topics[3]``), for messages."""

    @property
    def kafka_configs(self) -> dict[str, str]:
        """Every config the catalog sets on this topic, by Kafka name."""
        configs = {
            "cleanup.policy": self.cleanup_policy,
            "min.insync.replicas": str(self.min_insync_replicas),
            **self.configs,
        }
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return configs


@dataclass(frozen=True)
class Catalog:
    """Every topic of the system, and which must share a partition count."""

    source: str
    capabilities: tuple[str, ...]
    topics: tuple[TopicSpec, ...]
    co_partition: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    prefix: str = ""

    def topic(self, name: str) -> TopicSpec:
        """The topic called ``name`` (prefix included); KeyError if the catalog has none."""
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def by_role(self, role: TopicRole, capability: str | None = None) -> list[TopicSpec]:
        """Topics of ``role`` (and ``capability`` when given), in catalog order."""
        return [
            spec
            for spec in self.topics
            if spec.role == role and (capability is None or spec.capability == capability)
        ]

    def retry_tiers(self, capability: str) -> list[TopicSpec]:
        """The retry topics of ``capability``, shortest delay first."""
        return sorted(self.by_role("retry", capability), key=lambda spec: spec.delay_ms or 0)

    def with_prefix(self, prefix: str) -> Catalog:
        """The same catalog with ``prefix`` before every topic name (shadow environments,
        tests). An empty prefix returns the catalog itself."""
        if not prefix:
            return self
        if not TOPIC_NAME.fullmatch(prefix):
            raise ConfigurationError(
                f"prefix {prefix!r}: topic names may hold only letters, digits, '.', '_' and "
                "'-'; choose a prefix such as 'shadow.'"
            )
        too_long = [s.name for s in self.topics if len(prefix + s.name) > 249]
        if too_long:
            raise ConfigurationError(
                f"prefix {prefix!r}: makes {too_long[0]!r} longer than Kafka's 249 characters; "
                "choose a shorter prefix"
            )
        return replace(
            self,
            prefix=self.prefix + prefix,
            topics=tuple(replace(s, name=prefix + s.name) for s in self.topics),
            co_partition={g: tuple(prefix + n for n in ns) for g, ns in self.co_partition.items()},
        )
