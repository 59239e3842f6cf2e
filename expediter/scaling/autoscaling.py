"""The HPA's replica calculation for KEDA's metric: tolerance, stabilization, rate limits, clamp.

:class:`HorizontalAutoscaler` is one HPA with its memory (past recommendations and scale
events), synced at times the caller chooses; it never reads a clock. It serves one
AverageValue external metric, which is what KEDA's Kafka trigger creates.

Who calls it: :class:`expediter.scaling.simulating.Simulation`, once per HPA sync.

Sources (kubernetes pkg/controller/podautoscaler): replica_calculator.go
``GetExternalPerPodMetricReplicas`` and ``Tolerances.isWithin``; horizontal.go
``reconcileAutoscaler``, ``recordInitialRecommendation``, ``stabilizeRecommendation``,
``normalizeDesiredReplicas``, ``convertDesiredReplicasWithRules``, ``calculateScaleUpLimit``,
``stabilizeRecommendationWithBehaviors``, ``convertDesiredReplicasWithBehaviorRate``,
``calculateScaleUpLimitWithScalingRules``, ``calculateScaleDownLimitWithBehaviors``,
``getReplicasChangePerPeriod``, ``storeScaleEvent`` and ``markScaleEventsOutdated``. Time
comparisons keep Go's strictness: ``Before`` is ``<`` and ``After`` is ``>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from expediter.scaling.behaving import (
    DOWNSCALE_STABILIZATION_WINDOW_SECONDS,
    Behavior,
    ScalingRules,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "HPA_SYNC_PERIOD_SECONDS",
    "HorizontalAutoscaler",
    "HpaDecision",
    "Seconds",
    "per_pod_replicas",
]

Seconds = int | float
DEFAULT_TOLERANCE = 0.1
"""--horizontal-pod-autoscaler-tolerance."""
HPA_SYNC_PERIOD_SECONDS = 15
"""--horizontal-pod-autoscaler-sync-period: how often a cluster's HPA does what sync() does."""
_SCALE_UP_LIMIT_FACTOR = 2.0
_SCALE_UP_LIMIT_MINIMUM = 4.0
_MAX_INT32 = 2**31 - 1


@dataclass(frozen=True)
class HpaDecision:
    """One sync: the metric's proposal (None when the HPA did not compute one) and the result."""

    current: int
    proposal: int | None
    desired: int
    reason: str


@dataclass
class _Recommendation:
    replicas: int
    at: Seconds


@dataclass
class _ScaleEvent:
    change: int  # absolute value
    at: Seconds
    outdated: bool = False


def per_pod_replicas(
    current: int, usage_milli: int, target_milli: int, down: float, up: float
) -> int:
    """replica_calculator.go GetExternalPerPodMetricReplicas: keep ``current`` while the usage
    ratio is within the tolerances (both bounds inclusive), else ceil(usage / target)."""
    ratio = float(usage_milli) / (float(target_milli) * float(current))
    if (1.0 - down) <= ratio <= (1.0 + up):
        return current
    return math.ceil(float(usage_milli) / float(target_milli))


