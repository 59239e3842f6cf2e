"""A ``keda simulate`` scenario: a ScaledObject, a starting count and a timeline of offsets.

:func:`parse_scenario` validates a decoded JSON document completely before anything runs, so a
bad file fails with every problem listed (one a line, ``KEY: PROBLEM; FIX``) and prints no
steps. :meth:`Scenario.run` then yields one :class:`StepResult` per step.

Who calls it: ``expediter keda simulate`` (:mod:`expediter.cli.keda`), which reads the file and
puts its name in front of each problem.

The document::

    {"trigger": {...Kafka trigger metadata; strings or numbers; omitted = KEDA default...},
     "scaledObject": {"minReplicaCount": 0, "maxReplicaCount": 100, "pollingInterval": 30,
                      "cooldownPeriod": 300, "initialCooldownPeriod": 0, "behavior": null,
                      "fallback": null},
     "replicas": 0,
     "steps": [{"t": 0, "latest": [120, 80], "committed": [null, 40]},
               {"t": 30, "error": "broker unreachable", "reachable": false}, ...]}

``t`` is in seconds; ``latest`` and ``committed`` hold one offset per partition, and a committed
offset of null means the group has none there. A step with ``error`` instead is a poll whose
scaler fails; ``reachable`` (default false) says whether KEDA could build a new scaler, i.e.
reach the broker (:meth:`Simulation.fail`). ``fallback`` is a ScaledObject's
``{"failureThreshold", "replicas", "behavior"}``. ``description`` may hold free text.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TypeGuard

from expediter.errors import ConfigurationError
from expediter.scaling.autoscaling import Seconds
from expediter.scaling.behaving import parse_behavior
from expediter.scaling.fallback import parse_fallback
from expediter.scaling.simulating import FailedStep, ScaledObjectSpec, Simulation, StepResult
from expediter.scaling.triggering import KafkaTrigger, parse_trigger

__all__ = ["Scenario", "Step", "parse_scenario"]

_TOP_KEYS = ("description", "trigger", "scaledObject", "replicas", "steps")
_SPEC_KEYS = {
    "minReplicaCount": "min_replica_count",
    "maxReplicaCount": "max_replica_count",
    "pollingInterval": "polling_interval",
    "cooldownPeriod": "cooldown_period",
    "initialCooldownPeriod": "initial_cooldown_period",
}
_STEP_KEYS = ("t", "latest", "committed")
_FAILED_STEP_KEYS = ("t", "error", "reachable")


@dataclass(frozen=True)
class Step:
    """One KEDA poll: the time and each partition's latest and committed offset, or the error
    its scaler failed with (then ``latest`` and ``committed`` are empty)."""

    t: Seconds
    latest: tuple[int, ...]
    committed: tuple[int | None, ...]
    error: str | None = None
    reachable: bool = False


@dataclass(frozen=True)
class Scenario:
    trigger: KafkaTrigger
    scaled_object: ScaledObjectSpec
    replicas: int
    steps: tuple[Step, ...]

    def run(self) -> Iterator[StepResult | FailedStep]:
        """Each step's result, in order, from a fresh :class:`Simulation`."""
        simulation = Simulation(self.trigger, self.scaled_object, self.replicas)
        for step in self.steps:
            if step.error is not None:
                yield simulation.fail(step.t, step.error, reachable=step.reachable)
            else:
                yield simulation.step(step.t, step.latest, step.committed)


def parse_scenario(document: object) -> Scenario:
    """Validate a decoded scenario document; raise one ConfigurationError listing problems."""
    if not isinstance(document, Mapping):
        raise ConfigurationError(
            "the scenario must be a JSON object with trigger, scaledObject, replicas and steps"
        )
    problems: list[str] = []
    _unknown(document, _TOP_KEYS, "", problems)
    trigger = _section(document, "trigger", problems)
    spec = _section(document, "scaledObject", problems)
    parsed_trigger = KafkaTrigger()
    try:
        parsed_trigger = parse_trigger(trigger, where="trigger")
    except ConfigurationError as exc:
        problems.extend(str(exc).splitlines())
    scaled_object = _scaled_object(spec, problems)
    raw_replicas = document.get("replicas", 0)
    replicas = raw_replicas if _is_int(raw_replicas) else -1
    if replicas < 0:
        problems.append(f"replicas must be a whole number >= 0, got {raw_replicas!r}")
        replicas = 0
    steps = _steps(document.get("steps"), parsed_trigger, problems)
    if problems:
        raise ConfigurationError("\n".join(problems))
    return Scenario(parsed_trigger, scaled_object, replicas, steps)


def _section(document: Mapping[str, object], key: str, problems: list[str]) -> dict[str, object]:
    value = document.get(key)
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    problems.append(f"{key} must be an object, got {type(value).__name__}")
    return {}


