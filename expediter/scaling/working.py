"""Work-based scaling: the external trigger's metadata and the metric it sends the HPA.

The metric is the pending work in seconds of one replica: pending tokens divided by a replica's
measured throughput (tokens/s). The HPA reads it as an AverageValue with target
``targetDrainSeconds``, so it asks for ``ceil(pending tokens / (throughput x drain seconds))``
replicas: enough to work the backlog off within the target, whether it is four huge tasks or
four thousand tiny ones (lag counts both as the same number of records).

Two rules ride on top:

- **GPU cap.** With ``gpus`` and ``replicasPerGpu`` set, the metric is capped at
  ``gpus x replicasPerGpu x target``, so the HPA never asks for replicas no GPU can hold (as KEDA
  caps the lag metric at partitions x lagThreshold).
- **One replica a task.** A task runs on one replica, so the metric is also capped at the
  pending tasks x target: four 4,000-token tasks ask for four replicas at most.
- **Cold start.** A replica still loading its model is not capacity yet, and work that arrives
  while it loads is work nobody serves yet. With AverageValue the HPA ignores readiness, so it
  would add pods for that work, which then load for minutes too. While any replica is loading,
  the metric is held at the value it had when the first of them started loading (it may fall,
  never rise); once all are ready it follows the pending work again.

Pure: callers supply pending tokens, throughput and replica states. Who calls it: the external
scaler (:mod:`expediter.scaler`), the engine's :class:`~expediter.scaling.simulating.Simulation`
through :meth:`WorkMeter.metric`, and the bench.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from expediter.errors import ConfigurationError

__all__ = [
    "EXTERNAL_METADATA_KEYS",
    "WORK_METRIC_NAME",
    "ExternalTrigger",
    "WorkMeter",
    "WorkMetric",
    "external_metadata",
    "parse_external_trigger",
]

WORK_METRIC_NAME = "pending-work-seconds"
"""The metric's name in GetMetricSpec; KEDA prefixes it with the trigger's index (``s0-``)."""

_FLOATS = {
    "targetDrainSeconds": ("target_drain_seconds", 60.0),
    "tokensPerSecond": ("tokens_per_second", 50.0),
    "activationTokens": ("activation_tokens", 0.0),
    "tokensPerByte": ("tokens_per_byte", None),
}
_INTS = {"gpus": "gpus", "replicasPerGpu": "replicas_per_gpu", "concurrency": "concurrency"}
# Read by KEDA itself or by the scaler's Kafka side; accepted so a real trigger passes.
_OTHER_KEYS = ("scalerAddress", "capability", "topic", "consumerGroup", "bootstrapServers")
EXTERNAL_METADATA_KEYS = frozenset((*_FLOATS, *_INTS, *_OTHER_KEYS))


@dataclass(frozen=True)
class ExternalTrigger:
    """An ``external`` trigger pointing at ``expediter scaler``: what it scales on."""

    capability: str
    target_drain_seconds: float = 60.0
    """The HPA's target: seconds of work one replica should have pending."""
    tokens_per_second: float = 50.0
    """A replica's throughput until one is measured on finished tasks."""
    activation_tokens: float = 0.0
    """Active (0 -> 1) when pending tokens are strictly above this."""
    gpus: int | None = None
    replicas_per_gpu: int | None = None
    concurrency: int = 1
    """Tasks one replica runs at once: its throughput is this times one task's rate."""
    tokens_per_byte: float | None = None
    """The estimator's prior (the agent's declared ``Estimator``); None: the default."""
    where: str = field(default="trigger", repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if not self.capability:
            problems.append(f"{self.where}.capability is required; name the agent's capability")
        if self.target_drain_seconds <= 0:
            problems.append(f'{self.where}.targetDrainSeconds must be > 0, e.g. "60"')
        if self.tokens_per_second <= 0:
            problems.append(f'{self.where}.tokensPerSecond must be > 0, e.g. "50"')
        if self.tokens_per_byte is not None and self.tokens_per_byte <= 0:
            problems.append(f'{self.where}.tokensPerByte must be > 0, e.g. "0.25"')
        if self.activation_tokens < 0:
            problems.append(f"{self.where}.activationTokens must be >= 0")
        if (self.gpus is None) != (self.replicas_per_gpu is None):
            problems.append(
                f"{self.where}.gpus and {self.where}.replicasPerGpu go together; set both or "
                "neither"
            )
        for name, value in (("gpus", self.gpus), ("replicasPerGpu", self.replicas_per_gpu),
                            ("concurrency", self.concurrency)):  # fmt: skip
            if value is not None and value < 1:
                problems.append(f"{self.where}.{name} must be >= 1, got {value}")
        if problems:
            raise ConfigurationError("\n".join(problems))

    @property
    def replica_cap(self) -> int | None:
        """The most replicas the GPUs hold, or None without a cap."""
        if self.gpus is None or self.replicas_per_gpu is None:
            return None
        return self.gpus * self.replicas_per_gpu


def parse_external_trigger(
    metadata: Mapping[str, object], *, where: str = "trigger"
) -> ExternalTrigger:
    """An external trigger's metadata (strings, as KEDA passes scalerMetadata); problems listed."""
    problems: list[str] = []
    values: dict[str, object] = {}
    for key, raw in metadata.items():
        if key not in EXTERNAL_METADATA_KEYS:
            close = difflib.get_close_matches(key, sorted(EXTERNAL_METADATA_KEYS), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            problems.append(
                f"{where}.{key} is not a setting of expediter's scaler; {hint}remove it"
            )
            continue
        text = str(raw).strip()
        if not text:
            continue
        if key in _FLOATS:
            try:
                number = float(text)
                if not math.isfinite(number):
                    raise ValueError(text)
                values[_FLOATS[key][0]] = number
            except ValueError:
                problems.append(f'{where}.{key} must be a number, got "{text}"; e.g. "60"')
        elif key in _INTS:
            if not text.isdigit():
                problems.append(f'{where}.{key} must be a whole number, got "{text}"; e.g. "1"')
            else:
                values[_INTS[key]] = int(text)
        elif key == "capability":
            values["capability"] = text
    trigger: ExternalTrigger | None = None
    if not problems:
        try:
            trigger = ExternalTrigger(
                capability=str(values.pop("capability", "")),
                where=where,
                **values,  # type: ignore[arg-type]
            )
        except ConfigurationError as exc:
            problems.extend(str(exc).splitlines())
    if problems or trigger is None:
        raise ConfigurationError("\n".join(problems))
    return trigger


def external_metadata(trigger: ExternalTrigger, address: str) -> dict[str, str]:
    """The ``external`` trigger's metadata for ``trigger`` at ``address`` (host:port), strings
    as KEDA passes them: what :func:`parse_external_trigger` reads back. Called by the KEDA
    renderer (:mod:`expediter.deploying`) and the operator."""
    metadata = {
        "scalerAddress": address,
        "capability": trigger.capability,
        "targetDrainSeconds": f"{trigger.target_drain_seconds:g}",
        "tokensPerSecond": f"{trigger.tokens_per_second:g}",
        "activationTokens": f"{trigger.activation_tokens:g}",
        "concurrency": str(trigger.concurrency),
    }
    if trigger.gpus is not None and trigger.replicas_per_gpu is not None:
        metadata["gpus"] = str(trigger.gpus)
        metadata["replicasPerGpu"] = str(trigger.replicas_per_gpu)
    if trigger.tokens_per_byte is not None:
        metadata["tokensPerByte"] = f"{trigger.tokens_per_byte:g}"
    return metadata


@dataclass(frozen=True)
class WorkMetric:
    """What one read of the work-based trigger gives the HPA."""

    tokens: float
    """Pending tokens."""
    throughput: float
    """A replica's tokens/s used for this read."""
    raw: float
    """Pending work in replica-seconds, before the cap and the cold-start hold."""
    metric: float
    """What the HPA reads (AverageValue, target ``targetDrainSeconds``)."""
    active: bool
    capped: bool = False
    held: bool = False
    """The cold-start hold kept the metric below ``raw``."""

    def replicas(self, target: float) -> int:
        """What the HPA asks for out of tolerance: ceil(metric / target)."""
        return math.ceil(self.metric / target) if self.metric > 0 else 0


class WorkMeter:
    """Reads in, metrics out; remembers the value held while replicas load their model."""

    def __init__(self, trigger: ExternalTrigger) -> None:
        self.trigger = trigger
        self._held: float | None = None

    def metric(
        self,
        tokens: float,
        *,
        throughput: float | None = None,
        loading: int = 0,
        records: int | None = None,
    ) -> WorkMetric:
        """One read: ``tokens`` pending, a replica's measured ``throughput`` (None: the
        trigger's ``tokensPerSecond``), ``loading`` replicas still loading their model.

        ``records`` (pending tasks) caps the metric at one replica a task: a task runs on one
        replica, so four huge tasks never use a fifth replica, however many tokens they hold."""
        trigger = self.trigger
        rate = throughput if throughput and throughput > 0 else trigger.tokens_per_second
        rate *= trigger.concurrency
        raw = max(0.0, tokens) / rate
        metric = raw
        capped = held = False
        cap = trigger.replica_cap
        if records is not None:
            cap = records if cap is None else min(cap, records)
        if cap is not None and metric > cap * trigger.target_drain_seconds:
            metric = cap * trigger.target_drain_seconds
            capped = True
        if loading > 0:
            if self._held is None:
                self._held = metric
            elif metric > self._held:
                metric, held = self._held, True
            else:
                self._held = metric
        else:
            self._held = None
        return WorkMetric(tokens, rate, raw, metric, tokens > trigger.activation_tokens,
                          capped, held)  # fmt: skip
