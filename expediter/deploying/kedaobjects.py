"""The keda/ objects: the TriggerAuthentication and one ScaledObject per agent.

An agent's ScaledObject has the triggers its ``AgentScaling.signal`` picks: ``lag`` (KEDA's
Kafka trigger, named ``lag``), ``work`` (an ``external`` trigger on ``expediter scaler``, named
``work``) or ``both`` (KEDA and the HPA take the larger replica count of the two).

Called by :mod:`expediter.deploying.manifests`.
"""

from __future__ import annotations

from typing import Any

from expediter.authoring.agents import Agent
from expediter.deploying.objects import Object, agent_labels, meta
from expediter.deploying.profiles import DeploySettings, ScalingProfile
from expediter.messaging import TopicNames
from expediter.scaling.working import external_metadata

__all__ = ["scaled_object", "trigger_authentication", "triggers"]


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


def triggers(
    agent: Agent[Any, Any], profile: ScalingProfile, names: TopicNames, settings: DeploySettings
) -> list[Object]:
    """The ScaledObject's triggers for the agent's declared signal (lag, work or both)."""
    chosen: list[Object] = []
    if agent.scaling.uses_lag:
        chosen.append(_lag_trigger(agent, profile, names, settings))
    if agent.scaling.uses_work:
        trigger = agent.scaling.trigger(
            agent.capability, concurrency=agent.resources.concurrency, estimator=agent.estimator
        )
        address = agent.scaling.scaler_address or settings.scaler_address
        chosen.append(
            {"type": "external", "name": "work", "metadata": external_metadata(trigger, address)}
        )
    return chosen


def _lag_trigger(
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
        "type": "kafka",
        "name": "lag",
        "metadata": metadata,
        "authenticationRef": {"name": settings.kafka_secret},
    }


def scaled_object(
    agent: Agent[Any, Any], profile: ScalingProfile, names: TopicNames, settings: DeploySettings
) -> Object:
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
            "triggers": triggers(agent, profile, names, settings),
        },
    }
