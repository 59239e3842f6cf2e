"""``expediter keda check``: the refusals that KEDA and Kubernetes would not make themselves.

KEDA happily scales a group to more replicas than its topic has partitions (the extra replicas
sit idle), rejects some trigger combinations only at run time, in its operator's log, and the
kubelet SIGKILLs a pod whose grace period is shorter than its task. :func:`check_documents`
refuses each of these up front, from the manifests alone:

- a ScaledObject whose ``maxReplicaCount`` exceeds its topic's partitions (from the catalog),
  unless its trigger sets ``allowIdleConsumers``;
- a ScaledObject with neither one Kafka trigger nor an ``external`` one (the work-based trigger
  on ``expediter scaler``), or an external trigger the scaler would refuse (its metadata, no
  ``scalerAddress``, another agent's capability);
- a Kafka trigger KEDA would refuse: ``lagThreshold`` not > 0, ``activationLagThreshold`` < 0,
  ``allowIdleConsumers`` with ``limitToPartitionsWithLag``, ``limitToPartitionsWithLag`` with
  ``ensureEvenDistributionOfPartitions``, either of those without a ``topic``, values KEDA cannot
  parse; and, for this project, a trigger not on its agent's own group and task topic, or
  beyond that one (or with the work trigger alone) a Kafka trigger not on one of the agent's
  retry tiers in its group;
- an agent Deployment whose ``terminationGracePeriodSeconds`` cannot cover the agent's longest
  task and its shutdown (preStop, drain, hard deadline), or whose drain is shorter than the task.

Each :class:`Refusal` names the file, the object, the value and the fix. The trigger's rules
are KEDA's, as the scaling engine reads them (:func:`expediter.scaling.parse_trigger`: one
parser for ``check``, ``simulate`` and the supervisor).

Called by ``expediter keda check`` and ``expediter keda render`` (which refuses to write
manifests that this module refuses), and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from expediter.authoring.agents import Agent
from expediter.deploying.objects import CAPABILITY_LABEL, Manifest
from expediter.errors import ConfigurationError
from expediter.messaging import Catalog, TopicNames
from expediter.scaling import parse_trigger
from expediter.scaling.working import parse_external_trigger
from expediter.settings import WorkerSettings

__all__ = [
    "CHECKED_DIRS",
    "Document",
    "Refusal",
    "check_documents",
    "documents_of",
    "read_documents",
    "trigger_problems",
]

CHECKED_DIRS = ("keda", "k8s/base")
"""What ``check`` reads: the objects themselves. Overlays only patch placement and engines."""

_KEDA_MAX_REPLICAS = 100
"""KEDA's default ``maxReplicaCount``."""
_KUBERNETES_GRACE = 30
"""Kubernetes' default ``terminationGracePeriodSeconds``."""


