"""KEDA and its HPA on the work-based ``external`` trigger, step by step, as for the Kafka one.

:class:`WorkSimulation` is :class:`~expediter.scaling.simulating.Simulation` with the metric of
``expediter scaler`` (:class:`~expediter.scaling.working.WorkMeter`) in place of the Kafka
scaler's lag: at each step the caller gives the pending tokens (and, when known, the pending
tasks, a replica's measured tokens/s and the replicas still loading), and KEDA's part (0 <-> 1,
cooldown) and the HPA (AverageValue, target ``targetDrainSeconds``) do the rest.

The HPA sees the metric in milli-units, as KEDA hands an external scaler's float to it
(pkg/scalers/external_scaler.go: ``GetMetricTargetMili`` for the target, a milli quantity for
``metricValueFloat``), so this runs the engine's HPA on metric x 1000 against target x 1000.

Who calls it: the bench (bench/bench_workscaling.py) and anything that plays a timeline of
pending work; the local supervisor can feed it live readings the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from expediter.scaling.autoscaling import HpaDecision, Seconds
from expediter.scaling.simulating import ScaledObjectSpec, Simulation
from expediter.scaling.triggering import KafkaTrigger
from expediter.scaling.working import WORK_METRIC_NAME, ExternalTrigger, WorkMeter, WorkMetric

__all__ = ["WorkSimulation", "WorkStep"]


@dataclass(frozen=True)
class WorkStep:
    """What one step did; :meth:`as_line` is a ``keda simulate`` style line."""

    t: Seconds
    reading: WorkMetric
    previous_replicas: int
    replicas: int
    keda_changed: bool
    keda: str | None
    hpa: HpaDecision | None

    def explain(self) -> str:
        """One line for people: the work, the metric and what KEDA and the HPA did."""
        r = self.reading
        notes = [n for n, on in (("capped", r.capped), ("held: replicas loading", r.held)) if on]
        parts = [
            f"t={self.t:g}: {r.tokens:.0f} tokens at {r.throughput:.1f} tokens/s a replica, "
            f"metric {r.metric:.2f} s"
            + (f" ({', '.join(notes)})" if notes else "")
            + (", active" if r.active else ", not active")
        ]
        if self.keda_changed:
            parts.append(f"KEDA {self.previous_replicas} -> {self.replicas}: {self.keda}")
        elif self.hpa is not None:
            parts.append(f"HPA {self.hpa.current} -> {self.hpa.desired}: {self.hpa.reason}")
        elif self.keda is not None:
            parts.append(f"KEDA: {self.keda}")
        return " | ".join(parts)

    def as_line(self) -> dict[str, object]:
        r = self.reading
        return {"t": self.t, "tokens": r.tokens, "metric": round(r.metric, 3),
                "metric_name": WORK_METRIC_NAME, "active": r.active,
                "replicas": self.replicas}  # fmt: skip


class WorkSimulation:
    """KEDA plus its HPA for one ScaledObject with one work-based external trigger."""

    def __init__(
        self, trigger: ExternalTrigger, scaled_object: ScaledObjectSpec, replicas: int = 0
    ) -> None:
        self.trigger = trigger
        self.meter = WorkMeter(trigger)
        # The Kafka trigger only carries the HPA's target here; its lag arithmetic is unused.
        target = KafkaTrigger(lag_threshold=round(trigger.target_drain_seconds * 1000))
        self._simulation = Simulation(target, scaled_object, replicas)

    @property
    def replicas(self) -> int:
        return self._simulation.replicas

    def step(
        self,
        t: Seconds,
        tokens: float,
        *,
        records: int | None = None,
        throughput: float | None = None,
        loading: int = 0,
    ) -> WorkStep:
        """One KEDA poll of ``expediter scaler`` and one HPA sync at ``t``."""
        reading = self.meter.metric(tokens, throughput=throughput, loading=loading, records=records)
        milli = round(reading.metric * 1000)
        previous, changed, keda, hpa = self._simulation.decide(t, milli, reading.active)
        return WorkStep(t, reading, previous, self.replicas, changed, keda, hpa)
