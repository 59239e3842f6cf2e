"""The files of a deployment: every file of ``keda/`` and ``k8s/``, from the agents and the catalog.

:func:`build_manifests` returns them as :class:`Manifest` objects (a path and its documents, in
a fixed order); :mod:`expediter.deploying.rendering` writes them. Nothing here reads the
cluster or the environment: the same agents and catalog always give the same objects, which is
what makes the committed files checkable for drift.

The layout, and the module that lays out each part::

    keda/                     ScaledObject per agent, the TriggerAuthentication   kedaobjects
    keda/examples/            the reasoning agent scaled on lag and pending work, kedaobjects
                              and expediter scaler's objects (not in              scalerobjects
                              keda/kustomization.yaml: applied by hand)
    k8s/base/                 namespace, RBAC, NetworkPolicy, Kafka client        clusterobjects
                              ConfigMap, topics/<topic>.yaml (Strimzi KafkaTopic)
                              agents/<name>.yaml (Deployment, Service, PDB),      workloads
                              orchestrator.yaml; includes ../../keda
                              scaler.yaml (expediter scaler), when an agent       scalerobjects
                              scales on pending work
    k8s/overlays/local/       a laptop cluster: PLAINTEXT, no Secret, one broker  overlays
    k8s/overlays/gpu/         GPU agents get a GPU, its node pool, llama          overlays

What a GPU agent needs regardless of the node (a long startupProbe, a slow scale-up and
scale-down) is in base, because it follows from the agent, not from the cluster.

Called by :mod:`expediter.deploying.rendering` (``expediter keda render``) and the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from expediter.authoring.agents import Agent
from expediter.authoring.loading import load_agent
from expediter.authoring.scaling import AgentScaling
from expediter.deploying.clusterobjects import (
    kafka_client_config,
    kafka_topic,
    keda_secret_reader,
    namespace,
    network_policy,
    service_account,
)
from expediter.deploying.kedaobjects import scaled_object, trigger_authentication
from expediter.deploying.objects import (
    APP_LABEL,
    CAPABILITY_LABEL,
    CONTAINER,
    Manifest,
    topic_object_name,
)
from expediter.deploying.overlays import gpu_overlay, kustomization, local_overlay
from expediter.deploying.profiles import DeploySettings, ScalingProfile, scaling_profile
from expediter.deploying.scalerobjects import SCALER, scaler_objects
from expediter.deploying.workloads import agent_objects, orchestrator
from expediter.errors import ConfigurationError
from expediter.messaging import Catalog, TopicNames

__all__ = [
    "APP_LABEL",
    "CAPABILITY_LABEL",
    "CONTAINER",
    "WORK_EXAMPLE",
    "AgentSource",
    "Manifest",
    "build_manifests",
    "load_sources",
    "topic_object_name",
]


WORK_EXAMPLE = (
    "reasoning",
    AgentScaling(signal="both", target_drain_seconds=120, tokens_per_second=20),
)
"""keda/examples/<name>-work.yaml: this agent's ScaledObject with these scaling settings, what
its file would render with ``scaling=AgentScaling(...)``. An example, outside the kustomization,
so the clusters that run no ``expediter scaler`` (the dev cluster, the local overlay) keep lag."""


@dataclass(frozen=True)
class AgentSource:
    """An agent and the file that declares it (the worker's argument)."""

    agent: Agent[Any, Any]
    path: str
    """Relative to the repository root, e.g. ``agents/soil_analyzer.py``."""


def load_sources(folder: Path) -> list[AgentSource]:
    """Every agent of ``folder`` with its file, in file order (as ``load_agents`` finds them)."""
    if not folder.is_dir():
        raise ConfigurationError(f"{folder}: no such folder of agents; pass --agents DIR")
    files = [p for p in sorted(folder.glob("*.py")) if not p.stem.startswith("_")]
    sources = [AgentSource(load_agent(p), f"{folder.resolve().name}/{p.name}") for p in files]
    seen: dict[str, str] = {}
    for source in sources:
        for key in (f"name {source.agent.name!r}", f"capability {source.agent.capability!r}"):
            if key in seen:
                raise ConfigurationError(
                    f"{key} is declared by both {seen[key]} and {source.path}: each agent "
                    "needs its own name and capability (they name its Deployment and topics)"
                )
            seen[key] = source.path
    return sources


def build_manifests(
    sources: Sequence[AgentSource], catalog: Catalog, settings: DeploySettings | None = None
) -> list[Manifest]:
    """Every file of keda/ and k8s/, in a stable order."""
    settings = settings or DeploySettings()
    names = TopicNames()
    profiled = [(s, _profile(s.agent, catalog, settings)) for s in sources]
    manifests: list[Manifest] = []

    keda: list[Manifest] = [
        Manifest("keda/kafka-trigger-authentication.yaml", (trigger_authentication(settings),))
    ]
    for source, profile in profiled:
        keda.append(
            Manifest(
                f"keda/{source.agent.name}.yaml",
                (scaled_object(source.agent, profile, names, settings),),
                f"{source.path} and the topic catalog",
            )
        )
    manifests += keda
    manifests.append(kustomization("keda", [m.path for m in keda]))
    manifests += _work_example(profiled, names, settings)

    base: list[Manifest] = [
        Manifest("k8s/base/namespace.yaml", (namespace(settings),)),
        Manifest("k8s/base/serviceaccount.yaml", (service_account(settings),)),
        Manifest("k8s/base/keda-secret-reader.yaml", keda_secret_reader(settings)),
        Manifest("k8s/base/networkpolicy.yaml", (network_policy(settings),)),
        Manifest("k8s/base/kafka-client.yaml", (kafka_client_config(settings),)),
        Manifest("k8s/base/orchestrator.yaml", orchestrator(settings)),
    ]
    if any(source.agent.scaling.uses_work for source in sources):
        scaler = scaler_objects(settings)
        base.append(Manifest("k8s/base/scaler.yaml", scaler, "the agents scaled on pending work"))
    for source, profile in profiled:
        base.append(
            Manifest(
                f"k8s/base/agents/{source.agent.name}.yaml",
                agent_objects(source, profile, settings),
                source.path,
            )
        )
    for spec in catalog.topics:
        base.append(
            Manifest(
                f"k8s/base/topics/{topic_object_name(spec.name)}.yaml",
                (kafka_topic(spec, settings),),
                "the topic catalog",
            )
        )
    manifests += base
    manifests.append(kustomization("k8s/base", [m.path for m in base], extra=["../../keda"]))
    manifests += local_overlay(settings)
    manifests += gpu_overlay(settings)
    return manifests


def _work_example(
    profiled: Sequence[tuple[AgentSource, ScalingProfile]],
    names: TopicNames,
    settings: DeploySettings,
) -> list[Manifest]:
    name, scaling = WORK_EXAMPLE
    for source, profile in profiled:
        if source.agent.name == name and source.agent.scaling.signal == "lag":
            agent = replace(source.agent, scaling=scaling)
            return [
                Manifest(
                    f"keda/examples/{name}-work.yaml",
                    (scaled_object(agent, profile, names, settings),),
                    f"{source.path} with scaling=AgentScaling(signal={scaling.signal!r}, "
                    f"target_drain_seconds={scaling.target_drain_seconds:g}, tokens_per_second="
                    f"{scaling.tokens_per_second:g}) (WORK_EXAMPLE in "
                    "expediter/deploying/manifests.py);\n# an example: apply it in place of "
                    f"keda/{name}.yaml, with keda/examples/{SCALER}.yaml",
                ),
                Manifest(
                    f"keda/examples/{SCALER}.yaml",
                    scaler_objects(settings),
                    "expediter/deploying/scalerobjects.py (what k8s/base/scaler.yaml holds "
                    "once an agent scales on pending work);\n# an example: expediter scaler, "
                    f"for keda/examples/{name}-work.yaml",
                ),
            ]
    return []


def _profile(agent: Agent[Any, Any], catalog: Catalog, settings: DeploySettings) -> ScalingProfile:
    topic = TopicNames().tasks(agent.capability)
    try:
        spec = catalog.topic(topic)
    except KeyError:
        raise ConfigurationError(
            f"agent {agent.name}: {catalog.source} has no topic {topic}; add "
            f"{agent.capability!r} to its capabilities (or a {topic} entry with role tasks)"
        ) from None
    return scaling_profile(agent, spec.partitions, settings)
