"""KEDA's scale loop with its HPA: one :meth:`Simulation.step` per poll, on offsets you supply.

A step at time ``t`` is one KEDA poll followed by one HPA sync:

1. The Kafka scaler reads lag, metric and activity (:class:`~expediter.scaling.lagging.LagMeter`);
   activity sets lastActiveTime = t.
2. KEDA's own part: at 0 replicas and active, go to max(minReplicaCount, 1); not active with
   replicas > 0 and minReplicaCount 0, go to 0 once lastActiveTime + cooldownPeriod < t (never
   active: once the first step's t + initialCooldownPeriod < t); not active below
   minReplicaCount, go to minReplicaCount.
3. When KEDA changed the count, the HPA does not act in this step. Otherwise the HPA syncs
   (:class:`~expediter.scaling.autoscaling.HorizontalAutoscaler`); at 0 replicas it only
   records its first recommendation, as a real HPA does before it finds scaling disabled.

Who calls it: :mod:`expediter.scaling.scenarios` (``expediter keda simulate``) feeds a timeline;
a local supervisor can feed live offsets the same way and apply ``replicas`` after each step.

Source: kedacore/keda pkg/scaling/executor/scale_scaledobjects.go ``RequestScale``,
``scaleToZeroOrIdle`` and ``scaleFromZeroOrIdle``; controllers/keda/hpa.go ``getHPAMinReplicas``
gives the HPA minReplicas max(minReplicaCount, 1), and ``getHPAMaxReplicas`` maxReplicaCount.
Fallback, idleReplicaCount and pause annotations are not modelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from expediter.errors import ConfigurationError
from expediter.scaling.autoscaling import HorizontalAutoscaler, HpaDecision, Seconds
from expediter.scaling.behaving import Behavior
from expediter.scaling.lagging import LagMeter, LagReading
from expediter.scaling.triggering import KafkaTrigger

__all__ = ["ScaledObjectSpec", "Simulation", "StepResult"]


@dataclass(frozen=True)
class ScaledObjectSpec:
    """The ScaledObject fields that change scaling, with KEDA's defaults."""

    min_replica_count: int = 0
    max_replica_count: int = 100
    polling_interval: int = 30
    """Seconds between KEDA polls; a simulation's steps carry their own times."""
    cooldown_period: int = 300
    initial_cooldown_period: int = 0
    behavior: Behavior | None = None
    """advanced.horizontalPodAutoscalerConfig.behavior; None is KEDA's default."""
    where: str = field(default="scaledObject", repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = []
        for name, value in (
            ("minReplicaCount", self.min_replica_count),
            ("pollingInterval", self.polling_interval),
            ("cooldownPeriod", self.cooldown_period),
            ("initialCooldownPeriod", self.initial_cooldown_period),
        ):
            if value < 0:
                problems.append(f"{self.where}.{name} must be >= 0, got {value}")
        if self.max_replica_count < max(self.min_replica_count, 1):
            # KEDA's webhook refuses min > max; the HPA needs maxReplicas >= its minimum of 1.
            problems.append(
                f"{self.where}.maxReplicaCount ({self.max_replica_count}) must be >= "
                f"max(minReplicaCount, 1) = {max(self.min_replica_count, 1)}; raise it"
            )
        if problems:
            raise ConfigurationError("\n".join(problems))

    @property
    def hpa_min_replicas(self) -> int:
        """The HPA's minReplicas: KEDA alone handles 0 <-> 1."""
        return max(self.min_replica_count, 1)


@dataclass(frozen=True)
class StepResult:
    """What one step did. :meth:`as_line` is the ``keda simulate`` output line."""

    t: Seconds
    reading: LagReading
    previous_replicas: int
    replicas: int
    keda_changed: bool
    """KEDA itself set the count in this step, so the HPA did not act."""
    keda: str | None
    """Why KEDA changed the count, or what it waits for (cooling down); None otherwise."""
    hpa: HpaDecision | None
    """The HPA's sync, or None when it did not act."""

    def as_line(self) -> dict[str, object]:
        """``{"t", "lag", "metric", "active", "replicas"}``, in that order."""
        r = self.reading
        return {"t": self.t, "lag": r.lag, "metric": r.metric, "active": r.active,
                "replicas": self.replicas}  # fmt: skip

    def explain(self) -> str:
        """One line for people: why the metric, the activity and the count are what they are."""
        r = self.reading
        metric = f"metric {r.metric}"
        if r.even_factor is not None:
            metric += f" (even distribution: {r.even_factor} x lagThreshold)"
        if r.capped:
            metric += f" (capped at {r.upper_bound} replicas' worth)"
        stuck = sum(1 for p in r.per_partition if p.persistent)
        lag = f"lag {r.lag}" + (f" ({stuck} partition(s) persistent)" if stuck else "")
        activity = "active" if r.active else "not active"
        activity += f" ({r.lag_with_persistent} with persistent lag)"
        parts = [f"t={self.t}: {lag}, {metric}, {activity}"]
        if self.keda_changed:
            parts.append(f"KEDA {self.previous_replicas} -> {self.replicas}: {self.keda}")
            parts.append("HPA does not act (KEDA changed the count)")
            return " | ".join(parts)
        if self.keda is not None:
            parts.append(f"KEDA: {self.keda}")
        if self.hpa is None:
            parts.append("HPA disabled at 0 replicas")
        else:
            proposal = "" if self.hpa.proposal is None else f"proposes {self.hpa.proposal}, "
            parts.append(
                f"HPA {self.hpa.current} -> {self.hpa.desired}: {proposal}{self.hpa.reason}"
            )
        return " | ".join(parts)


class Simulation:
    """KEDA plus its HPA for one ScaledObject with one Kafka trigger, driven step by step."""

    def __init__(
        self, trigger: KafkaTrigger, scaled_object: ScaledObjectSpec, replicas: int = 0
    ) -> None:
        if replicas < 0:
            raise ConfigurationError(f"replicas must be >= 0, got {replicas}")
        self.trigger = trigger
        self.scaled_object = scaled_object
        self._replicas = replicas
        self._meter = LagMeter(trigger)
        self._hpa = HorizontalAutoscaler(
            min_replicas=scaled_object.hpa_min_replicas,
            max_replicas=scaled_object.max_replica_count,
            target=trigger.lag_threshold,
            behavior=scaled_object.behavior,
        )
        self._created: Seconds | None = None
        self._last_step: Seconds | None = None
        self._last_active: Seconds | None = None

    @property
    def replicas(self) -> int:
        """The scale target's replica count after the last step."""
        return self._replicas

    @property
    def last_active_time(self) -> Seconds | None:
        return self._last_active

    def step(
        self, t: Seconds, latest: Sequence[int], committed: Sequence[int | None]
    ) -> StepResult:
        """One KEDA poll and one HPA sync at time ``t`` (seconds, increasing)."""
        if self._last_step is not None and t <= self._last_step:
            raise ConfigurationError(
                f"step at t={t} does not come after t={self._last_step}; give steps in "
                "increasing time"
            )
        if self._created is None:
            # The first step stands for the ScaledObject's creationTimestamp.
            self._created = t
        self._last_step = t
        reading = self._meter.read(latest, committed)
        if reading.active:
            self._last_active = t
        previous = self._replicas
        changed, keda = self._keda(t, reading.active)
        hpa: HpaDecision | None = None
        if not changed:
            if self._replicas == 0:
                self._hpa.observe(t, 0)
            else:
                hpa = self._hpa.sync(t, self._replicas, reading.metric)
                self._replicas = hpa.desired
        return StepResult(t, reading, previous, self._replicas, changed, keda, hpa)

    def _keda(self, t: Seconds, active: bool) -> tuple[bool, str | None]:
        # scale_scaledobjects.go RequestScale: (changed the count, why or what it waits for).
        spec = self.scaled_object
        if active:
            if self._replicas == 0:
                self._replicas = spec.hpa_min_replicas
                return True, "active at 0 replicas (scaleFromZeroOrIdle)"
            return False, None
        if self._replicas > 0 and spec.min_replica_count == 0:
            assert self._created is not None
            # Strictly after, as Go's Before: at exactly the deadline KEDA still waits.
            if self._last_active is None:
                deadline = self._created + spec.initial_cooldown_period
                since = f"first step + initialCooldownPeriod = {deadline:g}"
            else:
                deadline = self._last_active + spec.cooldown_period
                since = f"lastActiveTime + cooldownPeriod = {deadline:g}"
            if deadline < t:
                self._replicas = 0
                return True, f"not active and {since} has passed (scaleToZeroOrIdle)"
            return False, f"cooling down until after {since}"
        if self._replicas < spec.min_replica_count:
            self._replicas = spec.min_replica_count
            return True, "not active below minReplicaCount"
        return False, None
