"""The keda/ objects: the TriggerAuthentication and one ScaledObject per agent.

Called by :mod:`expediter.deploying.manifests`.
"""

from __future__ import annotations

from typing import Any

from expediter.authoring.agents import Agent
from expediter.deploying.objects import Object, agent_labels, meta
from expediter.deploying.profiles import DeploySettings, ScalingProfile
from expediter.messaging import TopicNames

__all__ = ["scaled_object", "trigger_authentication"]


def trigger_authentication(settings: DeploySettings) -> Object:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": meta(settings.kafka_secret, settings.namespace),
        "spec": {
            "secretTargetRef": [
                {"parameter": key, "name": settings.kafka_secret, "key": key}
                for key in ("sasl", "username", "password", "tls", "ca")
            ]
        },
    }


def scaled_object(
    agent: Agent[Any, Any], profile: ScalingProfile, names: TopicNames, settings: DeploySettings
) -> Object:
    metadata = {
        # The worker's own variable, resolved by KEDA from the target's container (envFrom
        # the Kafka client ConfigMap): one place says where the cluster is.
        "bootstrapServersFromEnv": "EXPEDITER_BOOTSTRAP",
        "consumerGroup": names.group(agent.capability),
        "topic": names.tasks(agent.capability),
        "lagThreshold": str(profile.lag_threshold),
        "activationLagThreshold": str(profile.activation_lag_threshold),
        # The worker's consumer starts a new group at the earliest offset: KEDA must count
        # that lag the same way, or a new group's backlog would look like lag 1
        # (docs/architecture.md#keda-arithmetic).
        "offsetResetPolicy": "earliest",
        "allowIdleConsumers": "false",
        "excludePersistentLag": "false",
        "scaleToZeroOnInvalidOffset": "false",
    }
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta(agent.name, settings.namespace, agent_labels(agent)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": agent.name},
            "minReplicaCount": profile.min_replicas,
            "maxReplicaCount": profile.max_replicas,
            "pollingInterval": profile.polling_interval,
            "cooldownPeriod": profile.cooldown_period,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": dict(profile.behavior)}},
            "triggers": [
                {
                    "type": "kafka",
                    "name": "lag",
                    "metadata": metadata,
                    "authenticationRef": {"name": settings.kafka_secret},
                }
            ],
        },
    }
