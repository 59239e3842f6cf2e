"""What a deployment is tuned by: :class:`DeploySettings` (the cluster) and :class:`ScalingProfile`
(one agent's KEDA and pod numbers), with the defaults derived from the agent's resources.

The numbers below are the ones that must agree across the Deployment, the ScaledObject and the
worker's own settings, so they are computed in one place: :func:`scaling_profile` turns an agent's
:class:`~expediter.events.AgentResources` and its task topic's partitions into a profile, and
:mod:`expediter.deploying.manifests` only lays the profile out as Kubernetes objects.

Called by :mod:`expediter.deploying.manifests` and the tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from expediter import __version__
from expediter.authoring.agents import Agent
from expediter.errors import ConfigurationError

__all__ = [
    "DRAIN_COMMIT_MARGIN_SECONDS",
    "GRACE_MARGIN_SECONDS",
    "DeploySettings",
    "ScalingProfile",
    "scaling_profile",
]

DRAIN_COMMIT_MARGIN_SECONDS = 5
"""Added to the longest task to make the drain: the task's transaction still has to commit."""
GRACE_MARGIN_SECONDS = 5
"""Added on top of preStop + drain + hard deadline, so the worker's own watchdog (exit 70) always
fires before the kubelet's SIGKILL and a hung drain is reported as such."""


@dataclass(frozen=True)
class DeploySettings:
    """The cluster the manifests are rendered for. The defaults are a production cluster with
    Strimzi, KEDA and SASL/TLS; the ``local`` overlay patches what differs on a laptop cluster."""

    namespace: str = "expediter"
    """Where the agents, the orchestrator and their KEDA objects live."""
    image: str = f"expediter:{__version__}"
    """The runtime image (Dockerfile); the ``local`` overlay retags it ``expediter:dev``."""
    gpu_image: str = f"expediter-gpu:{__version__}"
    """The image with the ``[llm]`` extra, which the ``gpu`` overlay gives GPU agents."""
    kafka_cluster: str = "expediter"
    """The Strimzi ``Kafka`` resource's name: the ``strimzi.io/cluster`` label of every topic."""
    kafka_namespace: str = "kafka"
    """Where the Strimzi cluster and its topic operator live; KafkaTopics go there."""
    bootstrap: str = "expediter-kafka-bootstrap.kafka.svc:9093"
    """Strimzi's bootstrap Service for ``kafka_cluster`` (``<cluster>-kafka-bootstrap``), TLS
    listener. Also what KEDA reads, through ``bootstrapServersFromEnv``."""
    local_bootstrap: str = "expediter-kafka-bootstrap.kafka.svc:9092"
    """The plain listener the ``local`` overlay uses (no SASL, no TLS)."""
    security_protocol: str = "SASL_SSL"
    sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_secret: str = "expediter-kafka"  # noqa: S105 (the Secret's name, not a secret)
    """Created by whoever runs the cluster, never committed. Keys: ``sasl`` (KEDA's word for the
    mechanism: ``scram_sha512``), ``username``, ``password``, ``tls`` (``enable``), ``ca`` (PEM)."""
    scaler_address: str | None = None
    """Where KEDA reaches ``expediter scaler`` for agents scaled on pending work (an agent's
    ``AgentScaling.scaler_address`` wins); None: the ``expediter-scaler`` Service of
    ``namespace`` (:attr:`scaler_endpoint`)."""
    keda_namespace: str = "keda"
    keda_service_account: str = "keda-operator"
    """KEDA's operator; granted read access to ``kafka_secret`` alone, for clusters that install
    KEDA with its secret access restricted."""
    gpu_node_selector: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({"nvidia.com/gpu.present": "true"})
    )
    """The GPU pool: the label NVIDIA's GPU feature discovery puts on GPU nodes."""
    prestop_seconds: int = 5
    hard_deadline_seconds: int = 5
    """EXPEDITER_HARD_DEADLINE_SECONDS: after the drain, shutdown itself gets this long."""
    http_port: int = 8080
    kafka_ports: tuple[int, int] = (9092, 9094)
    """The broker ports the NetworkPolicy lets pods reach (Strimzi's plain, TLS, external)."""
    orchestrator_replicas: int = 2
    orchestrator_grace_seconds: int = 60

    @property
    def scaler_endpoint(self) -> str:
        """``scaler_address``, else ``expediter-scaler.<namespace>.svc:9090``: the scaler that
        ``keda render`` adds to the agents' namespace (:mod:`expediter.deploying.scalerobjects`),
        so a render for another namespace follows it."""
        return self.scaler_address or f"expediter-scaler.{self.namespace}.svc:9090"


