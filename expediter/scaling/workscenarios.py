"""A ``keda simulate`` scenario for the work-based ``external`` trigger of ``expediter scaler``.

The document is a scenario (:mod:`expediter.scaling.scenarios`) whose trigger is external and
whose steps give pending work instead of offsets::

    {"trigger": {"type": "external",
                 "metadata": {"capability": "planning", "targetDrainSeconds": "60",
                              "tokensPerSecond": "40"}},
     "scaledObject": {...as for the Kafka trigger...},
     "replicas": 0,
     "steps": [{"t": 0, "tokens": 12000, "records": 40, "throughput": 55.0, "loading": 0}, ...]}

``tokens`` is required; ``records`` (pending tasks, capping at one replica a task),
``throughput`` (a replica's measured tokens/s; default the trigger's ``tokensPerSecond``) and
``loading`` (replicas still loading their model) are optional. Each step prints
``{"t", "tokens", "metric", "metric_name", "active", "replicas"}``.

Who calls it: ``expediter keda simulate`` (:mod:`expediter.cli.keda`) when the scenario's trigger
has ``"type": "external"``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from expediter.errors import ConfigurationError
from expediter.scaling.scenarios import _TOP_KEYS, _is_int, _scaled_object, _section, _unknown
from expediter.scaling.simulating import ScaledObjectSpec
from expediter.scaling.working import ExternalTrigger, parse_external_trigger
from expediter.scaling.worksimulating import WorkSimulation, WorkStep

__all__ = ["WorkPoll", "WorkScenario", "is_work_scenario", "parse_work_scenario"]

_STEP_KEYS = ("t", "tokens", "records", "throughput", "loading")


@dataclass(frozen=True)
class WorkPoll:
    """One poll of ``expediter scaler``: pending work at ``t``."""

    t: float
    tokens: float
    records: int | None = None
    throughput: float | None = None
    loading: int = 0


@dataclass(frozen=True)
class WorkScenario:
    trigger: ExternalTrigger
    scaled_object: ScaledObjectSpec
    replicas: int
    steps: tuple[WorkPoll, ...]

    def run(self) -> Iterator[WorkStep]:
        simulation = WorkSimulation(self.trigger, self.scaled_object, self.replicas)
        for s in self.steps:
            yield simulation.step(s.t, s.tokens, records=s.records, throughput=s.throughput,
                                  loading=s.loading)  # fmt: skip


def is_work_scenario(document: object) -> bool:
    """Whether a decoded scenario's trigger is the external, work-based one."""
    if not isinstance(document, Mapping):
        return False
    trigger = document.get("trigger")
    return isinstance(trigger, Mapping) and trigger.get("type") == "external"


def parse_work_scenario(document: Mapping[str, object]) -> WorkScenario:
    """Validate a work-based scenario; one ConfigurationError lists every problem."""
    problems: list[str] = []
    _unknown(document, _TOP_KEYS, "", problems)
    raw_trigger = _section(document, "trigger", problems)
    _unknown(raw_trigger, ("type", "metadata"), "trigger.", problems)
    metadata = raw_trigger.get("metadata")
    trigger: ExternalTrigger | None = None
    if not isinstance(metadata, Mapping):
        problems.append('trigger.metadata must be an object, e.g. {"capability": "planning"}')
    else:
        try:
            trigger = parse_external_trigger(metadata, where="trigger.metadata")
        except ConfigurationError as exc:
            problems.extend(str(exc).splitlines())
    scaled_object = _scaled_object(_section(document, "scaledObject", problems), problems)
    replicas = document.get("replicas", 0)
    if not _is_int(replicas) or replicas < 0:
        problems.append(f"replicas must be a whole number >= 0, got {replicas!r}")
        replicas = 0
    steps = _polls(document.get("steps"), problems)
    if problems or trigger is None:
        raise ConfigurationError("\n".join(problems))
    return WorkScenario(trigger, scaled_object, replicas, steps)


def _polls(document: object, problems: list[str]) -> tuple[WorkPoll, ...]:
    if not isinstance(document, list) or not document:
        problems.append('steps must be a non-empty list of {"t": seconds, "tokens": pending}')
        return ()
    polls: list[WorkPoll] = []
    previous: float | None = None
    for i, raw in enumerate(document):
        at = f"steps[{i}]"
        if not isinstance(raw, Mapping):
            problems.append(f'{at} must be an object {{"t", "tokens"}}')
            continue
        _unknown(raw, _STEP_KEYS, f"{at}.", problems)
        numbers: dict[str, float] = {}
        for key in ("t", "tokens", "throughput"):
            value = raw.get(key)
            if value is None and key == "throughput":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                problems.append(f"{at}.{key} must be a number >= 0, got {value!r}")
                continue
            numbers[key] = value
        counts: dict[str, int] = {}
        for key in ("records", "loading"):
            value = raw.get(key)
            if value is None:
                continue
            if not _is_int(value) or value < 0:
                problems.append(f"{at}.{key} must be a whole number >= 0, got {value!r}")
                continue
            counts[key] = value
        if "t" not in numbers or "tokens" not in numbers:
            continue
        if previous is not None and numbers["t"] <= previous:
            problems.append(f"{at}.t ({numbers['t']:g}) must be later than the step before")
        previous = numbers["t"]
        polls.append(WorkPoll(numbers["t"], numbers["tokens"], counts.get("records"),
                              numbers.get("throughput"), counts.get("loading", 0)))  # fmt: skip
    return tuple(polls)
