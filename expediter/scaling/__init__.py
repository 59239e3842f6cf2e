"""KEDA's scaling arithmetic on this machine: the Kafka scaler, KEDA's scale loop and the HPA.

Pure computation, no I/O and no clock: callers supply offsets and times. The same engine runs
``expediter keda simulate`` over a scenario's timeline and, later, a local supervisor over live
lag, so what you watch locally is what the cluster would do (docs/architecture.md).

Drive it step by step::

    simulation = Simulation(parse_trigger({"lagThreshold": "10"}), ScaledObjectSpec())
    result = simulation.step(t, latest=[120, 80], committed=[None, 40])
    result.replicas, result.reading.metric, result.reading.active

A poll whose scaler fails is ``simulation.fail(t, "broker unreachable")``: KEDA's failure count
and ``spec.fallback`` decide what the HPA reads.

Modules: :mod:`~expediter.scaling.triggering` (trigger metadata), :mod:`~.lagging` (lag, metric,
activity), :mod:`~.behaving` (HPA behavior), :mod:`~.autoscaling` (the HPA),
:mod:`~.fallback` (failures and fallback), :mod:`~.simulating` (KEDA's part and the step),
:mod:`~.scenarios` (``keda simulate`` files), :mod:`~.scaledobjects` (ScaledObject manifests).
"""

from __future__ import annotations

from expediter.scaling.autoscaling import (
    DEFAULT_TOLERANCE,
    HPA_SYNC_PERIOD_SECONDS,
    HorizontalAutoscaler,
    HpaDecision,
    Seconds,
    per_pod_replicas,
)
from expediter.scaling.behaving import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    DOWNSCALE_STABILIZATION_WINDOW_SECONDS,
    Behavior,
    ScalingPolicy,
    ScalingRules,
    parse_behavior,
)
from expediter.scaling.fallback import (
    FailureTracker,
    Fallback,
    FallbackBehavior,
    FallbackRead,
    parse_fallback,
)
from expediter.scaling.lagging import LagMeter, LagReading, PartitionLag, find_factors
from expediter.scaling.scaledobjects import ScaledObjectManifest, read_scaled_object
from expediter.scaling.scenarios import Scenario, Step, parse_scenario
from expediter.scaling.simulating import FailedStep, ScaledObjectSpec, Simulation, StepResult
from expediter.scaling.triggering import KNOWN_METADATA_KEYS, KafkaTrigger, parse_trigger

__all__ = [
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "DEFAULT_TOLERANCE",
    "DOWNSCALE_STABILIZATION_WINDOW_SECONDS",
    "HPA_SYNC_PERIOD_SECONDS",
    "KNOWN_METADATA_KEYS",
    "Behavior",
    "FailedStep",
    "FailureTracker",
    "Fallback",
    "FallbackBehavior",
    "FallbackRead",
    "HorizontalAutoscaler",
    "HpaDecision",
    "KafkaTrigger",
    "LagMeter",
    "LagReading",
    "PartitionLag",
    "ScaledObjectManifest",
    "ScaledObjectSpec",
    "ScalingPolicy",
    "ScalingRules",
    "Scenario",
    "Seconds",
    "Simulation",
    "Step",
    "StepResult",
    "find_factors",
    "parse_behavior",
    "parse_fallback",
    "parse_scenario",
    "parse_trigger",
    "per_pod_replicas",
    "read_scaled_object",
]
