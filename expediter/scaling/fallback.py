"""A ScaledObject's ``fallback``: what KEDA serves the HPA while its scaler keeps failing.

:func:`parse_fallback` reads ``spec.fallback`` as KEDA's CRD does (``failureThreshold`` and
``replicas`` required, both >= 0; ``behavior`` one of KEDA's names, ``static`` by default).
:class:`FailureTracker` keeps KEDA's count of consecutive failures (the ScaledObject's
``status.health[<metric>].numberOfFailures``) and whether KEDA still holds a built scaler, and
says after each read of the metric whether the fallback metric replaces the error.

KEDA 2.21's rules (kedacore/keda pkg/fallback/fallback.go ``GetMetricsWithFallback``,
``doFallback``; pkg/scaling/scale_handler.go ``getScaledObjectState``, ``GetScaledObjectMetrics``
and ``observeMetric``; pkg/scaling/cache/scalers_cache.go ``GetMetricsAndActivityForScaler``):

- Every read of the metric counts: each KEDA poll and each HPA query. A failed read adds one
  failure; a good one sets the count to 0.
- Once the count is above ``failureThreshold`` (strictly), the read answers
  ``replicas x lagThreshold`` instead of the error (for an AverageValue metric, which is what the
  Kafka trigger makes), so the HPA computes ``replicas``; and the trigger counts as active.
  ``behavior`` picks those replicas: ``static`` the fallback's, ``currentReplicas`` the scale
  target's, ``currentReplicasIfHigher`` / ``IfLower`` the larger / smaller of the two.
- A failed read that the fallback does not answer drops KEDA's scaler (its cache) and the next
  read builds a new one. Building the Kafka scaler connects to the broker: while the broker is
  unreachable the build fails before any metric is read, so nothing more is counted and KEDA
  skips its poll. A broker outage therefore stops at one failure (here: KEDA's poll; on a
  cluster the HPA's query may overlap it and count a second) and engages the fallback only with
  ``failureThreshold: 0`` (measured on KEDA 2.21 by tests/cluster/test_conformance.py).

Who calls it: :class:`expediter.scaling.simulating.Simulation`; :mod:`~.scenarios` and
:mod:`~.scaledobjects` parse it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeGuard, cast

from expediter.errors import ConfigurationError

__all__ = ["FailureTracker", "Fallback", "FallbackBehavior", "FallbackRead", "parse_fallback"]

FallbackBehavior = Literal[
    "static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower"
]
_BEHAVIORS: tuple[FallbackBehavior, ...] = (
    "static", "currentReplicas", "currentReplicasIfHigher", "currentReplicasIfLower",
)  # fmt: skip
_KEYS = ("failureThreshold", "replicas", "behavior")
_INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Fallback:
    """``spec.fallback``: after more than ``failure_threshold`` failures, ``replicas``."""

    failure_threshold: int
    replicas: int
    behavior: FallbackBehavior = "static"

    def replicas_for(self, current: int) -> int:
        """The count the fallback metric asks for, with the scale target at ``current``."""
        if self.behavior == "currentReplicas":
            return current
        if self.behavior == "currentReplicasIfHigher":
            return max(current, self.replicas)
        if self.behavior == "currentReplicasIfLower":
            return min(current, self.replicas)
        return self.replicas


def parse_fallback(document: object, *, where: str = "fallback") -> Fallback | None:
    """``spec.fallback`` (camelCase) to a :class:`Fallback`, or None when absent (null)."""
    if document is None:
        return None
    if not isinstance(document, Mapping):
        raise ConfigurationError(
            f"{where} must be an object with failureThreshold and replicas, or left out; got "
            f"{type(document).__name__}"
        )
    problems: list[str] = []
    for key in document:
        if key not in _KEYS:
            close = difflib.get_close_matches(str(key), _KEYS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            problems.append(f"{where}.{key} is not a fallback field; {hint}use {', '.join(_KEYS)}")
    numbers: dict[str, int] = {}
    for key in ("failureThreshold", "replicas"):
        value = document.get(key)
        if value is None:
            # The CRD lists both as required: the API server refuses a fallback without them.
            problems.append(f"{where}.{key} is required (KEDA's CRD refuses a fallback without it)")
        elif not _is_int(value) or not 0 <= value <= _INT32_MAX:
            problems.append(
                f"{where}.{key} must be a whole number >= 0, got {value!r} (KEDA's CRD: int32, "
                "minimum 0)"
            )
        else:
            numbers[key] = value
    behavior: FallbackBehavior = "static"
    raw = document.get("behavior")
    if raw == "scalingModifiers":
        problems.append(
            f'{where}.behavior "scalingModifiers" belongs to scalingModifiers formulas, which '
            f"this engine does not model; use one of {', '.join(_BEHAVIORS)}"
        )
    elif raw is not None and raw not in _BEHAVIORS:
        problems.append(
            f"{where}.behavior must be one of {', '.join(_BEHAVIORS)}, got {raw!r} (KEDA's CRD "
            'refuses others; left out it is "static")'
        )
    elif raw is not None:
        behavior = cast(FallbackBehavior, raw)
    if problems:
        raise ConfigurationError("\n".join(problems))
    return Fallback(numbers["failureThreshold"], numbers["replicas"], behavior)


@dataclass(frozen=True)
class FallbackRead:
    """One failed read of the metric, as KEDA answers it."""

    scaler_read: bool
    """KEDA held or could build a scaler and read through it; False when building one failed
    (the broker is unreachable), so KEDA skipped the read and counted nothing."""
    failures: int
    """The count after this read (``status.health[...].numberOfFailures``)."""
    replicas: int | None
    """The fallback's count when the fallback answered; None when the read is an error."""


class FailureTracker:
    """KEDA's failure count for one ScaledObject's metric, and whether it holds a scaler."""

    def __init__(self, fallback: Fallback | None) -> None:
        self.fallback = fallback
        self.failures = 0
        self.scaler_built = False
        """KEDA holds a built scaler (the first good read builds it; an unanswered error drops
        it)."""

    def succeeded(self) -> None:
        """A good read: the count goes back to 0 (``HealthStatusHappy``)."""
        self.failures = 0
        self.scaler_built = True

    def failed(self, *, reachable: bool, current: int) -> FallbackRead:
        """A failed read with the scale target at ``current`` replicas. ``reachable``: whether
        a new scaler can be built (the broker answers) should KEDA need one."""
        if not self.scaler_built and not reachable:
            # GetScalersCache fails before a metric is read: no health update, no fallback.
            return FallbackRead(False, self.failures, None)
        # Either the held scaler's read failed (its refresh may fail too: still counted) or a
        # fresh scaler was built and its read failed.
        if self.fallback is None:
            # KEDA tracks health only with a valid fallback; the scaler is dropped all the same.
            self.scaler_built = False
            return FallbackRead(True, self.failures, None)
        self.failures += 1
        if self.failures > self.fallback.failure_threshold:
            # The fallback answers without an error, so KEDA keeps its scaler.
            self.scaler_built = True
            return FallbackRead(True, self.failures, self.fallback.replicas_for(current))
        self.scaler_built = False
        return FallbackRead(True, self.failures, None)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
