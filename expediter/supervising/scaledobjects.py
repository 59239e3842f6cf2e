"""The agents to scale, read from the SAME keda/ ScaledObjects (and Deployments) a cluster uses.

:func:`read_scaled_agents` turns each ScaledObject in ``keda/`` into a :class:`ScaledAgent`: its
capability (the ``expediter.io/capability`` label), its Kafka triggers and/or its work-based
``external`` trigger (``expediter scaler``), and its ScaledObject spec as
:mod:`expediter.scaling` reads them (so what is refused here is what KEDA refuses), and the topic
and consumer group with ``EXPEDITER_TOPIC_PREFIX`` applied (:class:`TopicNames`), so a test can
isolate itself under a prefix. From the scale target's Deployment in ``k8s/base/agents/`` it takes
what a local replica needs to behave like the pod: the agent file (the container's ``worker``
argument), ``terminationGracePeriodSeconds`` (when a draining replica is killed) and the drain
settings of its environment.

Who calls it: :class:`expediter.supervising.running.Supervisor` (``expediter up``), ``expediter
watch`` and the demo.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from expediter.deploying.objects import CAPABILITY_LABEL
from expediter.errors import ConfigurationError
from expediter.messaging import TopicNames
from expediter.scaling import (
    KafkaTrigger,
    ScaledObjectSpec,
    parse_trigger,
)
from expediter.scaling.scaledobjects import read_spec
from expediter.scaling.working import ExternalTrigger, parse_external_trigger

__all__ = ["DEFAULT_GRACE_SECONDS", "ScaledAgent", "read_scaled_agents", "select_agents"]

DEFAULT_GRACE_SECONDS = 30
"""Kubernetes' default terminationGracePeriodSeconds, when no Deployment says otherwise."""
_POD_ENV = ("EXPEDITER_DRAIN_SECONDS", "EXPEDITER_HARD_DEADLINE_SECONDS")
"""Deployment env values a local replica takes too (unless the environment sets them)."""


@dataclass(frozen=True)
class ScaledAgent:
    """One ScaledObject, ready for a local supervisor or a watcher."""

    name: str
    """The ScaledObject's (and its Deployment's) name, e.g. ``soil-analyzer``."""
    capability: str
    agent_file: str
    """The worker's argument, relative to the repository root: ``agents/soil_analyzer.py``."""
    trigger: KafkaTrigger
    spec: ScaledObjectSpec
    topic: str
    """The task topic, prefixed."""
    group: str
    """The consumer group whose lag scales this agent, prefixed."""
    also: tuple[tuple[KafkaTrigger, str], ...] = ()
    """Further Kafka triggers and their topics, prefixed, read with the same group: the
    agent's retry tiers, whose waiting tasks must wake an agent at zero (KEDA activates on any
    trigger; the HPA takes the largest metric, :func:`expediter.scaling.simulating.combined`),
    on pending work alone too (then with a ``lagThreshold`` that only wakes and keeps it)."""
    grace_seconds: int = DEFAULT_GRACE_SECONDS
    """terminationGracePeriodSeconds: after SIGTERM, a replica gets this long, then SIGKILL."""
    pod_env: Mapping[str, str] = field(default_factory=dict)
    source: str = ""
    """The manifest file, for messages."""
    work: ExternalTrigger | None = None
    """The work-based ``external`` trigger (``expediter scaler``), when the agent has one."""
    work_metadata: Mapping[str, str] = field(default_factory=dict)
    """That trigger's metadata as written: what KEDA would send the scaler."""
    uses_lag: bool = True
    """Whether a Kafka trigger scales it too (False: pending work alone; ``trigger`` is then a
    default one, for the lag shown)."""

    @property
    def stem(self) -> str:
        """The agent file's stem, ``soil_analyzer``: what ``--agents`` takes."""
        return Path(self.agent_file).stem

    def with_overrides(
        self, *, polling_interval: int | None = None, cooldown: int | None = None,
        max_replicas: int | None = None,
    ) -> ScaledAgent:  # fmt: skip
        """The same agent with demo overrides of the manifest's pollingInterval, cooldownPeriod
        (and initialCooldownPeriod) and maxReplicaCount (lowered only)."""
        spec = self.spec
        if polling_interval is not None:
            spec = replace(spec, polling_interval=polling_interval)
        if cooldown is not None:
            spec = replace(
                spec, cooldown_period=cooldown,
                initial_cooldown_period=min(spec.initial_cooldown_period, cooldown),
            )  # fmt: skip
        if max_replicas is not None:
            top = max(min(spec.max_replica_count, max_replicas), spec.min_replica_count, 1)
            spec = replace(spec, max_replica_count=top)
        return replace(self, spec=spec)