@dataclass(frozen=True)
class ScalingProfile:
    """One agent's numbers: KEDA's trigger and ScaledObject fields, the HPA behavior, and the
    pod's shutdown and startup budgets."""

    accelerator: Literal["cpu", "gpu"]
    lag_threshold: int
    activation_lag_threshold: int
    min_replicas: int
    max_replicas: int
    polling_interval: int
    cooldown_period: int
    behavior: Mapping[str, Any]
    """The HPA ``behavior`` object, camelCase, exactly as it goes into the ScaledObject."""
    drain_seconds: int
    """EXPEDITER_DRAIN_SECONDS: the longest task plus its commit."""
    grace_seconds: int
    """terminationGracePeriodSeconds: preStop + drain + hard deadline + margin."""
    startup_period_seconds: int
    startup_failure_threshold: int
    requests: Mapping[str, str]
    limits: Mapping[str, str]
    model_cache_size: str

    @property
    def startup_budget_seconds(self) -> int:
        """How long the startupProbe lets the model load before the kubelet restarts the pod."""
        return self.startup_period_seconds * self.startup_failure_threshold


def _policy(kind: str, value: int, period: int) -> dict[str, Any]:
    return {"type": kind, "value": value, "periodSeconds": period}


def _cpu_behavior() -> dict[str, Any]:
    # Kubernetes' own scale-up (the larger of +4 pods and +100% per 15 s), spelled out so the
    # local supervisor reads the same numbers. Scale-down halves at most once a minute after
    # five calm minutes: each removed pod costs the group a rebalance, so shed them in steps.
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [_policy("Pods", 4, 15), _policy("Percent", 100, 15)],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 300,
            "selectPolicy": "Max",
            "policies": [_policy("Percent", 50, 60)],
        },
    }


def _gpu_behavior() -> dict[str, Any]:
    # A GPU pod takes minutes to load its model and the lag metric (AverageValue) ignores
    # readiness: left alone, the HPA keeps adding pods for lag that loading pods will soon
    # take. So: the need must hold for a minute, then one pod a minute. A GPU pod removed
    # throws its loaded model away, so scale-down waits ten calm minutes and goes one pod
    # per five minutes.
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 60,
            "selectPolicy": "Max",
            "policies": [_policy("Pods", 1, 60)],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 600,
            "selectPolicy": "Max",
            "policies": [_policy("Pods", 1, 300)],
        },
    }


def scaling_profile(
    agent: Agent[Any, Any], partitions: int, settings: DeploySettings | None = None
) -> ScalingProfile:
    """The defaults for ``agent`` whose task topic has ``partitions`` partitions.

    - ``lagThreshold`` = 2 x concurrency: a replica is "full" with one round of tasks running
      and one waiting, so queueing adds at most one task's time to a task's latency.
    - ``maxReplicaCount`` = partitions: a replica beyond them would get no partition
      (docs/architecture.md#keda-arithmetic).
    - CPU agents scale to zero (they start in seconds) and wake on any lag; GPU agents keep one
      warm replica, since a cold start is a model load.
    """
    settings = settings or DeploySettings()
    if partitions < 1:
        raise ConfigurationError(
            f"agent {agent.name}: its task topic has {partitions} partitions; give "
            f"tasks.{agent.capability} at least 1 in topics/topics.yaml"
        )
    resources = agent.resources
    drain = math.ceil(resources.max_task_seconds) + DRAIN_COMMIT_MARGIN_SECONDS
    grace = settings.prestop_seconds + drain + settings.hard_deadline_seconds
    grace += GRACE_MARGIN_SECONDS
    lag_threshold = 2 * resources.concurrency
    if resources.accelerator == "gpu":
        return ScalingProfile(
            accelerator="gpu",
            lag_threshold=lag_threshold,
            activation_lag_threshold=0,
            min_replicas=1,
            max_replicas=partitions,
            polling_interval=30,
            cooldown_period=600,
            behavior=_gpu_behavior(),
            drain_seconds=drain,
            grace_seconds=grace,
            # /healthz answers only once the engine (the model) has loaded: 30 x 10 s = 5 min.
            startup_period_seconds=10,
            startup_failure_threshold=30,
            requests={"cpu": "1", "memory": "2Gi"},
            limits={"cpu": "2", "memory": "4Gi"},
            model_cache_size="2Gi",
        )
    return ScalingProfile(
        accelerator="cpu",
        lag_threshold=lag_threshold,
        activation_lag_threshold=0,
        min_replicas=0,
        max_replicas=partitions,
        polling_interval=15,
        cooldown_period=300,
        behavior=_cpu_behavior(),
        drain_seconds=drain,
        grace_seconds=grace,
        startup_period_seconds=5,
        startup_failure_threshold=24,
        requests={"cpu": "250m", "memory": "256Mi"},
        limits={"cpu": "1", "memory": "512Mi"},
        model_cache_size="1Gi",
    )
