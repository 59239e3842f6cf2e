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

A poll whose scaler fails is :meth:`Simulation.fail` (a :class:`FailedStep`): KEDA counts the
failure (at its poll and again at the HPA's query), and ``spec.fallback`` answers once the count
is above failureThreshold (:mod:`expediter.scaling.fallback`). Until then the metric is an error:
the HPA keeps its count, and KEDA keeps the count too (it scales an idle target to zero only with
no fallback replicas set: ``fallback.replicas: 0``). When KEDA cannot even build its scaler (the
broker is unreachable after the first failure), it skips the poll altogether.

Source: kedacore/keda pkg/scaling/executor/scale_scaledobjects.go ``RequestScale``,
``scaleToZeroOrIdle`` and ``scaleFromZeroOrIdle``; controllers/keda/hpa.go ``getHPAMinReplicas``
gives the HPA minReplicas max(minReplicaCount, 1), and ``getHPAMaxReplicas`` maxReplicaCount;
pkg/scaling/scale_handler.go ``checkScalers`` (no scale decision when the scalers cannot be
built). idleReplicaCount, pause annotations and scalingModifiers are not modelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from expediter.errors import ConfigurationError
from expediter.scaling.autoscaling import HorizontalAutoscaler, HpaDecision, Seconds
from expediter.scaling.behaving import Behavior
from expediter.scaling.fallback import FailureTracker, Fallback
from expediter.scaling.lagging import LagMeter, LagReading
from expediter.scaling.triggering import KafkaTrigger

__all__ = ["FailedStep", "ScaledObjectSpec", "Simulation", "StepResult", "combined"]


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
    fallback: Fallback | None = None
    """spec.fallback; None: a failing scaler's metric stays an error."""
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


@dataclass(frozen=True)
class FailedStep:
    """A poll whose scaler failed (:meth:`Simulation.fail`); :meth:`as_line` is its output line."""

    t: Seconds
    error: str
    failures: int
    """KEDA's count of consecutive failures after this step (status.health)."""
    fallback: bool
    """The fallback answered: ``metric`` is fallback replicas x lagThreshold."""
    metric: int | None
    """What the HPA reads; None when its query gets the error."""
    previous_replicas: int
    replicas: int
    keda_changed: bool
    keda: str | None
    hpa: HpaDecision | None
    hpa_note: str
    """Why the HPA did what it did when it did not sync (``hpa`` None)."""

    @property
    def active(self) -> bool:
        """A fallback counts as an active trigger; an error does not."""
        return self.fallback

    def as_line(self) -> dict[str, object]:
        """``{"t", "lag": null, "metric", "active", "replicas", "error", "failures",
        "fallback"}``."""
        return {"t": self.t, "lag": None, "metric": self.metric, "active": self.active,
                "replicas": self.replicas, "error": self.error, "failures": self.failures,
                "fallback": self.fallback}  # fmt: skip

    def explain(self) -> str:
        """One line for people, like :meth:`StepResult.explain`."""
        served = "error" if self.metric is None else f"metric {self.metric}"
        if self.fallback:
            served = f"fallback metric {self.metric}"
        parts = [f"t={self.t}: scaler failed ({self.error}), {self.failures} failure(s), {served}"]
        if self.keda_changed:
            parts.append(f"KEDA {self.previous_replicas} -> {self.replicas}: {self.keda}")
        elif self.keda is not None:
            parts.append(f"KEDA: {self.keda}")
        if self.hpa is not None:
            proposal = "" if self.hpa.proposal is None else f"proposes {self.hpa.proposal}, "
            parts.append(
                f"HPA {self.hpa.current} -> {self.hpa.desired}: {proposal}{self.hpa.reason}"
            )
        else:
            parts.append(self.hpa_note)
        return " | ".join(parts)


def combined(first: LagReading, others: Sequence[LagReading]) -> LagReading:
    """Several Kafka triggers of one ScaledObject read as one: KEDA is active when any trigger
    is (scale_handler.go ``getScaledObjectState``), and the HPA, given one metric per trigger,
    takes the largest replica count they propose (horizontal.go ``computeReplicasForMetrics``).
    With one target (lagThreshold) for all, a proposal grows with its metric (tolerance
    included), so the largest proposal is the largest metric's. ``lag`` and
    ``lag_with_persistent`` become the sums (every waiting task); the rest is the first's."""
    if not others:
        return first
    readings = [first, *others]
    return replace(
        first,
        lag=sum(r.lag for r in readings),
        lag_with_persistent=sum(r.lag_with_persistent for r in readings),
        metric=max(r.metric for r in readings),
        active=any(r.active for r in readings),
    )


class Simulation:
    """KEDA plus its HPA for one ScaledObject with one Kafka trigger, driven step by step."""

    def __init__(
        self,
        trigger: KafkaTrigger,
        scaled_object: ScaledObjectSpec,
        replicas: int = 0,
        *,
        also: Sequence[KafkaTrigger] = (),
    ) -> None:
        if replicas < 0:
            raise ConfigurationError(f"replicas must be >= 0, got {replicas}")
        odd = [t.lag_threshold for t in also if t.lag_threshold != trigger.lag_threshold]
        if odd:
            raise ConfigurationError(
                f"{scaled_object.where}: every Kafka trigger needs the first one's lagThreshold "
                f"({trigger.lag_threshold}), got {odd}: the engine combines triggers with one "
                "HPA target"
            )
        self.trigger = trigger
        self.scaled_object = scaled_object
        self._replicas = replicas
        self._meter = LagMeter(trigger)
        self._also = tuple(LagMeter(t) for t in also)
        """Further Kafka triggers (the agent's retry tiers, read by the same group)."""
        self._hpa = HorizontalAutoscaler(
            min_replicas=scaled_object.hpa_min_replicas,
            max_replicas=scaled_object.max_replica_count,
            target=trigger.lag_threshold,
            behavior=scaled_object.behavior,
        )
        self._created: Seconds | None = None
        self._last_step: Seconds | None = None
        self._last_active: Seconds | None = None
        self._health = FailureTracker(scaled_object.fallback)

    @property
    def replicas(self) -> int:
        """The scale target's replica count after the last step."""
        return self._replicas

    @property
    def last_active_time(self) -> Seconds | None:
        return self._last_active

    def step(
        self,
        t: Seconds,
        latest: Sequence[int],
        committed: Sequence[int | None],
        also: Sequence[tuple[Sequence[int], Sequence[int | None]]] = (),
    ) -> StepResult:
        """One KEDA poll and one HPA sync at time ``t`` (seconds, increasing); ``also``: the
        offsets of each further trigger's topic, in order (:func:`combined`); a trigger left
        without offsets (not read) does not count."""
        self._advance(t)
        if len(also) > len(self._also):
            raise ConfigurationError(
                f"{len(also)} further triggers' offsets for {len(self._also)} further triggers"
            )
        reading = combined(
            self._meter.read(latest, committed),
            [meter.read(*offsets) for meter, offsets in zip(self._also, also, strict=False)],
        )
        self._health.succeeded()
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

    def decide(
        self, t: Seconds, metric: int, active: bool
    ) -> tuple[int, bool, str | None, HpaDecision | None]:
        """KEDA's part and the HPA's sync at ``t`` for a metric read by another trigger (an
        ``external`` one, :mod:`expediter.scaling.worksimulating`), in the units of the HPA's
        target (``trigger.lag_threshold``). Returns (previous replicas, KEDA changed the count,
        why, the HPA's decision or None); :attr:`replicas` is the new count."""
        self._advance(t)
        self._health.succeeded()
        if active:
            self._last_active = t
        previous = self._replicas
        changed, keda = self._keda(t, active)
        hpa: HpaDecision | None = None
        if not changed:
            if self._replicas == 0:
                self._hpa.observe(t, 0)
            else:
                hpa = self._hpa.sync(t, self._replicas, metric)
                self._replicas = hpa.desired
        return previous, changed, keda, hpa

    def fail(self, t: Seconds, error: str, *, reachable: bool = False) -> FailedStep:
        """A KEDA poll at ``t`` whose scaler fails with ``error``, then the HPA's sync.

        ``reachable``: whether KEDA could build a new scaler should it need one. Building the
        Kafka scaler connects to the broker, so an unreachable broker is ``False`` (the usual
        outage); an error after connecting (a partition that is not there) is ``True``.
        """
        self._advance(t)
        previous = self._replicas
        threshold = self.trigger.lag_threshold
        poll = self._health.failed(reachable=reachable, current=self._replicas)
        if not poll.scaler_read:
            # scale_handler.go checkScalers: getScaledObjectState fails before RequestScale, and
            # the HPA's query fails to build the scaler the same way.
            self._hpa.observe(t, self._replicas)
            return FailedStep(
                t, error, poll.failures, False, None, previous, self._replicas, False,
                "cannot build the scaler (broker unreachable): no scale decision",
                None, self._hpa_note(None),
            )  # fmt: skip
        metric = None if poll.replicas is None else poll.replicas * threshold
        if metric is not None:
            # The fallback answers without an error and counts as active (getScalerState).
            self._last_active = t
            changed, keda = self._keda(t, True)
        elif self.scaled_object.fallback is not None and self.scaled_object.fallback.replicas:
            # RequestScale: not active, an error, fallback replicas set: nothing, not even a
            # scale to zero, so that the HPA can apply the fallback after failureThreshold.
            changed, keda = False, "waiting for the fallback after failureThreshold"
        elif self.scaled_object.fallback is None:
            changed, keda = False, "triggers not working (Ready False): KEDA keeps the count"
        else:
            changed, keda = self._keda(t, False)
        hpa: HpaDecision | None = None
        note = "HPA does not act (KEDA changed the count)"
        if not changed:
            if self._replicas == 0:
                self._hpa.observe(t, 0)
                note = "HPA disabled at 0 replicas"
            else:
                # The HPA's own query is one more read of the failing metric.
                query = self._health.failed(reachable=reachable, current=self._replicas)
                if query.replicas is None:
                    self._hpa.observe(t, self._replicas)
                    note = self._hpa_note(query.failures)
                    metric = None
                else:
                    metric = query.replicas * threshold
                    hpa = self._hpa.sync(t, self._replicas, metric)
                    self._replicas = hpa.desired
        failures = self._health.failures
        return FailedStep(t, error, failures, metric is not None, metric, previous, self._replicas,
                          changed, keda, hpa, note)  # fmt: skip

    def _hpa_note(self, failures: int | None) -> str:
        if self._replicas == 0:
            return "HPA disabled at 0 replicas"
        counted = "" if failures is None else f" ({failures} failure(s))"
        return f"HPA keeps {self._replicas}: its metric query failed{counted}"

    def _advance(self, t: Seconds) -> None:
        if self._last_step is not None and t <= self._last_step:
            raise ConfigurationError(
                f"step at t={t} does not come after t={self._last_step}; give steps in "
                "increasing time"
            )
        if self._created is None:
            # The first step stands for the ScaledObject's creationTimestamp.
            self._created = t
        self._last_step = t

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
