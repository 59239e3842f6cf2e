"""Making a cluster match the topic catalog, and reporting what a cluster holds.

:func:`plan_topics` reads the cluster and diffs it with a :class:`Catalog` (:func:`diff_catalog`
is the pure part): topics to create, partitions to add, configs to alter, and refusals.
:func:`apply_plan` carries a plan out and waits until the cluster shows the result, so that a
second plan right after is empty. :func:`describe_topics` reports partitions, configs and end
offsets. Called by the CLI (``expediter topics``) and by tests that need the real topics.

What apply never does: delete a topic, remove partitions (Kafka cannot), or change a topic's
``cleanup.policy`` unless the caller allows it, since that changes which records Kafka keeps.
It does not change an existing topic's replication factor either; that takes a partition
reassignment, so the plan only notes the difference.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from expediter.errors import BrokerError, ConfigurationError
from expediter.messaging.catalogs import Catalog, TopicSpec
from expediter.messaging.connecting import client_options, connected
from expediter.settings import KafkaSettings

__all__ = [
    "Change",
    "ChangeAction",
    "PartitionDescription",
    "Plan",
    "TopicDescription",
    "TopicState",
    "apply_plan",
    "describe_topics",
    "diff_catalog",
    "plan_topics",
]

ChangeAction = Literal["create", "add-partitions", "alter-configs"]

_TOPIC_ALREADY_EXISTS = 36
_DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs v1+ config_source: set on this topic
_SETTLE_SECONDS = 30.0


@dataclass(frozen=True)
class TopicState:
    """One topic as the cluster has it."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str]
    """Every config, effective value (defaults included)."""
    overrides: Mapping[str, str]
    """Only the configs set on this topic; AlterConfigs replaces exactly these."""


@dataclass(frozen=True)
class Change:
    """One thing apply does to one topic."""

    topic: str
    action: ChangeAction
    detail: str
    partitions: int | None = None
    """create: the partition count; add-partitions: the new total."""
    replication_factor: int | None = None
    configs: Mapping[str, str] = field(default_factory=dict)
    """create: every config the catalog sets; alter-configs: the new values that differ."""
    before: Mapping[str, str] = field(default_factory=dict)
    """alter-configs: the values the cluster has now."""
    overrides: Mapping[str, str] = field(default_factory=dict)
    """alter-configs: the topic's whole override set afterwards (AlterConfigs replaces it)."""


@dataclass(frozen=True)
class Plan:
    """What apply would do to make the cluster match a catalog; empty when it matches."""

    catalog: Catalog
    brokers: int
    replication_factor_cap: int
    changes: tuple[Change, ...] = ()
    refusals: tuple[str, ...] = ()
    """Differences apply will not resolve; any refusal stops the whole apply."""
    notes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "catalog": self.catalog.source,
            "prefix": self.catalog.prefix,
            "brokers": self.brokers,
            "replication_factor_cap": self.replication_factor_cap,
            "changes": [asdict(change) for change in self.changes],
            "refusals": list(self.refusals),
            "notes": list(self.notes),
            "changed": self.changed,
        }


@dataclass(frozen=True)
class PartitionDescription:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    start_offset: int
    end_offset: int


@dataclass(frozen=True)
class TopicDescription:
    """A topic as ``expediter topics describe`` reports it."""

    name: str
    exists: bool
    role: str | None = None
    partitions: int = 0
    replication_factor: int = 0
    configs: Mapping[str, str] = field(default_factory=dict)
    """The configs set on the topic (not the cluster's defaults)."""
    partition_details: tuple[PartitionDescription, ...] = ()

    @property
    def end_offset(self) -> int:
        """The sum of the partitions' end offsets: how many records were ever written."""
        return sum(p.end_offset for p in self.partition_details)

    @property
    def records(self) -> int:
        """How many records the topic holds now (end minus start offsets)."""
        return sum(p.end_offset - p.start_offset for p in self.partition_details)

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["end_offset"] = self.end_offset
        document["records"] = self.records
        return document