def read_scaled_agents(root: Path, names: TopicNames) -> list[ScaledAgent]:
    """Every ScaledObject in ``root/keda/*.yaml``, sorted by name; ConfigurationError lists
    every problem (one a line, naming the file)."""
    folder = root / "keda"
    if not folder.is_dir():
        raise ConfigurationError(
            f"{folder}: no such folder; run from the repository root (or `expediter keda render`)"
        )
    problems: list[str] = []
    agents: list[ScaledAgent] = []
    for path in sorted(folder.glob("*.yaml")):
        relative = path.relative_to(root).as_posix()
        for document in _load(path, relative, problems):
            if document.get("kind") != "ScaledObject":
                continue
            try:
                agents.append(_scaled_agent(root, relative, document, names))
            except ConfigurationError as exc:
                problems += [f"{relative}: {line}" for line in str(exc).splitlines()]
    if problems:
        raise ConfigurationError("\n".join(problems))
    if not agents:
        raise ConfigurationError(f"{folder}: holds no ScaledObject; run `expediter keda render`")
    return sorted(agents, key=lambda a: a.name)


def select_agents(agents: Sequence[ScaledAgent], wanted: Sequence[str]) -> list[ScaledAgent]:
    """The agents named in ``wanted`` (file stems, ScaledObject names or capabilities); all when
    empty. An unknown name raises ConfigurationError listing the known ones."""
    if not wanted:
        return list(agents)
    chosen: list[ScaledAgent] = []
    unknown: list[str] = []
    for want in wanted:
        match = [a for a in agents if want in (a.stem, a.name, a.capability)]
        if not match:
            unknown.append(want)
        chosen += [a for a in match if a not in chosen]
    if unknown:
        known = ", ".join(a.stem for a in agents)
        raise ConfigurationError(
            f"--agents: no agent named {', '.join(unknown)}; choose from {known}"
        )
    return chosen


def _load(path: Path, relative: str, problems: list[str]) -> list[Mapping[str, Any]]:
    try:
        loaded = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        problems.append(f"{relative}: cannot be read as YAML ({exc}); fix it or render it again")
        return []
    return [d for d in loaded if isinstance(d, Mapping)]


def _scaled_agent(
    root: Path, relative: str, document: Mapping[str, Any], names: TopicNames
) -> ScaledAgent:
    metadata = _mapping(document.get("metadata"), "metadata")
    name = str(metadata.get("name", ""))
    labels = _mapping(metadata.get("labels"), "metadata.labels")
    capability = labels.get(CAPABILITY_LABEL)
    if not name or not isinstance(capability, str) or not capability:
        raise ConfigurationError(
            f"ScaledObject needs metadata.name and the label {CAPABILITY_LABEL}; render it again"
        )
    spec_doc = _mapping(document.get("spec"), "spec")
    kafka = [
        t
        for t in spec_doc.get("triggers") or []
        if isinstance(t, Mapping) and t.get("type") == "kafka"
    ]
    external = [t for t in spec_doc.get("triggers") or []
                if isinstance(t, Mapping) and t.get("type") == "external"]  # fmt: skip
    if (not kafka and not external) or len(external) > 1:
        raise ConfigurationError(
            f"ScaledObject/{name} has {len(kafka)} Kafka and {len(external)} external triggers; "
            "a supervisor needs a Kafka one (the first reads the task topic, others its retry "
            "tiers), the work-based external one (expediter scaler, with a Kafka trigger per "
            "retry tier), or both"
        )
    work, work_metadata = _work_trigger(name, external[0]) if external else (None, {})
    read = [_kafka_trigger(name, n, trigger) for n, trigger in enumerate(kafka)]
    # On pending work alone the Kafka triggers read the retry tiers only (kedaobjects); the lag
    # shown is then the capability's group's on its task topic.
    uses_lag = bool(read) and not (external and read[0][1].startswith("retry."))
    if not uses_lag:
        read = [(KafkaTrigger(), TopicNames().tasks(capability), TopicNames().group(capability)),
                *read]  # fmt: skip
    trigger, topic, group = read[0]
    strays = [t for _, t, g in read[1:] if g != group]
    if strays:
        raise ConfigurationError(
            f"ScaledObject/{name}: the Kafka triggers on {', '.join(strays)} read another "
            f"consumer group than {group}; the local supervisor reads one group per agent"
        )
    spec = _spec(name, spec_doc)
    target = _mapping(spec_doc.get("scaleTargetRef"), "spec.scaleTargetRef").get("name", name)
    agent_file, grace, pod_env = _deployment(root, str(target))
    if not (root / agent_file).is_file():
        raise ConfigurationError(
            f"ScaledObject/{name}: its agent file {agent_file} does not exist; check "
            "scaleTargetRef and the Deployment's worker argument"
        )
    return ScaledAgent(
        name=name, capability=capability, agent_file=agent_file, trigger=trigger, spec=spec,
        topic=f"{names.prefix}{topic}", group=f"{names.prefix}{group}", grace_seconds=grace,
        pod_env=pod_env, source=relative,
        also=tuple((t, f"{names.prefix}{topic}") for t, topic, _ in read[1:]),
        work=work, work_metadata=work_metadata, uses_lag=uses_lag,
    )  # fmt: skip


