"""The topic catalog against a real broker: apply is idempotent, raises partitions, refuses
what it must, keeps configs it does not manage, and describe reports what the broker reports.

Every test works under its own prefix, so that tests can share the session broker."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from expediter.dev import Broker
from expediter.errors import BrokerError, ConfigurationError
from expediter.messaging import (
    Catalog,
    apply_plan,
    client_options,
    connected,
    describe_topics,
    load_catalog,
    parse_catalog,
    plan_topics,
)
from expediter.messaging.catalogs import KAFKA_TOPIC_CONFIGS

CATALOG = Path(__file__).resolve().parents[2] / "topics" / "topics.yaml"


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}."


def small_catalog(*, partitions: int = 2, results_policy: str = "delete") -> Catalog:
    """A complete catalog (every role) for one capability, small enough to change in a test."""
    return parse_catalog(
        f"""
version: 1
capabilities: [soil-analysis]
defaults: {{partitions: {partitions}, replication_factor: 3, min_insync_replicas: 2,
            cleanup_policy: delete, retention: 1d}}
topics:
  - {{name: "tasks.{{capability}}", role: tasks}}
  - {{name: "retry.{{capability}}.10s", role: retry, delay: 10s}}
  - {{name: "dlq.{{capability}}", role: dlq}}
  - {{name: results, role: results, cleanup_policy: {results_policy}}}
  - {{name: workflows.completed, role: completions}}
  - {{name: registry, role: registry, partitions: 1, cleanup_policy: compact}}
  - {{name: tools.ledger, role: ledger, partitions: 1, cleanup_policy: compact}}
  - {{name: table-changelog, role: changelog, cleanup_policy: compact, owner: faust}}
co_partition:
  workflows: [results, workflows.completed, table-changelog]