def _capped(spec: TopicSpec, cap: int) -> tuple[int, dict[str, str]]:
    """The replication factor and configs to use on a cluster that holds at most ``cap``."""
    replication = min(spec.replication_factor, cap)
    configs = spec.kafka_configs
    configs["min.insync.replicas"] = str(min(spec.min_insync_replicas, replication))
    return replication, configs


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _same(name: str, a: str, b: str) -> bool:
    if name == "cleanup.policy":
        return sorted(a.replace(" ", "").split(",")) == sorted(b.replace(" ", "").split(","))
    try:
        return float(a) == float(b)  # 0.1 and 0.10 are one ratio
    except ValueError:
        return a == b


def diff_catalog(
    catalog: Catalog,
    cluster: Mapping[str, TopicState],
    *,
    brokers: int,
    replication_factor_cap: int | None = None,
    allow_policy_change: bool = False,
) -> Plan:
    """The plan that makes ``cluster`` (topic name -> state) match ``catalog``. Pure."""
    cap = brokers if replication_factor_cap is None else replication_factor_cap
    if cap < 1:
        raise ConfigurationError(
            f"--replication-factor-cap {cap}: must be >= 1; pass the number of brokers that "
            "should hold each partition"
        )
    changes: list[Change] = []
    refusals: list[str] = []
    notes: list[str] = []
    capped = [s for s in catalog.topics if s.replication_factor > cap]
    if capped:
        notes.append(
            f"replication capped to {cap} (the cluster has {brokers} broker(s)): "
            f"replication_factor {capped[0].replication_factor} -> {cap} and "
            f"min.insync.replicas <= {cap} on {len(capped)} of {len(catalog.topics)} topics"
        )
    if cap > brokers:
        notes.append(
            f"--replication-factor-cap {cap} is more than the {brokers} broker(s) the cluster "
            "reports; creating topics will fail"
        )
    raised: list[str] = []
    for spec in catalog.topics:
        replication, wanted = _capped(spec, cap)
        state = cluster.get(spec.name)
        where = f"{catalog.source}: {spec.key}"
        if state is None:
            changes.append(
                Change(
                    topic=spec.name,
                    action="create",
                    detail=f"{_count(spec.partitions, 'partition')}, replication {replication}, "
                    f"{spec.cleanup_policy}",
                    partitions=spec.partitions,
                    replication_factor=replication,
                    configs=wanted,
                )
            )
            continue
        if state.partitions > spec.partitions:
            refusals.append(
                f"{spec.name}: has {state.partitions} partitions, the catalog says "
                f"{spec.partitions} ({where}.partitions); Kafka cannot shrink a topic's "
                f"partitions: set partitions: {state.partitions} in the catalog, or delete and "
                "recreate the topic (its records are lost)"
            )
        elif state.partitions < spec.partitions:
            raised.append(spec.name)
            changes.append(
                Change(
                    topic=spec.name,
                    action="add-partitions",
                    detail=f"partitions {state.partitions} -> {spec.partitions}",
                    partitions=spec.partitions,
                )
            )
        if state.replication_factor != replication:
            notes.append(
                f"{spec.name}: replication factor is {state.replication_factor}, the catalog "
                f"wants {replication}; apply does not change it (use a partition reassignment, "
                "kafka-reassign-partitions.sh)"
            )
        differ = {
            name: value
            for name, value in wanted.items()
            if not _same(name, state.configs.get(name, ""), value)
        }
        if "cleanup.policy" in differ and not allow_policy_change:
            refusals.append(
                f"{spec.name}: cleanup.policy is {state.configs.get('cleanup.policy')!r} on the "
                f"cluster, the catalog says {differ['cleanup.policy']!r} "
                f"({where}.cleanup_policy); changing it changes which records Kafka keeps: "
                "pass --allow-policy-change to alter it, or fix the catalog"
            )
        if differ:
            changes.append(
                Change(
                    topic=spec.name,
                    action="alter-configs",
                    detail=", ".join(
                        f"{name} {state.configs.get(name)!r} -> {value!r}"
                        for name, value in sorted(differ.items())
                    ),
                    configs=differ,
                    before={name: state.configs.get(name, "") for name in differ},
                    overrides={**state.overrides, **differ},
                )
            )
    if raised:
        notes.append(
            f"adding partitions to {', '.join(raised)} moves keys to other partitions: records "
            "of one key before and after the change are no longer in one partition's order"
        )
    return Plan(
        catalog=catalog,
        brokers=brokers,
        replication_factor_cap=cap,
        changes=tuple(changes),
        refusals=tuple(refusals),
        notes=tuple(notes),
    )


