"""An Agent's topics: its task topic, retry tiers and DLQ, made sure of and never shrunk.

The topics take the topic catalog's per-capability templates (``tasks.{capability}``,
``retry.{capability}.*``, ``dlq.{capability}``: retention, replication, configs), expanded for
the Agent's capability as if the catalog listed it; ``spec.partitions`` sets the task topic's
partitions. Where Strimzi's ``KafkaTopic`` CRD is installed they are KafkaTopic objects, built
by :func:`expediter.deploying.clusterobjects.kafka_topic` as ``expediter keda render`` builds
them; elsewhere the Kafka admin client creates them through the same plan and apply as
``expediter topics apply``. Either way a topic that already has more partitions keeps them:
Kafka cannot remove partitions, and fewer would strand records.

Topics outlive their Agent: deleting it leaves them (and the records in them).

Called by :mod:`expediter.operating.reconciling`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml

from expediter.deploying import DeploySettings
from expediter.deploying.clusterobjects import kafka_topic
from expediter.errors import ConfigurationError
from expediter.messaging import (
    Catalog,
    TopicRole,
    TopicSpec,
    apply_plan,
    describe_topics,
    parse_catalog,
    plan_topics,
)
from expediter.operating.requesting import KubeApi
from expediter.settings import KafkaSettings

__all__ = ["STRIMZI_TOPIC_CRD", "agent_topics", "ensure_topics"]

STRIMZI_TOPIC_CRD = "kafkatopics.kafka.strimzi.io"
_ROLES: tuple[TopicRole, ...] = ("tasks", "retry", "dlq")


def agent_topics(catalog_path: Path, capability: str, partitions: int) -> Catalog:
    """The catalog's topics for ``capability``, the task topic with ``partitions``."""
    try:
        document = yaml.safe_load(catalog_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(
            f"{catalog_path}: cannot be read ({exc}); pass --catalog PATH to the operator"
        ) from exc
    capabilities = list(document.get("capabilities") or [])
    if capability not in capabilities:
        document["capabilities"] = [*capabilities, capability]
    catalog = parse_catalog(yaml.safe_dump(document, sort_keys=False), source=str(catalog_path))
    specs = [
        replace(spec, partitions=partitions) if spec.role == "tasks" else spec
        for role in _ROLES
        for spec in catalog.by_role(role, capability)
    ]
    if not any(spec.role == "tasks" for spec in specs):
        raise ConfigurationError(
            f"{catalog_path} has no topic with role tasks for {{capability}}; add "
            '"tasks.{capability}" (role: tasks) to it'
        )
    return Catalog(source=catalog.source, capabilities=(capability,), topics=tuple(specs))


async def _with_kafka(catalog: Catalog, kafka: KafkaSettings) -> None:
    existing = {
        topic.name: topic.partitions
        for topic in await describe_topics(kafka, [spec.name for spec in catalog.topics])
        if topic.exists
    }
    grown = tuple(
        replace(spec, partitions=max(spec.partitions, existing.get(spec.name, 0)))
        for spec in catalog.topics
    )
    plan = await plan_topics(replace(catalog, topics=grown), kafka)
    await apply_plan(plan, kafka)


async def _with_strimzi(catalog: Catalog, api: KubeApi, rendering: DeploySettings) -> None:
    for spec in catalog.topics:
        wanted = kafka_topic(spec, rendering)
        meta = wanted["metadata"]
        current = await api.get("KafkaTopic", meta["namespace"], meta["name"])
        if current is not None:
            had = int(current.get("spec", {}).get("partitions") or 0)
            wanted["spec"]["partitions"] = max(spec.partitions, had)
        await api.apply(wanted)


async def ensure_topics(
    catalog: Catalog, api: KubeApi, kafka: KafkaSettings, rendering: DeploySettings
) -> list[TopicSpec]:
    """Create the topics or raise their partitions; returns what was asked for."""
    if await api.get("CustomResourceDefinition", None, STRIMZI_TOPIC_CRD) is not None:
        await _with_strimzi(catalog, api, rendering)
    else:
        await _with_kafka(catalog, kafka)
    return list(catalog.topics)
