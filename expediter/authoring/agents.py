"""What an agent is: the :class:`Agent` a file under ``agents/`` declares, and the
:class:`TaskContext` its handler receives.

An agent file holds one agent::

    class SoilInput(BaseModel): ...
    class SoilOutput(BaseModel): ...

    async def analyse(task: SoilInput, ctx: TaskContext) -> SoilOutput:
        plan = await ctx.reason(f"Assess field {task.field_id}", SoilPlan)
        ...

    agent = Agent(
        name="soil-analyzer", capability="soil-analysis", version="1.0.0",
        input_model=SoilInput, output_model=SoilOutput, handler=analyse,
        resources=AgentResources(accelerator="cpu", concurrency=4, max_task_seconds=30),
    )

The handler is pure with respect to state: everything it needs arrives in the task, and what it
produces leaves as the result. It raises :class:`~expediter.errors.RetriableError` or
:class:`~expediter.errors.PermanentError`; anything else it raises counts as retriable.
Called by the worker (``expediter worker agents/<file>.py``), the schema exporter and the KEDA
renderer.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from expediter.authoring.scaling import AgentScaling, Estimator
from expediter.errors import ConfigurationError, EngineError
from expediter.events import AgentResources, ReasoningCall, TokenUsage

if TYPE_CHECKING:
    # Types only: an agent file should not pay for loading the engines (aiohttp, llama).
    from expediter.authoring.tools import Tool
    from expediter.reasoning.protocol import OutputT, ReasoningEngine, RuleBook

__all__ = ["Agent", "AgentInputT", "AgentOutputT", "Handler", "TaskContext", "ToolCaller"]

AgentInputT = TypeVar("AgentInputT", bound=BaseModel)
AgentOutputT = TypeVar("AgentOutputT", bound=BaseModel)

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class ToolCaller(Protocol):
    """Calls allowlisted tools for one task; each call is recorded by (task id, step, n), so a
    redelivered task gets the recorded result instead of repeating the side effect."""

    async def call(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]: ...


_NO_USAGE = TokenUsage()


@dataclass(slots=True)
class TaskContext:
    """What a handler gets besides its input: the task's coordinates, the engine, the tools."""

    task_id: uuid.UUID
    workflow_id: str
    step_id: str
    attempt: int
    engine: ReasoningEngine
    tools: ToolCaller
    log: logging.Logger | logging.LoggerAdapter[logging.Logger]
    usage: TokenUsage = _NO_USAGE  # frozen, so one shared zero serves every task
    """Tokens spent so far on this task; :meth:`reason` adds to it, the result reports it."""
    tries: int = 1
    """This run's number within ``attempt``: 1, then 2, 3... as the worker retries in place
    after a retriable error (up to EXPEDITER_MAX_ATTEMPTS). ``attempt`` is the orchestrator's
    dispatch and does not change on an in-place retry."""
    reasoning: tuple[ReasoningCall, ...] = ()
    """Each :meth:`reason` call's routing record (which engine answered, fallbacks, tokens,
    latency), in order; the result reports them."""

    async def reason(
        self,
        prompt: str,
        output_model: type[OutputT],
        *,
        system: str | None = None,
        max_tokens: int = 256,
    ) -> OutputT:
        """Ask the configured engine, count the tokens, return the validated output."""
        try:
            reasoned = await self.engine.reason(
                prompt, output_model, system=system, max_tokens=max_tokens,
                workflow_id=self.workflow_id,
            )  # fmt: skip
        except EngineError as exc:
            # A routed call that no engine answered still says which ones were tried.
            tried = getattr(exc, "routing", None)
            if isinstance(tried, ReasoningCall):
                self.reasoning = (*self.reasoning, tried)
            raise
        if reasoned.routing is not None:
            self.reasoning = (*self.reasoning, reasoned.routing)
        self.usage = TokenUsage(
            prompt_tokens=self.usage.prompt_tokens + reasoned.usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens + reasoned.usage.completion_tokens,
        )
        return reasoned.output


Handler = Callable[[AgentInputT, TaskContext], Awaitable[AgentOutputT]]


@dataclass(frozen=True)
class Agent(Generic[AgentInputT, AgentOutputT]):
    """One agent: a capability, its payload models, its handler and what it needs to run."""

    name: str
    """The deployment's name (k8s, compose, metrics); lowercase DNS label."""
    capability: str
    """What it does; names its topics (``tasks.<capability>``) and its consumer group, as
    :class:`expediter.messaging.TopicNames` derives them under the deployment's prefix."""
    version: str
    input_model: type[AgentInputT]
    output_model: type[AgentOutputT]
    handler: Handler[AgentInputT, AgentOutputT]
    resources: AgentResources = field(default_factory=AgentResources)
    description: str = ""
    rules: RuleBook | None = None
    """Answers of the deterministic ``rules`` engine; needed only if the handler calls
    ``ctx.reason``."""
    tools: Sequence[Tool[Any, Any]] = ()
    """The allowlist: the :class:`~expediter.authoring.Tool` objects it may call, no others."""
    scaling: AgentScaling = field(default_factory=AgentScaling)
    """What scales it: lag, pending work (``expediter scaler``) or both; see
    :mod:`expediter.authoring.scaling`."""
    estimator: Estimator = field(default_factory=Estimator)
    """How a task's work (tokens) is guessed when its producer states none; recorded on the
    result next to the actual tokens."""

    def __post_init__(self) -> None:
        for label, value in (("name", self.name), ("capability", self.capability)):
            if not _NAME.match(value):
                raise ConfigurationError(
                    f"agent {label} {value!r} must be a lowercase DNS label (a-z, 0-9, '-'; "
                    "at most 63 characters): it becomes topic, group and Kubernetes names"
                )
        for label, model in (
            ("input_model", self.input_model),
            ("output_model", self.output_model),
        ):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ConfigurationError(
                    f"agent {self.name}: {label} must be a pydantic BaseModel subclass"
                )
