"""An HPA ``behavior`` (scaleUp / scaleDown rules), defaulted and validated as Kubernetes does.

:func:`parse_behavior` reads the camelCase object a ScaledObject carries in
``advanced.horizontalPodAutoscalerConfig.behavior``; null means "no behavior", which sends the
HPA down its older path (see :mod:`expediter.scaling.autoscaling`). Rules left out are filled
with the API server's defaults, field by field.

Who calls it: :mod:`expediter.scaling.scenarios`, and later the KEDA renderer and checker.

Sources: kubernetes pkg/apis/autoscaling/v2/defaults.go (``defaultHPAScaleUpRules``,
``defaultHPAScaleDownRules``, ``copyHPAScalingRules``), pkg/apis/autoscaling/validation/
validation.go (``validateScalingRules``, ``validateScalingPolicy``), and
pkg/controller/podautoscaler/horizontal.go ``maybeInitScaleDownStabilizationWindow``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

from expediter.errors import ConfigurationError

__all__ = [
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "DOWNSCALE_STABILIZATION_WINDOW_SECONDS",
    "Behavior",
    "PolicyType",
    "ScalingPolicy",
    "ScalingRules",
    "SelectPolicy",
    "parse_behavior",
]

SelectPolicy = Literal["Max", "Min", "Disabled"]
PolicyType = Literal["Pods", "Percent"]

DOWNSCALE_STABILIZATION_WINDOW_SECONDS = 300
"""kube-controller-manager's --horizontal-pod-autoscaler-downscale-stabilization (5m): the
no-behavior window, and a behavior's scaleDown window when it sets none."""
_MAX_WINDOW_SECONDS = 3600
_MAX_PERIOD_SECONDS = 1800
_RULE_KEYS = ("stabilizationWindowSeconds", "selectPolicy", "policies", "tolerance")
_POLICY_KEYS = ("type", "value", "periodSeconds")
_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(m?)")


@dataclass(frozen=True)
class ScalingPolicy:
    """At most ``value`` pods or percent of change per ``period_seconds``."""

    type: PolicyType
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    """One direction's rules, complete (no field left to default)."""

    stabilization_window_seconds: int
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]
    tolerance: float | None = None
    """HPAConfigurableTolerance; None means the controller's 0.1."""

    @property
    def longest_period(self) -> int:
        """horizontal.go getLongestPolicyPeriod."""
        return max((p.period_seconds for p in self.policies), default=0)


@dataclass(frozen=True)
class Behavior:
    scale_up: ScalingRules
    scale_down: ScalingRules


DEFAULT_SCALE_UP = ScalingRules(
    0, "Max", (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15))
)
"""Add the larger of 4 pods and 100% per 15 s, with no stabilization."""
DEFAULT_SCALE_DOWN = ScalingRules(
    DOWNSCALE_STABILIZATION_WINDOW_SECONDS, "Max", (ScalingPolicy("Percent", 100, 15),)
)
"""Remove up to 100% per 15 s, after the 300 s window."""


def parse_behavior(document: object, *, where: str = "behavior") -> Behavior | None:
    """A behavior object (camelCase) to a :class:`Behavior`, or None for null."""
    if document is None:
        return None
    if not isinstance(document, Mapping):
        raise ConfigurationError(
            f"{where} must be an object with scaleUp and/or scaleDown, or null; got "
            f"{type(document).__name__}"
        )
    problems: list[str] = []
    _unknown(document, ("scaleUp", "scaleDown"), where, problems)
    up = _rules(document.get("scaleUp"), DEFAULT_SCALE_UP, f"{where}.scaleUp", problems)
    down = _rules(document.get("scaleDown"), DEFAULT_SCALE_DOWN, f"{where}.scaleDown", problems)
    if problems:
        raise ConfigurationError("\n".join(problems))
    return Behavior(up, down)


def _rules(
    document: object, default: ScalingRules, where: str, problems: list[str]
) -> ScalingRules:
    # defaults.go copyHPAScalingRules: each field left out (or null) takes the default.
    if document is None:
        return default
    if not isinstance(document, Mapping):
        problems.append(f"{where} must be an object (or null for the defaults)")
        return default
    _unknown(document, _RULE_KEYS, where, problems)
    window = default.stabilization_window_seconds
    if document.get("stabilizationWindowSeconds") is not None:
        window = _integer(
            document["stabilizationWindowSeconds"],
            f"{where}.stabilizationWindowSeconds",
            0,
            _MAX_WINDOW_SECONDS,
            problems,
        )
    select = default.select_policy
    if document.get("selectPolicy") is not None:
        raw = document["selectPolicy"]
        if raw in ("Max", "Min", "Disabled"):
            select = cast(SelectPolicy, raw)
        else:
            problems.append(
                f'{where}.selectPolicy must be "Max", "Min" or "Disabled", got {raw!r}; '
                "Max picks the policy allowing the biggest change"
            )
    policies = default.policies
    if document.get("policies") is not None:
        policies = _policies(document["policies"], f"{where}.policies", problems)
    tolerance = default.tolerance
    if document.get("tolerance") is not None:
        tolerance = _tolerance(document["tolerance"], f"{where}.tolerance", problems)
    return ScalingRules(window, select, policies, tolerance)


def _policies(document: object, where: str, problems: list[str]) -> tuple[ScalingPolicy, ...]:
    if not isinstance(document, list) or not document:
        # validation.go: "must specify at least one Policy".
        problems.append(
            f"{where} must be a non-empty list of {{type, value, periodSeconds}}; leave it out "
            "for the defaults"
        )
        return ()
    policies: list[ScalingPolicy] = []
    for i, item in enumerate(document):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{at} must be an object {{type, value, periodSeconds}}")
            continue
        _unknown(item, _POLICY_KEYS, at, problems)
        kind = item.get("type")
        if kind not in ("Pods", "Percent"):
            problems.append(f'{at}.type must be "Pods" or "Percent", got {kind!r}')
        value = _integer(item.get("value"), f"{at}.value", 1, 2**31 - 1, problems)
        period = _integer(item.get("periodSeconds"), f"{at}.periodSeconds", 1,
                          _MAX_PERIOD_SECONDS, problems)  # fmt: skip
        if kind in ("Pods", "Percent"):
            policies.append(ScalingPolicy(cast(PolicyType, kind), value, period))
    return tuple(policies)


def _integer(value: object, where: str, low: int, high: int, problems: list[str]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(f"{where} must be a whole number between {low} and {high}, got {value!r}")
        return low
    if not low <= value <= high:
        problems.append(f"{where} must be between {low} and {high}, got {value}")
        return low
    return value


def _tolerance(value: object, where: str, problems: list[str]) -> float | None:
    # A resource.Quantity read with AsApproximateFloat64: a plain decimal or milli ("50m").
    text = str(value).strip() if isinstance(value, int | float | str) else ""
    match = _QUANTITY.fullmatch(text) if not isinstance(value, bool) else None
    if match is None:
        problems.append(
            f'{where} must be a non-negative decimal such as 0.05 or "50m", got {value!r}'
        )
        return None
    number = float(match.group(1))
    return number / 1000 if match.group(2) else number


def _unknown(
    document: Mapping[object, object], known: tuple[str, ...], where: str, problems: list[str]
) -> None:
    for key in document:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            problems.append(f"{where}.{key} is not a field here; {hint}use {', '.join(known)}")
