"""``expediter keda check``: the refusals that KEDA and Kubernetes would not make themselves.

KEDA happily scales a group to more replicas than its topic has partitions (the extra replicas
sit idle), rejects some trigger combinations only at run time, in its operator's log, and the
kubelet SIGKILLs a pod whose grace period is shorter than its task. :func:`check_documents`
refuses each of these up front, from the manifests alone:

- a ScaledObject whose ``maxReplicaCount`` exceeds its topic's partitions (from the catalog),
  unless its trigger sets ``allowIdleConsumers``;
- a Kafka trigger KEDA would refuse: ``lagThreshold`` not > 0, ``activationLagThreshold`` < 0,
  ``allowIdleConsumers`` with ``limitToPartitionsWithLag``, ``limitToPartitionsWithLag`` with
  ``ensureEvenDistributionOfPartitions``, either of those without a ``topic``, values KEDA cannot
  parse; and, for this project, a trigger not on its agent's own group and task topic;
- an agent Deployment whose ``terminationGracePeriodSeconds`` cannot cover the agent's longest
  task and its shutdown (preStop, drain, hard deadline), or whose drain is shorter than the task.

Each :class:`Refusal` names the file, the object, the value and the fix. The rules are KEDA's
(kedacore/keda pkg/scalers/kafka_scaler.go ``kafkaMetadata.Validate``; values parsed as in
pkg/scalers/scalersconfig/typed_config.go: trimmed, empty means omitted, integers and booleans
decoded as JSON) and kept here on purpose, self-contained.

Called by ``expediter keda check`` and ``expediter keda render`` (which refuses to write
manifests that this module refuses), and the tests.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from expediter.deploying.objects import CAPABILITY_LABEL, Manifest
from expediter.errors import ConfigurationError
from expediter.messaging import Catalog, TopicNames
from expediter.settings import WorkerSettings
from expediter.worker.defining import Agent

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
_BOOLEANS = (
    "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions",
)  # fmt: skip


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
    """(problem, fix) for each thing KEDA's Kafka scaler would refuse in ``metadata``."""
    problems: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for key, raw in metadata.items():
        text = raw.strip() if isinstance(raw, str) else raw
        if text == "" or text is None:
            continue  # KEDA: an empty value is an omitted one
        values[key] = text
    lag = _integer(values, "lagThreshold", 10, problems)
    if lag is not None and lag <= 0:
        problems.append(
            (
                f"lagThreshold {lag} must be > 0 (it divides the lag)",
                "set lagThreshold to the lag one replica should take, e.g. 2 x its concurrency",
            )
        )
    activation = _integer(values, "activationLagThreshold", 0, problems)
    if activation is not None and activation < 0:
        problems.append(
            (
                f"activationLagThreshold {activation} must be >= 0",
                "set activationLagThreshold to 0 (any lag wakes the agent) or more",
            )
        )
    flags = {key: _boolean(values, key, problems) for key in _BOOLEANS}
    policy = values.get("offsetResetPolicy", "latest")
    if policy not in ("latest", "earliest"):
        problems.append(
            (
                f"offsetResetPolicy {policy!r} is neither latest nor earliest",
                "set offsetResetPolicy to earliest, as the worker's consumer starts",
            )
        )
    if flags["allowIdleConsumers"] and flags["limitToPartitionsWithLag"]:
        problems.append(
            (
                "allowIdleConsumers and limitToPartitionsWithLag are both true, which KEDA refuses",
                "keep one of them (limitToPartitionsWithLag already caps at partitions)",
            )
        )
    if flags["limitToPartitionsWithLag"] and flags["ensureEvenDistributionOfPartitions"]:
        problems.append(
            (
                "limitToPartitionsWithLag and ensureEvenDistributionOfPartitions cannot be "
                "combined",
                "keep one of them",
            )
        )
    for key in ("limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions"):
        if flags[key] and "topic" not in values:
            problems.append(
                (
                    f"{key} is true but no topic is set, and KEDA needs one for it",
                    "set topic to the agent's task topic",
                )
            )
    return problems


def _integer(
    values: Mapping[str, Any], key: str, default: int, problems: list[tuple[str, str]]
) -> int | None:
    if key not in values:
        return default
    value = values[key]
    if isinstance(value, str):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    problems.append(
        (
            f"{key} {values[key]!r} is not an integer as KEDA reads it",
            f'write {key} as a quoted integer, e.g. "{default or 10}"',
        )
    )
    return None


def _boolean(values: Mapping[str, Any], key: str, problems: list[tuple[str, str]]) -> bool:
    value = values.get(key, "false")
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    problems.append(
        (f"{key} {value!r} is not a boolean as KEDA reads it", 'write "true" or "false"')
    )
    return False


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
    if len(kafka) != 1:
        refuse(
            f"has {len(kafka)} Kafka triggers; an agent scales on exactly one, its group's lag",
            "keep one trigger of type kafka on the agent's consumer group and task topic",
        )
        return refusals
    metadata = kafka[0].get("metadata") or {}
    for problem, fix in trigger_problems(metadata):
        refuse(f"trigger: {problem}", fix)

    minimum, maximum = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount")
    maximum = _KEDA_MAX_REPLICAS if maximum is None else maximum
    if isinstance(minimum, int) and isinstance(maximum, int) and minimum > maximum:
        refuse(
            f"minReplicaCount {minimum} is above maxReplicaCount {maximum}",
            "lower minReplicaCount or raise maxReplicaCount",
        )

    topic = str(metadata.get("topic", "")).strip()
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
    refusals += _check_target(document, metadata, topic, deployments, by_capability)
    return refusals


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
