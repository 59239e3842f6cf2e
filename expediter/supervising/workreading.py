"""The work-based trigger on one machine: what ``expediter up`` and ``expediter watch`` read for
an agent whose ScaledObject has an ``external`` trigger on ``expediter scaler``, and how it
joins KEDA's part and the HPA.

A :class:`WorkReading` is what the scaler's ``GetMetrics`` would answer KEDA for that
ScaledObject (pending tokens and records, a replica's tokens/s, the metric in seconds of one
replica's work); a :data:`WorkReader` supplies it. The CLI passes one built on
:class:`expediter.scaler.ExternalScaler` itself (:func:`expediter.scaler.local.work_reader`),
so the local metric is the scaler's own answer, not a copy of its arithmetic.

:class:`WorkStepper` is one KEDA poll and one HPA sync on that reading:

- work alone: the HPA's AverageValue on the metric in milli-units against
  ``targetDrainSeconds`` x 1000, as KEDA hands an external float to the HPA (the same units as
  :class:`~expediter.scaling.worksimulating.WorkSimulation`). The retry tiers' Kafka triggers
  wake the agent and propose ``ceil(lag / lagThreshold)`` (1 with the rendered threshold), put
  in those units as ``ceil(metric x target / lagThreshold)``;
- work next to lag: KEDA is active when either trigger is, and the HPA takes the larger of the
  two proposals (horizontal.go ``computeReplicasForMetrics``). The work metric is put in lag
  units, ``ceil(metric x lagThreshold / targetDrainSeconds)``, whose proposal
  ``ceil(... / lagThreshold)`` is exactly the work trigger's own ``ceil(metric /
  targetDrainSeconds)``, so the larger metric is the larger proposal.

Who calls it: :class:`~expediter.supervising.deciding.AgentScaler`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from expediter.scaling import KafkaTrigger, LagMeter, Seconds, Simulation, StepResult
from expediter.scaling.simulating import ScaledObjectSpec, combined
from expediter.scaling.working import ExternalTrigger

if TYPE_CHECKING:
    from expediter.supervising.scaledobjects import ScaledAgent

__all__ = ["WorkReader", "WorkReading", "WorkStepper"]


@dataclass(frozen=True)
class WorkReading:
    """One read of the scaler for one agent: what GetMetrics would send KEDA."""

    tokens: float
    """Pending tokens."""
    records: int
    """Pending tasks."""
    throughput: float
    """A replica's tokens/s used (measured on results, else the trigger's)."""
    metric: float
    """Seconds of one replica's work: what the HPA reads."""
    active: bool
    capped: bool = False
    held: bool = False
    """Held while replicas load their model (cold start)."""

    def text(self) -> str:
        """``12.5 s (1,250 tokens)`` and the cap or hold, for people."""
        notes = [n for n, on in (("capped", self.capped), ("held", self.held)) if on]
        extra = f", {', '.join(notes)}" if notes else ""
        return f"{self.metric:.1f} s ({self.tokens:,.0f} tokens{extra})"


WorkReader = Callable[["ScaledAgent"], Awaitable[WorkReading]]
"""The pending work of one agent with a work trigger."""


class WorkStepper:
    """KEDA and its HPA for a ScaledObject with a work trigger, alone or next to a lag one."""

    def __init__(
        self,
        work: ExternalTrigger,
        lag: KafkaTrigger | None,
        spec: ScaledObjectSpec,
        replicas: int = 0,
        *,
        also: Sequence[KafkaTrigger] = (),
    ) -> None:
        self.work = work
        self.lag = lag
        # The HPA's target: the lag trigger's when there is one (work is put in its units),
        # else the work trigger's in milli-units. The KafkaTrigger only carries that target.
        target = lag or KafkaTrigger(lag_threshold=round(work.target_drain_seconds * 1000))
        self.simulation = Simulation(target, spec, replicas)
        self._meter = LagMeter(lag or KafkaTrigger())
        self._also = tuple(LagMeter(t) for t in also)
        """The retry tiers' Kafka triggers (with the lag trigger, or alone next to work)."""

    def step(
        self,
        t: Seconds,
        latest: Sequence[int],
        committed: Sequence[int | None],
        reading: WorkReading,
        also: Sequence[tuple[Sequence[int], Sequence[int | None]]] = (),
    ) -> StepResult:
        """One KEDA poll and one HPA sync at ``t`` (``also``: the retry tiers' offsets, as
        :meth:`Simulation.step` takes them); the result's reading is the lag one with the
        metric the HPA saw and KEDA's activity."""
        tiers = [meter.read(*offsets) for meter, offsets in zip(self._also, also, strict=False)]
        lag = combined(self._meter.read(latest, committed), tiers)
        if self.lag is not None:
            ratio = self.lag.lag_threshold / self.work.target_drain_seconds
            # Rounded first: 20 s x 0.2 must give 4, not 5 from 4.000000000000001.
            equivalent = math.ceil(round(reading.metric * ratio, 9)) if reading.metric > 0 else 0
            metric, active = max(lag.metric, equivalent), lag.active or reading.active
        else:
            metric, active = round(reading.metric * 1000), reading.active
            if tiers:  # the tiers' proposal put in the work trigger's milli-units
                tier = combined(tiers[0], tiers[1:])
                target = self.simulation.trigger.lag_threshold
                threshold = self._also[0].trigger.lag_threshold
                wake = math.ceil(round(tier.metric * target / threshold, 9))
                metric, active = max(metric, wake), active or tier.active
        previous, changed, keda, hpa = self.simulation.decide(t, metric, active)
        seen = replace(lag, metric=metric, active=active)
        return StepResult(t, seen, previous, self.simulation.replicas, changed, keda, hpa)