def _work_trigger(name: str, document: Mapping[str, Any]) -> tuple[ExternalTrigger, dict[str, str]]:
    raw = _mapping(document.get("metadata"), "spec.triggers[external].metadata")
    trigger = parse_external_trigger(raw, where=f"ScaledObject/{name}.trigger")
    return trigger, {str(k): str(v) for k, v in raw.items()}


def _kafka_trigger(name: str, n: int, document: Mapping[str, Any]) -> tuple[KafkaTrigger, str, str]:
    raw = _mapping(document.get("metadata"), f"spec.triggers[kafka {n}].metadata")
    trigger = parse_trigger(raw, where=f"ScaledObject/{name}.trigger")
    topic, group = raw.get("topic"), raw.get("consumerGroup")
    if not isinstance(topic, str) or not isinstance(group, str) or not topic or not group:
        raise ConfigurationError(
            f"ScaledObject/{name}: a Kafka trigger needs topic and consumerGroup (the local "
            "supervisor reads that group's lag on that topic)"
        )
    return trigger, topic, group


def _spec(name: str, spec: Mapping[str, Any]) -> ScaledObjectSpec:
    return read_spec(spec, f"ScaledObject/{name}")


def _deployment(root: Path, target: str) -> tuple[str, int, dict[str, str]]:
    """(agent file, grace seconds, pod env) from k8s/base/agents/<target>.yaml; by convention
    (``agents/<target with _>.py``, Kubernetes' default grace) when that file is absent."""
    fallback: tuple[str, int, dict[str, str]] = (
        f"agents/{target.replace('-', '_')}.py",
        DEFAULT_GRACE_SECONDS,
        {},
    )
    path = root / "k8s" / "base" / "agents" / f"{target}.yaml"
    if not path.is_file():
        return fallback
    for document in _load(path, path.as_posix(), []):
        if document.get("kind") != "Deployment":
            continue
        pod = _mapping(_mapping(_mapping(document.get("spec"), "").get("template"), "")
                       .get("spec"), "")  # fmt: skip
        containers = [c for c in pod.get("containers") or [] if isinstance(c, Mapping)]
        if not containers:
            return fallback
        args = [str(a) for a in containers[0].get("args") or []]
        agent_file = args[1] if len(args) > 1 and args[0] == "worker" else fallback[0]
        grace = pod.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        env = {
            str(e["name"]): str(e["value"])
            for e in containers[0].get("env") or []
            if isinstance(e, Mapping) and e.get("name") in _POD_ENV and "value" in e
        }
        return agent_file, int(grace) if isinstance(grace, int) else DEFAULT_GRACE_SECONDS, env
    return fallback


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be a mapping, got {type(value).__name__}")
    return value
