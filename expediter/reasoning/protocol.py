"""The ReasoningEngine protocol: a prompt and an output model in, a validated output out.

Every engine (rules, llama.cpp in process, an OpenAI-compatible server) satisfies it, so an
agent's handler never knows which one runs: that is configuration (``EXPEDITER_ENGINE_KIND``).
Called by agent handlers through their TaskContext, and by the worker at start-up (``start``
loads a model and warms it before the worker joins its group).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from expediter.events import ReasoningCall, TokenUsage

__all__ = ["OutputT", "Reasoned", "ReasoningEngine", "RuleBook"]

OutputT = TypeVar("OutputT", bound=BaseModel)


@dataclass(frozen=True)
class Reasoned(Generic[OutputT]):
    """A validated output and what producing it cost."""

    output: OutputT
    usage: TokenUsage = field(default_factory=TokenUsage)
    routing: ReasoningCall | None = None
    """Which engine answered and how (set by :class:`~expediter.reasoning.RoutingEngine`, which
    the worker puts in front of every engine); it goes into the result event."""


RuleBook = Callable[[str, type[BaseModel]], BaseModel]
"""The deterministic engine's answer: (prompt, output model) -> an instance of that model.
An agent supplies one so that it runs in tests and demos without a model."""


@runtime_checkable
class ReasoningEngine(Protocol):
    """An engine that answers prompts with instances of a pydantic model.

    ``start()`` and ``stop()`` are idempotent. ``reason`` raises
    :class:`~expediter.errors.EngineError` (retriable for transport failures, permanent when the
    model's output cannot be made valid); an
    :class:`~expediter.reasoning.faults.EngineFault` says why, so that routing can fall back.
    """

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str:
        """The model it answers with (a served model's or a GGUF file's name), for results,
        ``trace`` and /metrics."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def reason(
        self,
        prompt: str,
        output_model: type[OutputT],
        *,
        system: str | None = None,
        max_tokens: int = 256,
        workflow_id: str | None = None,
    ) -> Reasoned[OutputT]:
        """``workflow_id`` keeps one workflow's calls on one side of a traffic split; engines
        that do not route ignore it."""
        ...