class HorizontalAutoscaler:
    """An HPA for one AverageValue external metric whose per-pod target is ``target``."""

    def __init__(
        self, *, min_replicas: int, max_replicas: int, target: int, behavior: Behavior | None
    ) -> None:
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.target = target
        self.behavior = behavior
        self._recommendations: list[_Recommendation] | None = None
        self._up_events: list[_ScaleEvent] = []
        self._down_events: list[_ScaleEvent] = []

    def observe(self, at: Seconds, current: int) -> None:
        """A sync that cannot scale (the target is at 0): horizontal.go still records the
        current count as the first recommendation (recordInitialRecommendation)."""
        if self._recommendations is None:
            self._recommendations = [_Recommendation(current, at)]

    def sync(self, at: Seconds, current: int, metric: int) -> HpaDecision:
        """One reconcile at time ``at`` with ``current`` replicas and the metric's value."""
        self.observe(at, current)
        if current == 0 and self.min_replicas != 0:
            return HpaDecision(current, None, current, "scaling is disabled at 0 replicas")
        proposal: int | None = None
        if current > self.max_replicas:
            desired, reason = self.max_replicas, "current above maxReplicas"
        elif current < self.min_replicas:
            desired, reason = self.min_replicas, "current below minReplicas"
        else:
            up, down = self._tolerances()
            proposal = per_pod_replicas(current, metric * 1000, self.target * 1000, down, up)
            # reconcileAutoscaler: desiredReplicas starts at 0 and takes a larger proposal.
            desired = max(proposal, 0)
            if self.behavior is None:
                desired, reason = self._normalize(at, current, desired)
            else:
                desired, reason = self._normalize_with_behaviors(at, current, desired)
        if desired != current:
            self._store_scale_event(at, current, desired)
        return HpaDecision(current, proposal, desired, reason)

    def _tolerances(self) -> tuple[float, float]:
        up = down = DEFAULT_TOLERANCE
        if self.behavior is not None:
            if self.behavior.scale_up.tolerance is not None:
                up = self.behavior.scale_up.tolerance
            if self.behavior.scale_down.tolerance is not None:
                down = self.behavior.scale_down.tolerance
        return up, down

    def _record(self, at: Seconds, replicas: int, old: int | None) -> None:
        # Replaces the last too-old sample rather than growing the list, as horizontal.go does.
        recommendations = self._recommendations if self._recommendations is not None else []
        self._recommendations = recommendations
        if old is None:
            recommendations.append(_Recommendation(replicas, at))
        else:
            recommendations[old] = _Recommendation(replicas, at)

    def _normalize(self, at: Seconds, current: int, desired: int) -> tuple[int, str]:
        # No behavior: stabilizeRecommendation, then convertDesiredReplicasWithRules.
        cutoff = at - DOWNSCALE_STABILIZATION_WINDOW_SECONDS
        stabilized, old = desired, None
        for i, rec in enumerate(self._recommendations or []):
            if rec.at < cutoff:
                old = i
            elif rec.replicas > stabilized:
                stabilized = rec.replicas
        self._record(at, desired, old)
        note = f"max of the last {DOWNSCALE_STABILIZATION_WINDOW_SECONDS}s {stabilized}; "
        limit = int(max(_SCALE_UP_LIMIT_FACTOR * current, _SCALE_UP_LIMIT_MINIMUM))
        maximum = limit if self.max_replicas > limit else self.max_replicas
        if stabilized < self.min_replicas:
            return self.min_replicas, note + f"raised to minReplicas {self.min_replicas}"
        if stabilized > maximum:
            which = "max(2 x current, 4)" if self.max_replicas > limit else "maxReplicas"
            return maximum, note + f"limited to {which} = {maximum}"
        return stabilized, note + "within range"

    def _normalize_with_behaviors(self, at: Seconds, current: int, desired: int) -> tuple[int, str]:
        assert self.behavior is not None
        up_rules, down_rules = self.behavior.scale_up, self.behavior.scale_down
        # stabilizeRecommendationWithBehaviors: up takes the min, down the max, of the window.
        up_cutoff = at - up_rules.stabilization_window_seconds
        down_cutoff = at - down_rules.stabilization_window_seconds
        up_bound = down_bound = desired
        old: int | None = None
        for i, rec in enumerate(self._recommendations or []):
            if rec.at > up_cutoff:
                up_bound = min(rec.replicas, up_bound)
            if rec.at > down_cutoff:
                down_bound = max(rec.replicas, down_bound)
            if rec.at < up_cutoff and rec.at < down_cutoff:
                old = i
        stabilized = min(max(current, up_bound), down_bound)
        self._record(at, desired, old)
        note = (
            f"stabilized {desired} -> {stabilized} (up window min {up_bound}, down window max "
            f"{down_bound}); "
        )
        # convertDesiredReplicasWithBehaviorRate.
        if stabilized > current:
            limit = max(self._limit(at, current, up_rules, up=True), current)
            maximum = limit if self.max_replicas > limit else self.max_replicas
            if stabilized > maximum:
                which = "scaleUp policies" if self.max_replicas > limit else "maxReplicas"
                return maximum, note + f"limited by {which} to {maximum}"
        elif stabilized < current:
            limit = min(self._limit(at, current, down_rules, up=False), current)
            minimum = limit if self.min_replicas < limit else self.min_replicas
            if stabilized < minimum:
                which = "scaleDown policies" if self.min_replicas < limit else "minReplicas"
                return minimum, note + f"limited by {which} to {minimum}"
        return stabilized, note + "within the rate limits"

    def _limit(self, at: Seconds, current: int, rules: ScalingRules, *, up: bool) -> int:
        # calculateScaleUpLimitWithScalingRules / calculateScaleDownLimitWithBehaviors: replicas
        # at the start of each policy's period come from this HPA's own scale events only.
        if rules.select_policy == "Disabled":
            return current
        # "Max" means the biggest change: the highest limit up, the lowest limit down.
        use_max = (rules.select_policy == "Max") == up
        pick: Callable[[int, int], int] = max if use_max else min
        result = -(2**31) if use_max else _MAX_INT32
        for policy in rules.policies:
            added = _changes(at, policy.period_seconds, self._up_events)
            deleted = _changes(at, policy.period_seconds, self._down_events)
            start = current - added + deleted
            if up and policy.type == "Pods":
                proposed = start + policy.value
            elif up:
                # Rounded up so that a small percentage still adds a pod.
                proposed = math.ceil(float(start) * (1 + float(policy.value) / 100))
            elif policy.type == "Pods":
                proposed = start - policy.value
            else:
                proposed = int(float(start) * (1 - float(policy.value) / 100))
            result = pick(result, proposed)
        return result

    def _store_scale_event(self, at: Seconds, previous: int, new: int) -> None:
        # storeScaleEvent: kept only with a behavior; reuses the last outdated slot.
        if self.behavior is None:
            return
        if new > previous:
            events, rules, change = self._up_events, self.behavior.scale_up, new - previous
        else:
            events, rules, change = self._down_events, self.behavior.scale_down, previous - new
        cutoff = at - rules.longest_period
        slot: int | None = None
        for i, event in enumerate(events):
            if event.at < cutoff:
                event.outdated = True
            if event.outdated:
                slot = i
        if slot is None:
            events.append(_ScaleEvent(change, at))
        else:
            events[slot] = _ScaleEvent(change, at)


def _changes(at: Seconds, period: int, events: list[_ScaleEvent]) -> int:
    # getReplicasChangePerPeriod: events strictly inside the last `period` seconds.
    cutoff = at - period
    return sum(e.change for e in events if e.at > cutoff)
