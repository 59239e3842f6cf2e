"""How an agent is scaled and how its tasks' work is guessed: :class:`AgentScaling` and
:class:`Estimator`, declared on the :class:`~expediter.authoring.agents.Agent`::

    agent = Agent(
        ...,
        scaling=AgentScaling(signal="both", tokens_per_second=40, target_drain_seconds=60),
        estimator=Estimator(tokens_per_byte=0.5),
    )

- ``signal`` picks the ScaledObject's triggers: ``lag`` (KEDA's Kafka trigger on the group's
  lag, the default), ``work`` (an ``external`` trigger on ``expediter scaler``: pending tokens
  / a replica's tokens/s; the retry tiers' Kafka triggers only wake the agent) or ``both``
  (KEDA scales to the larger of the two).
- The estimator is the default one, the input's size times tokens per byte, calibrated by the
  tokens measured on finished tasks; the agent declares its prior. A producer that knows a
  task's work states it in the ``expediter-expected-tokens`` header, which wins.

Pure declarations, validated when the agent is made (a bad value names the field and the fix).
Who reads them: the KEDA renderer (:mod:`expediter.deploying`), the worker (its estimator) and
the local supervisor through the rendered ScaledObject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from expediter.errors import ConfigurationError
from expediter.scaling.estimating import DEFAULT_TOKENS_PER_BYTE, TokenEstimator
from expediter.scaling.working import ExternalTrigger

__all__ = ["AgentScaling", "Estimator", "ScalingSignal"]

ScalingSignal = Literal["lag", "work", "both"]
_SIGNALS = get_args(ScalingSignal)
_FIELDS = {
    "targetDrainSeconds": "target_drain_seconds",
    "tokensPerSecond": "tokens_per_second",
    "activationTokens": "activation_tokens",
    "replicasPerGpu": "replicas_per_gpu",
}


@dataclass(frozen=True)
class Estimator:
    """The agent's task-work estimator: ``tokens_per_byte`` x the task record's bytes (at least
    ``minimum``), the ratio calibrated on the tokens finished tasks really spent."""

    tokens_per_byte: float = DEFAULT_TOKENS_PER_BYTE
    """The prior, until measured tasks take over (about four bytes a token by default)."""
    minimum: int = 1
    """The smallest guess: a task is never free."""

    def __post_init__(self) -> None:
        if not self.tokens_per_byte > 0:
            raise ConfigurationError(
                f"Estimator.tokens_per_byte must be > 0, got {self.tokens_per_byte}; e.g. "
                f"{DEFAULT_TOKENS_PER_BYTE} (four bytes a token)"
            )
        if self.minimum < 1:
            raise ConfigurationError(f"Estimator.minimum must be >= 1, got {self.minimum}")

    @property
    def declared(self) -> bool:
        """Whether the prior differs from the default (then the scaler is told it)."""
        return self.tokens_per_byte != DEFAULT_TOKENS_PER_BYTE

    def build(self) -> TokenEstimator:
        """A fresh, uncalibrated estimator (one per worker process, one per scaler tail)."""
        return TokenEstimator(self.tokens_per_byte, minimum=self.minimum)


@dataclass(frozen=True)
class AgentScaling:
    """Which signal scales the agent, and the work trigger's numbers (see the module doc)."""

    signal: ScalingSignal = "lag"
    target_drain_seconds: float = 60.0
    """The HPA's target: seconds of work one replica should have pending."""
    tokens_per_second: float = 50.0
    """One task's rate on one replica until the scaler measures it on results."""
    activation_tokens: float = 0.0
    """Wake from zero when pending tokens are above this."""
    gpus: int | None = None
    replicas_per_gpu: int | None = None
    """Together: cap the replicas at ``gpus x replicas_per_gpu``."""
    scaler_address: str | None = None
    """``host:port`` of ``expediter scaler``; None: the deployment's (``expediter-scaler``
    Service in the agents' namespace)."""

    def __post_init__(self) -> None:
        if self.signal not in _SIGNALS:
            raise ConfigurationError(
                f"AgentScaling.signal must be one of {', '.join(_SIGNALS)}, got {self.signal!r}"
            )
        if self.scaler_address is not None:
            host, _, port = self.scaler_address.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigurationError(
                    f"AgentScaling.scaler_address must be host:port, got "
                    f"{self.scaler_address!r}; e.g. 'expediter-scaler.expediter.svc:9090'"
                )
        try:
            self.trigger("probe")  # the trigger's own checks
        except ConfigurationError as exc:  # named as the author wrote them, not as KEDA reads
            message = str(exc)
            for camel, snake in _FIELDS.items():
                message = message.replace(f".{camel} ", f".{snake} ")
            raise ConfigurationError(message) from None

    @property
    def uses_lag(self) -> bool:
        return self.signal in ("lag", "both")

    @property
    def uses_work(self) -> bool:
        return self.signal in ("work", "both")

    def trigger(
        self, capability: str, *, concurrency: int = 1, estimator: Estimator | None = None
    ) -> ExternalTrigger:
        """The ``external`` trigger for ``capability`` (what the renderer writes)."""
        return ExternalTrigger(
            capability=capability,
            target_drain_seconds=self.target_drain_seconds,
            tokens_per_second=self.tokens_per_second,
            activation_tokens=self.activation_tokens,
            gpus=self.gpus,
            replicas_per_gpu=self.replicas_per_gpu,
            concurrency=concurrency,
            tokens_per_byte=estimator.tokens_per_byte if estimator and estimator.declared
            else None,
            where="AgentScaling",
        )  # fmt: skip
