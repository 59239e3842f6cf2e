"""The workloads of k8s/base: each agent's Deployment, Service and PDB, and the orchestrator's.

Called by :mod:`expediter.deploying.manifests`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from expediter.deploying.objects import (
    APP_LABEL,
    CONTAINER,
    KAFKA_CA_DIR,
    KAFKA_CLIENT_CONFIG,
    MODEL_CACHE,
    PART_OF,
    Object,
    agent_labels,
    common_env,
    container_security,
    env,
    http_get,
    kafka_ca_volume,
    meta,
    pdb,
    pod_spec,
    selector,
    service,
)
from expediter.deploying.profiles import DeploySettings, ScalingProfile

if TYPE_CHECKING:
    from expediter.deploying.manifests import AgentSource

__all__ = ["agent_objects", "orchestrator"]


def agent_objects(
    source: AgentSource, profile: ScalingProfile, settings: DeploySettings
) -> tuple[Object, Object, Object]:
    agent = source.agent
    labels = agent_labels(agent)
    variables = [
        # The pod's name: the worker's instance, hence its transactional id.
        {"name": "EXPEDITER_INSTANCE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        # Static membership pays off only with stable names (a StatefulSet); a Deployment's
        # pods get new names, and a removed static member would hold its partitions until its
        # session times out.
        env("EXPEDITER_STATIC_MEMBERSHIP", "false"),
        env("EXPEDITER_DRAIN_SECONDS", str(profile.drain_seconds)),
        env("EXPEDITER_HARD_DEADLINE_SECONDS", str(settings.hard_deadline_seconds)),
        env("EXPEDITER_ENGINE_KIND", "rules"),
        *common_env(settings),
    ]
    container = {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["worker", source.path],
        "ports": [{"name": "http", "containerPort": settings.http_port, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": KAFKA_CLIENT_CONFIG}}],
        "env": variables,
        "resources": {"requests": dict(profile.requests), "limits": dict(profile.limits)},
        # /healthz answers once the engine has loaded its model: the startup budget is the
        # model load, and liveness takes over only after it.
        "startupProbe": http_get(
            "/healthz", profile.startup_period_seconds, profile.startup_failure_threshold
        ),
        "livenessProbe": http_get("/healthz", 10, 3),
        # Ready = joined, not draining, and polled within EXPEDITER_READY_POLL_SECONDS.
        "readinessProbe": http_get("/readyz", 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(settings.prestop_seconds)]}}},
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir of the pod's own)
            {"name": "model-cache", "mountPath": MODEL_CACHE},
            {"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True},
        ],
    }
    volumes = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "model-cache", "emptyDir": {"sizeLimit": profile.model_cache_size}},
        kafka_ca_volume(settings),
    ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(agent.name, settings.namespace, labels),
        "spec": {
            # No `replicas`: KEDA's HPA owns the count, and an apply must not reset it.
            "selector": {"matchLabels": selector(agent.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": {**PART_OF, **labels},
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(settings.http_port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec(container, volumes, profile.grace_seconds),
            },
        },
    }
    # At most one replica of an agent evicted at a time (a node drain); KEDA's scale-down is
    # not an eviction and is paced by the HPA behavior instead.
    budget = pdb(agent.name, labels, {"maxUnavailable": 1}, settings)
    return deployment, service(agent.name, labels, settings), budget


def orchestrator(settings: DeploySettings) -> tuple[Object, Object, Object]:
    name = "orchestrator"
    labels = {APP_LABEL: name, "app.kubernetes.io/component": "orchestrator"}
    variables = [
        # The workflow table lives in Kafka; a standby replica takes over a partition without
        # replaying its changelog.
        env("EXPEDITER_STANDBY_REPLICAS", "1"),
        env("EXPEDITER_DATA_DIR", "/var/lib/expediter"),
        env("EXPEDITER_WORKFLOWS_DIR", "/app/workflows"),
        *common_env(settings),
    ]
    container = {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["orchestrator"],
        "ports": [{"name": "http", "containerPort": settings.http_port, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": KAFKA_CLIENT_CONFIG}}],
        "env": variables,
        "resources": {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
        "startupProbe": http_get("/healthz", 5, 24),
        "livenessProbe": http_get("/healthz", 10, 3),
        # Not ready while the table recovers from its changelog or a rebalance runs.
        "readinessProbe": http_get("/readyz", 10, 3),
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(settings.prestop_seconds)]}}},
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir of the pod's own)
            {"name": "data", "mountPath": "/var/lib/expediter"},
            {"name": "model-cache", "mountPath": MODEL_CACHE},
            {"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True},
        ],
    }
    volumes = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "model-cache", "emptyDir": {"sizeLimit": "256Mi"}},
        kafka_ca_volume(settings),
    ]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(name, settings.namespace, labels),
        "spec": {
            # Not scaled by KEDA: a fixed pair, so a crash or a drain never stops the joins.
            "replicas": settings.orchestrator_replicas,
            "selector": {"matchLabels": selector(name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": {**PART_OF, **labels}},
                "spec": pod_spec(container, volumes, settings.orchestrator_grace_seconds),
            },
        },
    }
    budget = pdb(name, labels, {"minAvailable": 1}, settings)
    return deployment, service(name, labels, settings), budget