async def plan_topics(
    catalog: Catalog,
    settings: KafkaSettings,
    *,
    prefix: str = "",
    replication_factor_cap: int | None = None,
    allow_policy_change: bool = False,
) -> Plan:
    """Read the cluster and return what :func:`apply_plan` would change.

    ``prefix`` goes before every topic name (tests, shadow environments). The replication
    factor is capped to ``replication_factor_cap``, by default the number of brokers.
    """
    catalog = catalog.with_prefix(prefix)
    async with _admin(settings) as admin:
        brokers, cluster = await _read_cluster(admin, [s.name for s in catalog.topics])
    return diff_catalog(
        catalog,
        cluster,
        brokers=brokers,
        replication_factor_cap=replication_factor_cap,
        allow_policy_change=allow_policy_change,
    )


async def apply_plan(plan: Plan, settings: KafkaSettings) -> Plan:
    """Carry out ``plan`` and wait until the cluster shows it; returns ``plan``.

    A plan with refusals raises :class:`ConfigurationError` and changes nothing.
    """
    if plan.refusals:
        raise ConfigurationError(
            "\n".join(plan.refusals) + "\nnothing was applied; resolve the lines above first"
        )
    if not plan.changes:
        return plan
    async with _admin(settings) as admin:
        try:
            await _create(admin, [c for c in plan.changes if c.action == "create"])
            await _add_partitions(admin, [c for c in plan.changes if c.action == "add-partitions"])
            await _alter(admin, [c for c in plan.changes if c.action == "alter-configs"])
        except KafkaError as exc:
            raise BrokerError(f"applying the topic catalog failed: {exc!r}") from exc
        await _settle(admin, plan)
    return plan


async def describe_topics(
    settings: KafkaSettings, names: Iterable[str], *, catalog: Catalog | None = None
) -> list[TopicDescription]:
    """Partitions (leader, replicas, ISR, start and end offsets) and the configs set on each
    topic of ``names``; a topic the cluster lacks comes back with ``exists=False``."""
    names = list(dict.fromkeys(names))
    roles = {s.name: s.role for s in catalog.topics} if catalog else {}
    async with _admin(settings) as admin:
        _, metadata = await _metadata(admin)
        present = [name for name in names if name in metadata]
        states = await _configs(admin, present)
    partitions = [TopicPartition(name, p["partition"]) for name in present for p in metadata[name]]
    starts: dict[TopicPartition, int] = {}
    ends: dict[TopicPartition, int] = {}
    if partitions:
        consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
        async with connected(consumer, settings):
            # Assigned first, the topics' metadata arrives in one request; otherwise the
            # consumer learns them one topic per retry, 100 ms each.
            consumer.assign(partitions)
            try:
                starts = await consumer.beginning_offsets(partitions)
                ends = await consumer.end_offsets(partitions)
            except KafkaError as exc:
                raise BrokerError(f"reading offsets failed: {exc!r}") from exc
    described = []
    for name in names:
        if name not in metadata:
            described.append(TopicDescription(name=name, exists=False, role=roles.get(name)))
            continue
        details = tuple(
            PartitionDescription(
                partition=p["partition"],
                leader=p["leader"],
                replicas=tuple(p["replicas"]),
                isr=tuple(p["isr"]),
                start_offset=starts[TopicPartition(name, p["partition"])],
                end_offset=ends[TopicPartition(name, p["partition"])],
            )
            for p in sorted(metadata[name], key=lambda p: int(p["partition"]))
        )
        described.append(
            TopicDescription(
                name=name,
                exists=True,
                role=roles.get(name),
                partitions=len(details),
                replication_factor=len(details[0].replicas) if details else 0,
                configs=dict(sorted(states[name][1].items())),
                partition_details=details,
            )
        )
    return described


def _admin(settings: KafkaSettings) -> AbstractAsyncContextManager[Any]:
    return connected(AIOKafkaAdminClient(**client_options(settings)), settings)


async def _metadata(admin: Any) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    """The number of brokers, and every topic's partitions. It asks for all topics rather than
    the catalog's: a metadata request naming a missing topic creates it where auto-create is on."""
    try:
        cluster: dict[str, Any] = await admin.describe_cluster()
        topics: list[dict[str, Any]] = await admin.describe_topics()
    except KafkaError as exc:
        raise BrokerError(f"reading cluster metadata failed: {exc!r}") from exc
    found = {t["topic"]: t["partitions"] for t in topics if t["error_code"] == 0}
    return len(cluster["brokers"]), found


