"""A ScaledObject manifest read as KEDA reads it: the spec fields that scale and its Kafka trigger.

:func:`read_scaled_object` takes one decoded ScaledObject (``apiVersion: keda.sh/v1alpha1``,
camelCase, as applied to a cluster) and returns what the engine needs to do what KEDA does with
it: a :class:`~expediter.scaling.triggering.KafkaTrigger` and a
:class:`~expediter.scaling.simulating.ScaledObjectSpec` (minReplicaCount, maxReplicaCount,
pollingInterval, cooldownPeriod, initialCooldownPeriod,
``advanced.horizontalPodAutoscalerConfig.behavior`` and ``fallback``), with KEDA's defaults for
what is left out. Every problem is listed in one ConfigurationError, one a line, naming the field.

Who calls it: the conformance tests (tests/cluster/test_conformance.py) feed the engine the very
object they apply to the cluster; anything that reads ScaledObjects for the engine can.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from expediter.errors import ConfigurationError
from expediter.scaling.behaving import parse_behavior
from expediter.scaling.fallback import parse_fallback
from expediter.scaling.simulating import ScaledObjectSpec
from expediter.scaling.triggering import KafkaTrigger, parse_trigger

__all__ = ["ScaledObjectManifest", "read_scaled_object", "read_spec"]

_NUMBERS = {
    "minReplicaCount": ("min_replica_count", 0),
    "maxReplicaCount": ("max_replica_count", 100),
    "pollingInterval": ("polling_interval", 30),
    "cooldownPeriod": ("cooldown_period", 300),
    "initialCooldownPeriod": ("initial_cooldown_period", 0),
}


@dataclass(frozen=True)
class ScaledObjectManifest:
    """One ScaledObject, ready for a :class:`~expediter.scaling.simulating.Simulation`."""

    name: str
    namespace: str | None
    trigger: KafkaTrigger
    spec: ScaledObjectSpec
    metadata: Mapping[str, str] = field(default_factory=dict)
    """The Kafka trigger's metadata as written (topic, consumerGroup, bootstrapServers...)."""


def read_scaled_object(document: Mapping[str, Any]) -> ScaledObjectManifest:
    """One ScaledObject document; ConfigurationError lists every problem."""
    if document.get("kind") != "ScaledObject":
        raise ConfigurationError(f"expected kind ScaledObject, got {document.get('kind')!r}")
    meta = _mapping(document.get("metadata"), "metadata")
    name = str(meta.get("name") or "")
    where = f"ScaledObject/{name or '?'}"
    spec = _mapping(document.get("spec"), f"{where}.spec")
    problems: list[str] = []
    scaled = _spec(spec, where, problems)
    trigger, metadata = _kafka_trigger(spec, where, problems)
    if problems or scaled is None or trigger is None:
        raise ConfigurationError("\n".join(problems))
    namespace = meta.get("namespace")
    return ScaledObjectManifest(name, None if namespace is None else str(namespace), trigger,
                                scaled, metadata)  # fmt: skip


def read_spec(spec: Mapping[str, Any], where: str) -> ScaledObjectSpec:
    """A ScaledObject's ``spec`` fields that scale, with KEDA's defaults for what is left out;
    ``where`` (``ScaledObject/<name>``) prefixes each problem. ConfigurationError lists every
    problem. The local supervisor reads keda/ with it (its triggers it reads itself)."""
    problems: list[str] = []
    scaled = _spec(spec, where, problems)
    if problems or scaled is None:
        raise ConfigurationError("\n".join(problems))
    return scaled


def _spec(spec: Mapping[str, Any], where: str, problems: list[str]) -> ScaledObjectSpec | None:
    numbers: dict[str, int] = {}
    for key, (attribute, default) in _NUMBERS.items():
        value = spec.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where}.spec.{key} must be a whole number, got {value!r}")
        else:
            numbers[attribute] = value
    advanced = _mapping(spec.get("advanced"), f"{where}.spec.advanced")
    hpa = _mapping(advanced.get("horizontalPodAutoscalerConfig"),
                   f"{where}.spec.advanced.horizontalPodAutoscalerConfig")  # fmt: skip
    behavior = fallback = None
    try:
        behavior = parse_behavior(hpa.get("behavior"), where=f"{where}.behavior")
    except ConfigurationError as exc:
        problems += str(exc).splitlines()
    try:
        fallback = parse_fallback(spec.get("fallback"), where=f"{where}.spec.fallback")
    except ConfigurationError as exc:
        problems += str(exc).splitlines()
    if problems:
        return None
    try:
        return ScaledObjectSpec(**numbers, behavior=behavior, fallback=fallback,
                                where=f"{where}.spec")  # fmt: skip
    except ConfigurationError as exc:
        problems += str(exc).splitlines()
        return None


def _kafka_trigger(
    spec: Mapping[str, Any], where: str, problems: list[str]
) -> tuple[KafkaTrigger | None, dict[str, str]]:
    triggers = spec.get("triggers")
    kafka = [t for t in triggers or [] if isinstance(t, Mapping) and t.get("type") == "kafka"]
    if not isinstance(triggers, list) or len(kafka) != 1 or len(triggers) != 1:
        problems.append(
            f"{where}.spec.triggers must hold exactly one trigger, of type kafka (the engine "
            "models KEDA's Kafka scaler alone)"
        )
        return None, {}
    metric_type = kafka[0].get("metricType", "AverageValue")
    if metric_type != "AverageValue":
        problems.append(
            f"{where}.spec.triggers[0].metricType must be AverageValue (the Kafka trigger's "
            f"default, which the engine models), got {metric_type!r}"
        )
    raw = _mapping(kafka[0].get("metadata"), f"{where}.spec.triggers[0].metadata")
    try:
        trigger = parse_trigger(raw, where=f"{where}.trigger")
    except ConfigurationError as exc:
        problems += str(exc).splitlines()
        return None, {}
    return trigger, {str(k): str(v) for k, v in raw.items()}


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{where} must be a mapping, got {type(value).__name__}")
    return value