""",
        source="small.yaml",
    )


async def applied(kafka: Broker, catalog: Catalog, prefix: str) -> None:
    await apply_plan(await plan_topics(catalog, kafka.settings, prefix=prefix), kafka.settings)


async def broker_view(
    kafka: Broker, names: list[str]
) -> dict[str, tuple[int, int, dict[str, str]]]:
    """{topic: (partitions, replication factor, configs set on it)}, asked straight of Kafka."""
    async with connected(
        AIOKafkaAdminClient(**client_options(kafka.settings)), kafka.settings
    ) as a:
        described = {t["topic"]: t for t in await a.describe_topics() if t["topic"] in names}
        responses = await a.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in described]
        )
    view = {}
    for response in responses:
        for _, _, _, name, entries in response.resources:
            overrides = {e[0]: e[1] for e in entries if e[3] == 1}  # source: the topic itself
            parts = described[name]["partitions"]
            view[name] = (len(parts), len(parts[0]["replicas"]), overrides)
    return view


async def test_kafka_knows_every_config_the_catalog_accepts(kafka: Broker, topic_name: str) -> None:
    async with connected(
        AIOKafkaAdminClient(**client_options(kafka.settings)), kafka.settings
    ) as a:
        await a.create_topics([NewTopic(topic_name, 1, 1)])
        # A topic created a moment ago may describe with no entries yet on a busy broker (seen
        # in a CI run): ask again until the broker lists its configs.
        known: set[str] = set()
        for _ in range(50):
            (response,) = await a.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic_name)]
            )
            known = {entry[0] for entry in response.resources[0][4]}
            if known:
                break
            await asyncio.sleep(0.2)
    assert known, "the broker described no config of a topic it created"
    assert not KAFKA_TOPIC_CONFIGS - known, "the catalog accepts configs this Kafka lacks"


async def test_apply_twice_changes_nothing_the_second_time(kafka: Broker, prefix: str) -> None:
    catalog = load_catalog(CATALOG)
    first = await plan_topics(catalog, kafka.settings, prefix=prefix)
    assert [c.action for c in first.changes] == ["create"] * len(catalog.topics)
    replication = min(3, first.brokers)
    if first.brokers < 3:
        assert f"replication capped to {first.brokers}" in first.notes[0]
    await apply_plan(first, kafka.settings)

    second = await plan_topics(catalog, kafka.settings, prefix=prefix)
    assert not second.changed, second.changes
    assert not second.refusals

    view = await broker_view(kafka, [prefix + s.name for s in catalog.topics])
    assert len(view) == len(catalog.topics)
    for spec in catalog.topics:
        partitions, _, configs = view[prefix + spec.name]
        assert partitions == spec.partitions
        assert view[prefix + spec.name][1] == replication  # capped to what the cluster holds
        assert configs["cleanup.policy"] == spec.cleanup_policy
        assert configs["min.insync.replicas"] == str(min(2, replication))
        assert configs["retention.ms"] == str(spec.retention_ms)
    assert view[f"{prefix}registry"][2]["segment.ms"] == "3600000"


async def test_raising_partitions_works(kafka: Broker, prefix: str) -> None:
    await applied(kafka, small_catalog(partitions=2), prefix)
    raised = await plan_topics(small_catalog(partitions=5), kafka.settings, prefix=prefix)
    assert {(c.topic, c.action) for c in raised.changes} == {
        (f"{prefix}{name}", "add-partitions")
        for name in ("tasks.soil-analysis", "retry.soil-analysis.10s", "dlq.soil-analysis",
                     "results", "workflows.completed", "table-changelog")
    }  # fmt: skip
    await apply_plan(raised, kafka.settings)
    view = await broker_view(
        kafka, [f"{prefix}results", f"{prefix}table-changelog", f"{prefix}registry"]
    )
    assert view[f"{prefix}results"][0] == view[f"{prefix}table-changelog"][0] == 5
    assert view[f"{prefix}registry"][0] == 1
    again = await plan_topics(small_catalog(partitions=5), kafka.settings, prefix=prefix)
    assert not again.changed


async def test_shrinking_is_refused_and_nothing_is_applied(kafka: Broker, prefix: str) -> None:
    await applied(kafka, small_catalog(partitions=4), prefix)
    plan = await plan_topics(small_catalog(partitions=2), kafka.settings, prefix=prefix)
    assert len(plan.refusals) == 6
    assert "Kafka cannot shrink" in plan.refusals[0]
    with pytest.raises(ConfigurationError, match="nothing was applied"):
        await apply_plan(plan, kafka.settings)
    view = await broker_view(kafka, [f"{prefix}results"])
    assert view[f"{prefix}results"][0] == 4


async def test_a_policy_change_needs_permission_and_keeps_other_configs(
    kafka: Broker, prefix: str
) -> None:
    await applied(kafka, small_catalog(), prefix)
    results = f"{prefix}results"
    # A config the catalog does not manage, set by someone else: apply must not drop it.
    async with connected(
        AIOKafkaAdminClient(**client_options(kafka.settings)), kafka.settings
    ) as a:
        current = (await broker_view(kafka, [results]))[results][2]
        extra = {**current, "max.message.bytes": "2000000"}
        await a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, results, configs=extra)])
    compacting = small_catalog(results_policy="compact")
    refused = await plan_topics(compacting, kafka.settings, prefix=prefix)
    (refusal,) = refused.refusals
    assert "--allow-policy-change" in refusal
    with pytest.raises(ConfigurationError):
        await apply_plan(refused, kafka.settings)
    assert (await broker_view(kafka, [results]))[results][2]["cleanup.policy"] == "delete"

    allowed = await plan_topics(compacting, kafka.settings, prefix=prefix, allow_policy_change=True)
    await apply_plan(allowed, kafka.settings)
    configs = (await broker_view(kafka, [results]))[results][2]
    assert configs["cleanup.policy"] == "compact"
    assert configs["max.message.bytes"] == "2000000"
    assert configs["retention.ms"] == "86400000"
    assert not (await plan_topics(compacting, kafka.settings, prefix=prefix)).changed


async def test_a_cap_above_the_brokers_fails_naming_the_topic(kafka: Broker, prefix: str) -> None:
    brokers = (await plan_topics(small_catalog(), kafka.settings, prefix=prefix)).brokers
    plan = await plan_topics(
        small_catalog(), kafka.settings, prefix=prefix, replication_factor_cap=brokers + 1
    )
    assert any("creating topics will fail" in note for note in plan.notes)
    with pytest.raises(BrokerError, match=rf"creating topics failed: {prefix}.*replication"):
        await apply_plan(plan, kafka.settings)


async def test_describe_matches_what_the_broker_reports(kafka: Broker, prefix: str) -> None:
    catalog = small_catalog(partitions=3).with_prefix(prefix)
    await applied(kafka, small_catalog(partitions=3), prefix)
    tasks = f"{prefix}tasks.soil-analysis"
    sent = {0: 5, 2: 7}
    async with connected(AIOKafkaProducer(**client_options(kafka.settings)), kafka.settings) as p:
        for partition, count in sent.items():
            for i in range(count):
                await p.send(tasks, b"task-%d" % i, key=b"wf", partition=partition)
        await p.flush()
    names = [s.name for s in catalog.topics]
    reports = await describe_topics(kafka.settings, [*names, f"{prefix}nope"], catalog=catalog)
    described = {d.name: d for d in reports}
    view = await broker_view(kafka, names)
    for name in names:
        topic = described[name]
        assert topic.exists
        assert topic.role == catalog.topic(name).role
        assert (topic.partitions, topic.replication_factor, dict(topic.configs)) == view[name]
    task_topic = described[tasks]
    assert [p.end_offset for p in task_topic.partition_details] == [5, 0, 7]
    assert [p.start_offset for p in task_topic.partition_details] == [0, 0, 0]
    assert task_topic.end_offset == task_topic.records == 12
    assert all(p.leader in p.replicas and p.isr for p in task_topic.partition_details)
    assert described[f"{prefix}nope"].exists is False
    assert task_topic.as_dict()["end_offset"] == 12