async def _configs(
    admin: Any, names: list[str]
) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    """{topic: (every config, the configs set on the topic)}."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    try:
        responses = await admin.describe_configs(resources)
    except KafkaError as exc:
        raise BrokerError(f"reading topic configs failed: {exc!r}") from exc
    found: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for response in responses:
        for error_code, error_message, _, name, entries in response.resources:
            if error_code:
                raise BrokerError(
                    f"reading the configs of {name} failed (error {error_code}: {error_message})"
                )
            every: dict[str, str] = {}
            overrides: dict[str, str] = {}
            for entry in entries:
                key, value, dynamic = entry[0], entry[1], _is_override(response, entry)
                every[key] = "" if value is None else value
                if dynamic and value is not None:
                    overrides[key] = value
            found[name] = (every, overrides)
    return found


def _is_override(response: Any, entry: tuple[Any, ...]) -> bool:
    # v0 carries is_default where v1+ carries config_source.
    if response.API_VERSION == 0:
        return not entry[3]
    return bool(entry[3] == _DYNAMIC_TOPIC_CONFIG)


async def _read_cluster(admin: Any, names: list[str]) -> tuple[int, dict[str, TopicState]]:
    brokers, metadata = await _metadata(admin)
    present = [name for name in names if name in metadata]
    configs = await _configs(admin, present)
    states = {
        name: TopicState(
            name=name,
            partitions=len(metadata[name]),
            replication_factor=len(metadata[name][0]["replicas"]) if metadata[name] else 0,
            configs=configs[name][0],
            overrides=configs[name][1],
        )
        for name in present
    }
    return brokers, states


async def _create(admin: Any, changes: list[Change]) -> None:
    if not changes:
        return
    topics = [
        NewTopic(c.topic, c.partitions, c.replication_factor, topic_configs=dict(c.configs))
        for c in changes
    ]
    response = await admin.create_topics(topics)
    failed = [
        f"{topic} (error {code}: {message})"
        for topic, code, *rest in response.topic_errors
        for message in [rest[0] if rest else ""]
        # Created meanwhile by someone else: the settle step checks what it looks like.
        if code not in (0, _TOPIC_ALREADY_EXISTS)
    ]
    if failed:
        raise BrokerError(
            f"creating topics failed: {'; '.join(failed)}; fix the cause and run apply again "
            "(topics created so far are kept)"
        )


async def _add_partitions(admin: Any, changes: list[Change]) -> None:
    if changes:
        await admin.create_partitions({c.topic: NewPartitions(c.partitions) for c in changes})


async def _alter(admin: Any, changes: list[Change]) -> None:
    if not changes:
        return
    # AlterConfigs sets a topic's whole override set, so each carries the overrides it keeps.
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, c.topic, configs=dict(c.overrides))
        for c in changes
    ]
    for response in await admin.alter_configs(resources):
        for error_code, error_message, _, name in response.resources:
            if error_code:
                raise BrokerError(
                    f"altering the configs of {name} failed (error {error_code}: "
                    f"{error_message}); fix the catalog's configs for it and run apply again"
                )


async def _settle(admin: Any, plan: Plan) -> None:
    """Wait until the cluster shows the plan done. A broker's metadata and configs lag the
    controller a little, and a second apply right after must find nothing left to do."""
    names = [spec.name for spec in plan.catalog.topics]
    deadline = time.monotonic() + _SETTLE_SECONDS
    while True:
        brokers, states = await _read_cluster(admin, names)
        left = diff_catalog(
            plan.catalog,
            states,
            brokers=brokers,
            replication_factor_cap=plan.replication_factor_cap,
            allow_policy_change=True,
        ).changes
        if not left:
            return
        if time.monotonic() > deadline:
            raise BrokerError(
                f"after {_SETTLE_SECONDS:.0f}s the cluster still differs from the catalog: "
                f"{'; '.join(f'{c.topic}: {c.detail}' for c in left[:5])}; run "
                "`expediter topics apply --dry-run` to look"
            )
        await asyncio.sleep(0.2)
