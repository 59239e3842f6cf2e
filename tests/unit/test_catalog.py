"""The topic catalog: the committed file is valid and complete, every malformed catalog is
refused with a message naming the file, the key and the fix, and the plan logic (a pure diff
of catalog and cluster state) refuses what apply must never do."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from expediter.errors import ConfigurationError
from expediter.messaging import (
    DEFAULT_CATALOG,
    Catalog,
    TopicNames,
    TopicState,
    diff_catalog,
    load_catalog,
    parse_catalog,
)
from expediter.messaging.catalogs import parse_duration_ms

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / DEFAULT_CATALOG
CAPABILITIES = ["perception", "reasoning", "action", "soil-analysis", "pest-detection",
                "crop-mapping"]  # fmt: skip
SOURCE = "topics/topics.yaml"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(CATALOG)


def base() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CATALOG.read_text())
    return document


def index_of(document: dict[str, Any], name: str) -> int:
    return next(i for i, t in enumerate(document["topics"]) if t["name"] == name)


def test_the_committed_catalog_names_every_topic(catalog: Catalog) -> None:
    names = {spec.name for spec in catalog.topics}
    assert catalog.capabilities == tuple(CAPABILITIES)
    for capability in CAPABILITIES:
        assert {f"tasks.{capability}", f"dlq.{capability}"} <= names
        assert [t.name for t in catalog.retry_tiers(capability)] == [
            f"retry.{capability}.10s",
            f"retry.{capability}.60s",
        ]
        assert [t.delay_ms for t in catalog.retry_tiers(capability)] == [10_000, 60_000]
    fixed = {"results", "workflows.completed", "registry", "tools.ledger", "workflows.events",
             "workflows.commands", "dlq.orchestrator", "approvals.requests",
             "approvals.decisions", "expediter-orchestrator-workflows-changelog"}  # fmt: skip
    assert fixed <= names
    assert len(names) == len(catalog.topics) == 4 * len(CAPABILITIES) + len(fixed)


def test_the_committed_catalog_has_production_values(catalog: Catalog) -> None:
    for spec in catalog.topics:
        assert spec.replication_factor == 3
        assert spec.min_insync_replicas == 2
    for spec in catalog.by_role("tasks"):
        assert spec.partitions == 6  # KEDA's maxReplicaCount must stay <= this
        assert spec.cleanup_policy == "delete"
    assert catalog.topic("registry").cleanup_policy == "compact"
    changelog = catalog.topic("expediter-orchestrator-workflows-changelog")
    assert changelog.cleanup_policy == "compact"
    assert changelog.owner == "faust"
    assert catalog.topic("workflows.completed").cleanup_policy == "delete"
    group = catalog.co_partition["workflows"]
    assert set(group) == {
        "results",
        "workflows.completed",
        "workflows.events",
        "workflows.commands",
        "approvals.decisions",
        changelog.name,
    }
    assert {catalog.topic(name).partitions for name in group} == {6}


def test_the_catalog_agrees_with_the_names_code_derives(catalog: Catalog) -> None:
    names = TopicNames()
    for capability in CAPABILITIES:
        assert catalog.topic(names.tasks(capability)).role == "tasks"
        assert catalog.topic(names.dlq(capability)).role == "dlq"
    assert catalog.topic(names.results).role == "results"
    assert catalog.topic(names.registry).role == "registry"
    assert catalog.topic(names.completed).role == "completions"
    assert catalog.topic(names.approval_decisions).role == "approvals"
    assert catalog.topic(names.approval_requests).cleanup_policy == "compact"


def test_prefix_moves_every_name_and_group(catalog: Catalog) -> None:
    shadow = catalog.with_prefix("shadow.")
    assert all(spec.name.startswith("shadow.") for spec in shadow.topics)
    assert shadow.co_partition["workflows"][0] == "shadow.results"
    assert shadow.prefix == "shadow."
    with pytest.raises(ConfigurationError, match=r"prefix 'a b'.*choose a prefix"):
        catalog.with_prefix("a b")


@pytest.mark.parametrize(
    ("text", "ms"),
    [("7d", 604_800_000), ("12h", 43_200_000), ("10s", 10_000), ("500ms", 500), ("1w", 604_800_000),
     ("infinite", -1), (-1, -1), (60000, 60000)],
)  # fmt: skip
def test_durations(text: object, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["7 days", "5q", True, -2, 1.5, ""])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration_ms(text)


Mutation = Callable[[dict[str, Any]], None]


def topic(which: str, /, **fields: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        document["topics"][index_of(document, which)].update(fields)

    return mutate


def drop_topic(name: str) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        del document["topics"][index_of(document, name)]

    return mutate


def top(**fields: Any) -> Mutation:
    return lambda document: document.update(fields)


def defaults(**fields: Any) -> Mutation:
    return lambda document: document["defaults"].update(fields)


CHANGELOG = "expediter-orchestrator-workflows-changelog"

# (case, mutation, the key the message must name, a fragment of the fix it must give)
MALFORMED: list[tuple[str, Mutation, str, str]] = [
    ("unknown top-level key", top(partitons=3), "partitons", "remove it or use one of"),
    ("unknown key in a topic", topic("results", partiton=3), "topics[4].partiton",
     "did you mean 'partitions'?"),
    ("unknown key in defaults", defaults(retension="7d"), "defaults.retension",
     "did you mean 'retention'?"),
    ("partitions < 1", topic("results", partitions=0), "topics[4].partitions",
     "set it to the number of partitions you need (>= 1)"),
    ("negative default partitions", defaults(partitions=-1), "defaults.partitions",
     "set it to the number of partitions you need"),
    ("partitions not an integer", topic("results", partitions="6"), "topics[4].partitions",
     "set it to the number of partitions you need"),
    ("replication_factor < 1", topic("registry", replication_factor=0),
     "topics[8].replication_factor", "how many brokers keep a copy"),
    ("min.insync.replicas > replication_factor", topic("results", replication_factor=1),
     "topics[4].min_insync_replicas", "set min_insync_replicas <= 1"),
    ("configs contradict cleanup_policy", topic("results", configs={"cleanup.policy": "compact"}),
     "topics[4].configs.cleanup.policy", "set it in one place only (the `cleanup_policy` field)"),
    ("configs contradict min_insync_replicas",
     topic("results", configs={"min.insync.replicas": 1}),
     "topics[4].configs.min.insync.replicas", "the `min_insync_replicas` field"),
    ("configs contradict retention", topic("results", configs={"retention.ms": 1000}),
     "topics[4].configs.retention.ms", "the `retention` field"),
    ("compaction-only config on a delete topic",
     topic("results", configs={"min.compaction.lag.ms": 1000}),
     "topics[4].configs.min.compaction.lag.ms", "set cleanup_policy to compact"),
    ("unknown Kafka config", topic("results", configs={"retention.msx": 5}),
     "topics[4].configs.retention.msx", "did you mean 'retention.ms'?"),
    ("replication.factor as a config", topic("results", configs={"replication.factor": 3}),
     "topics[4].configs.replication.factor", "use the `replication_factor` field"),
    ("config value of a wrong type", topic("results", configs={"segment.ms": [1]}),
     "topics[4].configs.segment.ms", "map Kafka topic config names to values"),
    ("unknown cleanup policy", topic("results", cleanup_policy="compacted"),
     "topics[4].cleanup_policy", "use delete, compact or compact,delete"),
    ("registry not compacted", topic("registry", cleanup_policy="delete"),
     "topics[8].cleanup_policy", "set cleanup_policy: compact"),
    ("changelog deletes", topic(CHANGELOG, cleanup_policy="compact,delete"),
     "topics[10].cleanup_policy", "set cleanup_policy: compact"),
    ("co-partition mismatch", topic("results", partitions=12), "co_partition.workflows",
     "set partitions: 12 on each"),
    ("co-partition mismatch with the table", topic(CHANGELOG, partitions=3),
     "co_partition.workflows", "topics[10].partitions"),
    ("co-partition group names an unknown topic",
     lambda d: d["co_partition"]["workflows"].append("resluts"), "co_partition.workflows[6]",
     "fix the name or add the topic"),
    ("workflows group missing", top(co_partition={}), "co_partition.workflows",
     f"add `workflows: [results, {CHANGELOG}]`"),
    ("a group of one", top(co_partition={"workflows": ["results"]}), "co_partition.workflows",
     "at least two topic names"),
    ("a required role missing", drop_topic("registry"), "topics",
     "needs exactly one topic with role registry"),
    ("duplicate topic names", topic("workflows.completed", name="results", role="completions"),
     "topics[5].name", "names must be unique"),
    ("retry tier without a delay", topic("retry.{capability}.10s", delay=None), "topics[1].delay",
     "a retry topic needs a delay"),
    ("delay on a non-retry topic", topic("results", delay="10s"), "topics[4].delay",
     "only retry topics have a delay"),
    ("bad retention", topic("results", retention="a week"), "topics[4].retention",
     "write a duration such as 7d"),
    ("unknown role", topic("results", role="result"), "topics[4].role", "use one of tasks"),
    ("illegal topic name", topic("results", name="res ults"), "topics[4].name",
     "letters, digits, '.', '_' and '-'"),
    ("unknown template", topic("tasks.{capability}", name="tasks.{cap}"), "topics[0].name",
     "only {capability} is expanded"),
    ("template on a single topic", topic("results", name="results.{capability}"),
     "topics[4].name", "remove {capability}"),
    ("bad capability name", top(capabilities=["Soil Analysis"]), "capabilities[0]",
     "lowercase letters, digits and dashes"),
    ("unknown version", top(version=2), "version", "set `version: 1`"),
    ("missing topics", lambda d: d.pop("topics"), "topics", "is required; list the topics"),
    ("partitions missing everywhere", lambda d: d["defaults"].pop("partitions"),
     "topics[0].partitions", "is not set here nor in defaults"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("mutate", "key", "fix"), [case[1:] for case in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_catalog_names_file_key_and_fix(mutate: Mutation, key: str, fix: str) -> None:
    document = copy.deepcopy(base())
    mutate(document)
    with pytest.raises(ConfigurationError) as caught:
        parse_catalog(yaml.safe_dump(document, sort_keys=False), source=SOURCE)
    message = str(caught.value)
    line = next((x for x in message.splitlines() if x.startswith(f"{SOURCE}: {key}: ")), None)
    assert line is not None, f"no line names {key!r}:\n{message}"
    assert fix in line, message
    assert "; " in line, "each line says the problem, then the fix"


def test_the_message_has_the_documented_form() -> None:
    document = base()
    document["topics"][3]["partitions"] = 0
    with pytest.raises(ConfigurationError) as caught:
        parse_catalog(yaml.safe_dump(document, sort_keys=False), source=SOURCE)
    assert str(caught.value) == (
        "topics/topics.yaml: topics[3].partitions: must be >= 1 (got 0); "
        "set it to the number of partitions you need (>= 1)"
    )


def test_every_problem_is_reported_at_once() -> None:
    document = base()
    document["defaults"]["replication_factor"] = 0
    document["topics"][index_of(document, "registry")]["cleanup_policy"] = "delete"
    document["bogus"] = 1
    with pytest.raises(ConfigurationError) as caught:
        parse_catalog(yaml.safe_dump(document, sort_keys=False), source=SOURCE)
    # pydantic's problems come first; the semantic checks run once the shape is right.
    assert "defaults.replication_factor" in str(caught.value)
    assert "bogus" in str(caught.value)


def test_a_template_problem_is_listed_once() -> None:
    document = base()
    document["topics"][0]["configs"] = {"delete.retention.ms": 1}
    with pytest.raises(ConfigurationError) as caught:
        parse_catalog(yaml.safe_dump(document, sort_keys=False), source=SOURCE)
    assert str(caught.value).count("topics[0].configs.delete.retention.ms") == 1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: 1\ntopics: [\n", "not valid YAML at line"),
        ("version: 1\nversion: 1\n", "duplicate key 'version'"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("", "the top level must be a mapping"),
    ],
)
def test_unreadable_catalogs_name_the_file(text: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment) as caught:
        parse_catalog(text, source=SOURCE)
    assert str(caught.value).startswith(f"{SOURCE}: ")


def test_a_missing_file_says_how_to_point_at_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such file; pass --catalog PATH"):
        load_catalog(tmp_path / "topics.yaml")


def test_configs_that_agree_with_the_fields_are_accepted() -> None:
    document = base()
    registry = document["topics"][index_of(document, "registry")]
    registry["configs"]["cleanup.policy"] = "compact"
    registry["configs"]["delete.retention.ms"] = 3600000
    spec = parse_catalog(yaml.safe_dump(document)).topic("registry")
    assert spec.kafka_configs["cleanup.policy"] == "compact"
    assert spec.kafka_configs["delete.retention.ms"] == "3600000"
    assert spec.kafka_configs["min.cleanable.dirty.ratio"] == "0.1"


# The plan: a pure diff of catalog and cluster state (the broker tests apply it for real).


def state(catalog: Catalog, name: str, **changes: Any) -> TopicState:
    spec = catalog.topic(name)
    configs = {**spec.kafka_configs, "min.insync.replicas": "1", **changes.pop("configs", {})}
    return TopicState(
        name=name,
        partitions=changes.pop("partitions", spec.partitions),
        replication_factor=1,
        configs=configs,
        overrides={**configs, "max.message.bytes": "2000000"},
    )


def matching(catalog: Catalog) -> dict[str, TopicState]:
    return {spec.name: state(catalog, spec.name) for spec in catalog.topics}


def test_a_matching_cluster_gives_an_empty_plan(catalog: Catalog) -> None:
    plan = diff_catalog(catalog, matching(catalog), brokers=1)
    assert not plan.changed
    assert not plan.refusals
    assert "replication capped to 1" in plan.notes[0]


def test_an_empty_cluster_gets_every_topic_capped(catalog: Catalog) -> None:
    plan = diff_catalog(catalog, {}, brokers=1)
    assert [c.action for c in plan.changes] == ["create"] * len(catalog.topics)
    assert {c.replication_factor for c in plan.changes} == {1}
    assert {c.configs["min.insync.replicas"] for c in plan.changes} == {"1"}
    full = diff_catalog(catalog, {}, brokers=5)
    assert {c.replication_factor for c in full.changes} == {3}
    assert {c.configs["min.insync.replicas"] for c in full.changes} == {"2"}
    assert not full.notes
    two = diff_catalog(catalog, {}, brokers=5, replication_factor_cap=2)
    assert {c.replication_factor for c in two.changes} == {2}
    assert "replication capped to 2" in two.notes[0]


def test_shrinking_is_refused_because_kafka_cannot(catalog: Catalog) -> None:
    cluster = matching(catalog)
    cluster["results"] = state(catalog, "results", partitions=12)
    plan = diff_catalog(catalog, cluster, brokers=1)
    (refusal,) = plan.refusals
    assert "results: has 12 partitions, the catalog says 6" in refusal
    assert "topics/topics.yaml" in refusal
    assert "Kafka cannot shrink" in refusal
    assert "recreate the topic" in refusal


def test_raising_partitions_is_planned_with_a_note(catalog: Catalog) -> None:
    cluster = matching(catalog)
    cluster["tasks.reasoning"] = state(catalog, "tasks.reasoning", partitions=2)
    plan = diff_catalog(catalog, cluster, brokers=1)
    (change,) = plan.changes
    assert (change.topic, change.action, change.partitions) == ("tasks.reasoning",
                                                                "add-partitions", 6)  # fmt: skip
    assert any("moves keys" in note for note in plan.notes)


def test_a_policy_change_needs_permission(catalog: Catalog) -> None:
    cluster = matching(catalog)
    cluster["registry"] = state(catalog, "registry", configs={"cleanup.policy": "delete"})
    refused = diff_catalog(catalog, cluster, brokers=1)
    (refusal,) = refused.refusals
    assert "--allow-policy-change" in refusal
    allowed = diff_catalog(catalog, cluster, brokers=1, allow_policy_change=True)
    assert not allowed.refusals
    (change,) = allowed.changes
    assert change.action == "alter-configs"
    assert change.configs == {"cleanup.policy": "compact"}
    # AlterConfigs replaces a topic's overrides: those the catalog does not set are kept.
    assert change.overrides["max.message.bytes"] == "2000000"
    assert change.overrides["cleanup.policy"] == "compact"


def test_other_config_drift_is_aligned_without_permission(catalog: Catalog) -> None:
    cluster = matching(catalog)
    cluster["results"] = state(catalog, "results", configs={"retention.ms": "1000"})
    plan = diff_catalog(catalog, cluster, brokers=1)
    assert not plan.refusals
    (change,) = plan.changes
    assert change.configs == {"retention.ms": "604800000"}
    assert change.before == {"retention.ms": "1000"}


def test_a_replication_difference_is_only_noted(catalog: Catalog) -> None:
    plan = diff_catalog(catalog, matching(catalog), brokers=3)
    assert not plan.refusals
    assert any("partition reassignment" in note for note in plan.notes)
    assert all(c.action == "alter-configs" for c in plan.changes)  # min.insync.replicas 1 -> 2


def test_a_cap_below_one_is_refused(catalog: Catalog) -> None:
    with pytest.raises(ConfigurationError, match="must be >= 1"):
        diff_catalog(catalog, {}, brokers=1, replication_factor_cap=0)