@dataclass(frozen=True)
class Document:
    """One Kubernetes object and the file it is in."""

    path: str
    obj: Mapping[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    @property
    def name(self) -> str:
        metadata = self.obj.get("metadata") or {}
        return str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Refusal:
    """A refused value: where it is, what is wrong with it, and how to fix it."""

    path: str
    obj: str
    problem: str
    fix: str

    @property
    def message(self) -> str:
        return f"{self.path}: {self.obj}: {self.problem}; {self.fix}"

    def as_dict(self) -> dict[str, str]:
        return {"file": self.path, "object": self.obj, "problem": self.problem, "fix": self.fix}


def documents_of(manifests: Sequence[Manifest]) -> list[Document]:
    """The objects of freshly built manifests that ``check`` would read from disk."""
    return [
        Document(m.path, d)
        for m in manifests
        if _checked(m.path)
        for d in m.documents
        if isinstance(d, Mapping)
    ]


def read_documents(root: Path) -> list[Document]:
    """Every object in the YAML files of keda/ and k8s/base/ under ``root``."""
    documents: list[Document] = []
    for folder in CHECKED_DIRS:
        base = root / folder
        if not base.is_dir():
            raise ConfigurationError(
                f"{base}: no such folder; run `expediter keda render` first, or pass --root "
                "the repository root"
            )
        for path in sorted(base.rglob("*.yaml")):
            relative = path.relative_to(root).as_posix()
            if not _checked(relative):
                continue
            try:
                loaded = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigurationError(
                    f"{relative}: cannot be read as YAML ({exc}); fix it or render it again"
                ) from exc
            documents += [Document(relative, d) for d in loaded if isinstance(d, Mapping)]
    return documents


def _checked(path: str) -> bool:
    return path.startswith(tuple(f"{d}/" for d in CHECKED_DIRS)) and not path.endswith(
        "/kustomization.yaml"
    )


def check_documents(
    documents: Sequence[Document], agents: Sequence[Agent[Any, Any]], catalog: Catalog
) -> list[Refusal]:
    """Every refusal for ``documents``, in file order; an empty list means all is well."""
    by_capability = {agent.capability: agent for agent in agents}
    deployments = {d.name: d for d in documents if d.kind == "Deployment"}
    refusals: list[Refusal] = []
    for document in documents:
        if document.kind == "ScaledObject":
            refusals += _check_scaled_object(document, catalog, deployments, by_capability)
        elif document.kind == "Deployment" and _capability(document):
            refusals += _check_grace(document, by_capability)
    return refusals


# -- ScaledObjects ---------------------------------------------------------------------------


def trigger_problems(metadata: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(problem, fix) for each thing KEDA's Kafka scaler would refuse in ``metadata``.

    The rules are the scaling engine's (:func:`expediter.scaling.parse_trigger`), so what
    ``check`` refuses is exactly what ``keda simulate`` and the supervisor refuse.
    """
    try:
        parse_trigger(metadata, where="trigger")
    except ConfigurationError as exc:
        return [_problem_and_fix(line) for line in str(exc).splitlines() if line.strip()]
    return []


def _problem_and_fix(line: str) -> tuple[str, str]:
    # The parser writes each problem as "<what is wrong>; <the fix>".
    problem, _, fix = line.partition("; ")
    return problem, fix or "see KEDA's Kafka scaler documentation for the key"


def _check_scaled_object(
    document: Document,
    catalog: Catalog,
    deployments: Mapping[str, Document],
    by_capability: Mapping[str, Agent[Any, Any]],
) -> list[Refusal]:
    refusals: list[Refusal] = []

    def refuse(problem: str, fix: str) -> None:
        refusals.append(Refusal(document.path, document.label, problem, fix))

    spec = document.obj.get("spec") or {}
    triggers = [t for t in spec.get("triggers") or () if isinstance(t, Mapping)]
    kafka = [t for t in triggers if t.get("type") == "kafka"]
    external = [t for t in triggers if t.get("type") == "external"]
    # The agent's retry tiers have a Kafka trigger each (kedaobjects): after the lag trigger,
    # or, on pending work alone, before the external one. The first Kafka trigger is the lag
    # one unless it reads a tier; the others must read the agent's tiers in its group.
    if kafka and not (external and _reads_a_tier(kafka[0])):
        tiers, kafka = kafka[1:], kafka[:1]
    else:
        tiers, kafka = kafka, []
    if not (kafka or external):
        refuse(
            f"has {len(kafka)} Kafka triggers and {len(external)} external ones; an agent "
            "scales on its group's lag (one kafka trigger), its pending work (one external "
            "trigger on expediter scaler) or both",
            "keep one trigger of type kafka on the agent's consumer group and task topic, "
            "and/or one of type external (AgentScaling.signal)",
        )
        return refusals
    capabilities: list[str] = []
    for trigger in external:
        problems, capability = _external_problems(trigger.get("metadata") or {})
        for problem, fix in problems:
            refuse(problem, fix)
        if capability:
            capabilities.append(capability)
    metadata: Mapping[str, Any] = (kafka[0].get("metadata") or {}) if kafka else {}
    if tiers:
        # The lag trigger's topic and group, else (work alone) the work trigger's capability's.
        owner = str(metadata.get("topic", "")).removeprefix("tasks.") if kafka else (
            capabilities[0] if capabilities else "")  # fmt: skip
        group = metadata.get("consumerGroup") if kafka else TopicNames().group(owner)
        for tier in tiers:
            refusals += _tier_refusals(document, tier, owner, group, catalog)
    if kafka:
        for problem, fix in trigger_problems(metadata):
            refuse(problem, fix)

    minimum, maximum = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount")
    maximum = _KEDA_MAX_REPLICAS if maximum is None else maximum
    if isinstance(minimum, int) and isinstance(maximum, int) and minimum > maximum:
        refuse(
            f"minReplicaCount {minimum} is above maxReplicaCount {maximum}",
            "lower minReplicaCount or raise maxReplicaCount",
        )

    topic = str(metadata.get("topic", "")).strip()
    if not kafka and capabilities:  # work alone: the scaler reads the capability's task topic
        topic = TopicNames().tasks(capabilities[0])
    if not topic:
        refuse(
            "the Kafka trigger has no topic, so its partitions (the most replicas that can "
            "work) are unknown",
            "set topic to the agent's task topic, tasks.<capability>",
        )
        return refusals
    try:
        partitions = catalog.topic(topic).partitions
    except KeyError:
        refuse(
            f"topic {topic} is not in {catalog.source}",
            "set the trigger's topic to a task topic of the catalog, or add the topic there",
        )
        return refusals
    idle_ok = str(metadata.get("allowIdleConsumers", "false")).strip() == "true"
    if isinstance(maximum, int) and maximum > partitions and not idle_ok:
        refuse(
            f"maxReplicaCount {maximum} is above the {partitions} partitions of {topic}: the "
            f"replicas beyond {partitions} would get no partition and sit idle",
            f"set maxReplicaCount to at most {partitions}, raise the partitions of {topic} in "
            f'{catalog.source}, or set allowIdleConsumers: "true" on the trigger if idle '
            "replicas are wanted",
        )
    if kafka:
        refusals += _check_target(document, metadata, topic, deployments, by_capability)
    refusals += _check_work_target(document, capabilities, deployments)
    return refusals


def _reads_a_tier(trigger: Mapping[str, Any]) -> bool:
    return str((trigger.get("metadata") or {}).get("topic", "")).startswith("retry.")


def _tier_refusals(
    document: Document, tier: Mapping[str, Any], capability: str, wanted: object,
    catalog: Catalog,
) -> list[Refusal]:  # fmt: skip
    """A further Kafka trigger must read a retry tier of ``capability`` in group ``wanted``."""
    metadata = tier.get("metadata") or {}
    problems = list(trigger_problems(metadata))
    topic, group = str(metadata.get("topic", "")), metadata.get("consumerGroup")
    names = [spec.name for spec in catalog.retry_tiers(capability)] if capability else []
    if topic not in names or group != wanted:
        problems.append((
            f"a further Kafka trigger reads {topic or 'no topic'} in group {group}: only the "
            f"retry tiers of tasks.{capability or '<capability>'} "
            f"({', '.join(names) or 'none in the catalog'}) may, in the agent's group {wanted}",
            "keep one kafka trigger on the task topic (unless the agent scales on pending work "
            "alone) and one per retry tier (keda render)",
        ))  # fmt: skip
    return [Refusal(document.path, document.label, problem, fix) for problem, fix in problems]


def _external_problems(metadata: Mapping[str, Any]) -> tuple[list[tuple[str, str]], str]:
    """(problem, fix) for each thing ``expediter scaler`` would refuse, and the capability."""
    if not str(metadata.get("scalerAddress", "")).strip():
        return [
            (
                "the external trigger has no scalerAddress, so KEDA cannot reach expediter scaler",
                "set scalerAddress to the scaler's host:port (AgentScaling.scaler_address)",
            )
        ], ""
    try:
        trigger = parse_external_trigger(metadata, where="external trigger")
    except ConfigurationError as exc:
        return [_problem_and_fix(line) for line in str(exc).splitlines() if line.strip()], ""
    return [], trigger.capability


def _check_work_target(
    document: Document, capabilities: Sequence[str], deployments: Mapping[str, Document]
) -> list[Refusal]:
    # The work trigger names a capability: another agent's would scale this one on its work.
    target = (document.obj.get("spec") or {}).get("scaleTargetRef") or {}
    wanted = _capability(deployments.get(str(target.get("name", ""))))
    return [
        Refusal(
            document.path,
            document.label,
            f"external trigger capability {capability!r} is not the {wanted!r} that "
            f"Deployment/{target.get('name')} serves",
            f"set capability to {wanted}",
        )
        for capability in capabilities
        if wanted is not None and capability != wanted
    ]


def _check_target(
    document: Document,
    metadata: Mapping[str, Any],
    topic: str,
    deployments: Mapping[str, Document],
    by_capability: Mapping[str, Agent[Any, Any]],
) -> list[Refusal]:
    # KEDA cannot know which group a Deployment consumes with; a trigger on another agent's
    # group would scale this one on someone else's lag.
    target = (document.obj.get("spec") or {}).get("scaleTargetRef") or {}
    deployment = deployments.get(str(target.get("name", "")))
    capability = _capability(deployment) if deployment else None
    if capability is None or capability not in by_capability:
        return []
    names = TopicNames()
    refusals: list[Refusal] = []
    group = str(metadata.get("consumerGroup", "")).strip()
    for key, value, wanted in (
        ("consumerGroup", group, names.group(capability)),
        ("topic", topic, names.tasks(capability)),
    ):
        if value != wanted:
            refusals.append(
                Refusal(
                    document.path,
                    document.label,
                    f"trigger {key} {value!r} is not the {wanted!r} that "
                    f"Deployment/{target.get('name')} ({capability}) uses",
                    f"set {key} to {wanted}",
                )
            )
    return refusals


# -- Deployments -----------------------------------------------------------------------------


def _capability(document: Document | None) -> str | None:
    if document is None:
        return None
    labels = (document.obj.get("metadata") or {}).get("labels") or {}
    value = labels.get(CAPABILITY_LABEL)
    return str(value) if value else None


def _check_grace(document: Document, by_capability: Mapping[str, Agent[Any, Any]]) -> list[Refusal]:
    capability = _capability(document)
    agent = by_capability.get(capability or "")
    if agent is None:
        return [
            Refusal(
                document.path,
                document.label,
                f"no agent declares capability {capability!r}, so its longest task is unknown",
                "render again (`expediter keda render`) or fix the expediter.io/capability label",
            )
        ]
    pod = ((document.obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = [c for c in pod.get("containers") or () if isinstance(c, Mapping)]
    env = _env_values(containers[0]) if containers else {}
    fields = WorkerSettings.model_fields
    drain = _seconds(env.get("EXPEDITER_DRAIN_SECONDS"), fields["drain_seconds"].default)
    hard = _seconds(
        env.get("EXPEDITER_HARD_DEADLINE_SECONDS"), fields["hard_deadline_seconds"].default
    )
    prestop = _prestop_seconds(containers[0]) if containers else 0.0
    grace = pod.get("terminationGracePeriodSeconds", _KUBERNETES_GRACE)
    task = agent.resources.max_task_seconds
    refusals: list[Refusal] = []
    if drain < task:
        refusals.append(
            Refusal(
                document.path,
                document.label,
                f"EXPEDITER_DRAIN_SECONDS {drain:g} is shorter than the longest task of "
                f"{agent.name} ({task:g} s): a task running at SIGTERM would be cancelled and "
                "done again elsewhere",
                f"set EXPEDITER_DRAIN_SECONDS to at least {math.ceil(task)}",
            )
        )
    needed = math.ceil(prestop + max(drain, task) + hard)
    if not isinstance(grace, int | float) or grace < needed:
        refusals.append(
            Refusal(
                document.path,
                document.label,
                f"terminationGracePeriodSeconds {grace} is shorter than the longest task of "
                f"{agent.name} ({task:g} s) with its shutdown: preStop {prestop:g} s + drain "
                f"{max(drain, task):g} s + hard deadline {hard:g} s = {needed} s, so the kubelet "
                "would SIGKILL a pod mid-task on a scale-down",
                f"set terminationGracePeriodSeconds to at least {needed} "
                "(`expediter keda render` does)",
            )
        )
    return refusals


def _env_values(container: Mapping[str, Any]) -> dict[str, str]:
    return {
        str(e.get("name")): str(e["value"])
        for e in container.get("env") or ()
        if isinstance(e, Mapping) and "value" in e
    }


def _seconds(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        return default


def _prestop_seconds(container: Mapping[str, Any]) -> float:
    # Only a sleep has a known length; another preStop hook counts as instant.
    prestop = (container.get("lifecycle") or {}).get("preStop") or {}
    sleep = prestop.get("sleep")
    if isinstance(sleep, Mapping):
        return _seconds(str(sleep.get("seconds", 0)), 0.0)
    command = (prestop.get("exec") or {}).get("command") or []
    if len(command) == 2 and str(command[0]).rsplit("/", 1)[-1] == "sleep":
        return _seconds(str(command[1]), 0.0)
    return 0.0
