"""The keda/ objects: the TriggerAuthentication and one ScaledObject per agent.

An agent's ScaledObject has the triggers its ``AgentScaling.signal`` picks: ``lag`` (KEDA's
Kafka trigger, named ``lag``), ``work`` (an ``external`` trigger on ``expediter scaler``, named
``work``) or ``both`` (KEDA and the HPA take the larger replica count of the two). Whatever the
signal, a further Kafka trigger per retry tier (``retry-10s``, ``retry-60s``, before ``work``)
counts the tasks that wait out a delay there, since ``expediter scaler`` reads the task topic
only. With ``lag`` it has the lag trigger's numbers; with ``work`` alone it only wakes and keeps
the agent (``lagThreshold`` :data:`WAKE_LAG_THRESHOLD`: one replica's worth for any backlog), and
the work trigger sizes it.

Called by :mod:`expediter.deploying.manifests`.
"""

from __future__ import annotations

from typing import Any

from expediter.authoring.agents import Agent
from expediter.deploying.objects import SIGNAL_LABEL, Object, agent_labels, meta
from expediter.deploying.profiles import DeploySettings, ScalingProfile
from expediter.messaging import TopicNames
from expediter.scaling.working import external_metadata
from expediter.settings import WorkerSettings
from expediter.worker.delaying import RetryTiers, Tier

__all__ = [
    "WAKE_LAG_THRESHOLD",
    "retry_tiers",
    "scaled_object",
    "trigger_authentication",
    "triggers",
]

WAKE_LAG_THRESHOLD = 1_000_000
"""``lagThreshold`` of the retry-tier triggers of an agent on pending work alone: the HPA's
proposal for a tier, ``ceil(lag / lagThreshold)``, is then 1 for any lag a tier holds, so a
waiting task wakes the agent and keeps one replica, and the work trigger alone sizes it (tier
tasks wait out a delay: more replicas would not run them sooner)."""


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
    lag = _lag_trigger(agent, profile, names, settings)
    if agent.scaling.uses_lag:
        chosen.append(lag)
        chosen += _tier_triggers(agent, names, lag)
    else:  # work alone: the tiers only wake and keep the agent
        wake = {**lag["metadata"], "lagThreshold": str(WAKE_LAG_THRESHOLD)}
        chosen += _tier_triggers(agent, names, {**lag, "metadata": wake})
    if agent.scaling.uses_work:
        trigger = agent.scaling.trigger(
            agent.capability, concurrency=agent.resources.concurrency, estimator=agent.estimator
        )
        address = agent.scaling.scaler_address or settings.scaler_endpoint
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


def _tier_triggers(agent: Agent[Any, Any], names: TopicNames, lag: Object) -> list[Object]:
    """A Kafka trigger per retry tier the worker reads (``retry.<capability>.<N>s``, in the
    same consumer group), like the lag trigger but on the tier topic: a task waiting out a
    delay there must keep the agent up, and wake it from zero, though the task topic is empty
    (KEDA is active when any trigger is; the HPA takes the largest metric)."""
    return [
        {**lag, "name": f"retry-{tier.seconds}s",
         "metadata": {**lag["metadata"], "topic": tier.topic},
         "authenticationRef": dict(lag["authenticationRef"])}
        for tier in retry_tiers(names, agent.capability)
    ]  # fmt: skip


def retry_tiers(names: TopicNames, capability: str) -> list[Tier]:
    """The retry tiers a worker with the default settings reads, shortest delay first."""
    seconds = WorkerSettings.model_fields["retry_tiers"].get_default(call_default_factory=True)
    return RetryTiers(names, capability, seconds).tiers


def scaled_object(
    agent: Agent[Any, Any], profile: ScalingProfile, names: TopicNames, settings: DeploySettings
) -> Object:
    labels = {**agent_labels(agent), SIGNAL_LABEL: agent.scaling.signal}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta(agent.name, settings.namespace, labels),
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
