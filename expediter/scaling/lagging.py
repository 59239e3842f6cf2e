"""KEDA's Kafka-scaler arithmetic: partition lag, total lag, the metric sent to the HPA, activity.

:class:`LagMeter` is fed one poll at a time (latest and committed offsets per partition) and
returns a :class:`LagReading`. It is stateful because ``excludePersistentLag`` compares each
partition's committed offset with the one seen at the previous poll.

Who calls it: :class:`expediter.scaling.simulating.Simulation`, once per KEDA poll.

Source: kedacore/keda pkg/scalers/kafka_scaler.go ``getLagForPartition``, ``getTotalLag``,
``getNextFactorThatBalancesConsumersToTopicPartitions``, ``FindFactors`` and
``GetMetricsAndActivity``; quirks kept on purpose, among them the integer division in the cap
(keda#4483) and ``ensureEvenDistributionOfPartitions`` turning a lag of 0 into one threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from expediter.errors import ConfigurationError
from expediter.scaling.triggering import KafkaTrigger

__all__ = ["LagMeter", "LagReading", "PartitionLag", "find_factors", "go_quotient"]


@dataclass(frozen=True)
class PartitionLag:
    """One partition's share: ``lag`` feeds the metric, ``with_persistent`` feeds activation."""

    partition: int
    lag: int
    with_persistent: int
    persistent: bool = False
    """excludePersistentLag found the same committed offset as at the previous poll."""
    no_offset: bool = False
    """The group has no committed offset on this partition."""


@dataclass(frozen=True)
class LagReading:
    """What one poll of KEDA's Kafka scaler yields."""

    lag: int
    """The sum of partition lags that feed the metric, before any cap or rounding."""
    lag_with_persistent: int
    """The same sum with persistent lag counted: what activation compares."""
    metric: int
    """The value sent to the HPA as an AverageValue external metric."""
    active: bool
    """``lag_with_persistent > activationLagThreshold``, strictly."""
    partitions: int
    """Partitions that count (after ``partitionLimitation``)."""
    partitions_with_lag: int
    upper_bound: int | None
    """Replicas the metric may ask for at most; None with allowIdleConsumers alone."""
    even_factor: int | None
    """The factor ensureEvenDistributionOfPartitions rounded to, when set."""
    capped: bool
    per_partition: tuple[PartitionLag, ...]


def go_quotient(numerator: int, denominator: int) -> int:
    """Go's integer division, which truncates toward zero (Python's ``//`` floors)."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


def find_factors(n: int) -> list[int]:
    """Every factor of ``n`` in ascending order; empty below 1 (kafka_scaler.go FindFactors)."""
    if n < 1:
        return []
    factors: set[int] = set()
    for i in range(1, math.isqrt(n) + 1):
        if n % i == 0:
            factors.update((i, n // i))
    return sorted(factors)


class LagMeter:
    """Polls in, readings out; remembers committed offsets for ``excludePersistentLag``."""

    def __init__(self, trigger: KafkaTrigger) -> None:
        self.trigger = trigger
        self._previous: dict[int, int] = {}

    def read(self, latest: Sequence[int], committed: Sequence[int | None]) -> LagReading:
        """One poll. ``latest[i]`` and ``committed[i]`` belong to partition ``i``; a committed
        offset of None means the group has none there."""
        if len(latest) != len(committed):
            raise ConfigurationError(
                f"latest has {len(latest)} partitions but committed has {len(committed)}; give "
                "one committed offset (or null) per partition"
            )
        counted = [p for p in range(len(latest)) if self.trigger.partition_counts(p)]
        if not counted:
            # kafka_scaler.go getTopicPartitions: "expected at least one active partition".
            raise ConfigurationError(
                f"trigger.partitionLimitation selects none of the {len(latest)} partitions; list "
                f"ids between 0 and {len(latest) - 1}"
            )
        parts = tuple(self._partition(p, latest[p], committed[p]) for p in counted)
        return self._total(parts)

    def _partition(self, partition: int, latest: int, committed: int | None) -> PartitionLag:
        # kafka_scaler.go getLagForPartition.
        trigger = self.trigger
        if committed is None:
            if trigger.offset_reset_policy == "latest" or trigger.scale_to_zero_on_invalid_offset:
                value = 0 if trigger.scale_to_zero_on_invalid_offset else 1
                return PartitionLag(partition, value, value, no_offset=True)
            return PartitionLag(partition, latest, latest, no_offset=True)
        lag = latest - committed
        if trigger.exclude_persistent_lag:
            previous = self._previous.get(partition)
            if previous == committed:
                # Stuck on the same offset as the previous poll: left out of the metric, still
                # counted for activation, so that a stuck group at 0 replicas gets one.
                return PartitionLag(partition, 0, lag, persistent=True)
            self._previous[partition] = committed
        return PartitionLag(partition, lag, lag)

    def _total(self, parts: tuple[PartitionLag, ...]) -> LagReading:
        # kafka_scaler.go getTotalLag and GetMetricsAndActivity.
        trigger = self.trigger
        threshold = trigger.lag_threshold
        lag = sum(p.lag for p in parts)
        with_persistent = sum(p.with_persistent for p in parts)
        partitions = len(parts)
        with_lag = sum(1 for p in parts if p.lag > 0)
        metric = lag
        upper_bound: int | None = None
        factor: int | None = None
        capped = False
        if (
            not trigger.allow_idle_consumers
            or trigger.limit_to_partitions_with_lag
            or trigger.ensure_even_distribution_of_partitions
        ):
            upper_bound = partitions
            if trigger.ensure_even_distribution_of_partitions:
                factor = next(
                    (f for f in find_factors(partitions) if f * threshold >= metric), partitions
                )
                metric = factor * threshold
            if trigger.limit_to_partitions_with_lag:
                upper_bound = with_lag
            # keda#4483: integer division, so a total just above upper * threshold (35 with
            # threshold 10 and 3 partitions) passes uncapped and asks the HPA for 4 replicas.
            if go_quotient(metric, threshold) > upper_bound:
                metric = upper_bound * threshold
                capped = True
        return LagReading(
            lag=lag,
            lag_with_persistent=with_persistent,
            metric=metric,
            active=with_persistent > trigger.activation_lag_threshold,
            partitions=partitions,
            partitions_with_lag=with_lag,
            upper_bound=upper_bound,
            even_factor=factor,
            capped=capped,
            per_partition=parts,
        )