def _scaled_object(spec: Mapping[str, object], problems: list[str]) -> ScaledObjectSpec:
    _unknown(spec, (*_SPEC_KEYS, "behavior", "fallback"), "scaledObject.", problems)
    numbers: dict[str, int] = {}
    for key, name in _SPEC_KEYS.items():
        value = spec.get(key)
        if value is None:
            continue
        if _is_int(value):
            numbers[name] = value
        else:
            problems.append(f"scaledObject.{key} must be a whole number, got {value!r}")
    behavior = None
    try:
        behavior = parse_behavior(spec.get("behavior"), where="scaledObject.behavior")
    except ConfigurationError as exc:
        problems.extend(str(exc).splitlines())
    fallback = None
    try:
        fallback = parse_fallback(spec.get("fallback"), where="scaledObject.fallback")
    except ConfigurationError as exc:
        problems.extend(str(exc).splitlines())
    try:
        return ScaledObjectSpec(
            min_replica_count=numbers.get("min_replica_count", 0),
            max_replica_count=numbers.get("max_replica_count", 100),
            polling_interval=numbers.get("polling_interval", 30),
            cooldown_period=numbers.get("cooldown_period", 300),
            initial_cooldown_period=numbers.get("initial_cooldown_period", 0),
            behavior=behavior,
            fallback=fallback,
        )
    except ConfigurationError as exc:
        problems.extend(str(exc).splitlines())
        return ScaledObjectSpec()


def _steps(document: object, trigger: KafkaTrigger, problems: list[str]) -> tuple[Step, ...]:
    if not isinstance(document, list) or not document:
        problems.append(
            'steps must be a non-empty list of {"t": seconds, "latest": [...], "committed": [...]}'
        )
        return ()
    steps: list[Step] = []
    previous: Seconds | None = None
    for i, raw in enumerate(document):
        at = f"steps[{i}]"
        if not isinstance(raw, Mapping):
            problems.append(f'{at} must be an object {{"t", "latest", "committed"}}')
            continue
        keys = _FAILED_STEP_KEYS if "error" in raw else _STEP_KEYS
        _unknown(raw, keys, f"{at}.", problems)
        t = raw.get("t")
        if isinstance(t, bool) or not isinstance(t, int | float):
            problems.append(f"{at}.t must be a number of seconds, got {t!r}")
            continue
        if previous is not None and t <= previous:
            problems.append(f"{at}.t ({t}) must be later than the step before ({previous})")
        previous = t
        if "error" in raw:
            failed = _failed_step(raw, t, at, problems)
            if failed is not None:
                steps.append(failed)
            continue
        latest = _offsets(raw.get("latest"), f"{at}.latest", nullable=False, problems=problems)
        committed = _offsets(raw.get("committed"), f"{at}.committed", nullable=True,
                             problems=problems)  # fmt: skip
        if latest is None or committed is None:
            continue
        if len(latest) != len(committed):
            problems.append(
                f"{at}: latest has {len(latest)} partitions and committed {len(committed)}; "
                "give one committed offset (or null) per partition"
            )
            continue
        if not any(trigger.partition_counts(p) for p in range(len(latest))):
            problems.append(
                f"{at}: trigger.partitionLimitation selects none of its {len(latest)} "
                f"partitions (KEDA fails the poll); list ids between 0 and {len(latest) - 1}"
            )
            continue
        steps.append(Step(t, tuple(x for x in latest if x is not None), committed))
    return tuple(steps)


def _failed_step(
    raw: Mapping[str, object], t: Seconds, at: str, problems: list[str]
) -> Step | None:
    error, reachable = raw.get("error"), raw.get("reachable", False)
    if not isinstance(error, str) or not error:
        problems.append(f"{at}.error must be a non-empty string saying what failed")
        return None
    if not isinstance(reachable, bool):
        problems.append(
            f"{at}.reachable must be true or false (whether KEDA can still reach the broker to "
            f"build a new scaler), got {reachable!r}"
        )
        return None
    return Step(t, (), (), error, reachable)


def _offsets(
    value: object, where: str, *, nullable: bool, problems: list[str]
) -> tuple[int | None, ...] | None:
    what = "offsets >= 0 or null" if nullable else "offsets >= 0"
    if not isinstance(value, list) or not value:
        problems.append(f"{where} must be a non-empty list of {what}, one per partition")
        return None
    for x in value:
        if not ((x is None and nullable) or (_is_int(x) and x >= 0)):
            fix = "; use null for no committed offset" if nullable else ""
            problems.append(f"{where} must hold {what}, found {x!r}{fix}")
            return None
    return tuple(value)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _unknown(
    document: Mapping[str, object], known: tuple[str, ...], prefix: str, problems: list[str]
) -> None:
    for key in document:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            problems.append(f"{prefix}{key} is not a scenario key; {hint}use {', '.join(known)}")
