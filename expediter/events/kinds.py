"""The event types: TaskEvent, ResultEvent, WorkflowEvent, AgentCard and DeadLetter.

Tasks and results are generic in their payload, so that a capability's own input and output
models validate the payload in the same pass as the envelope: ``TaskEvent[SoilInput]``. Left
unparametrised, the payload is any JSON object. Each type has a ``type`` literal, so a reader of
a topic that mixes them (``expediter trace``) can decode to the right one.

Who writes them: the orchestrator and ``expediter submit`` write tasks and workflow events, the
worker writes results, dead letters and agent cards.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Generic, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypeVar

from expediter.events.envelope import Event, Identifier, StepEvent

__all__ = [
    "AgentCard",
    "AgentResources",
    "DeadLetter",
    "DeadLetterReason",
    "EngineFailure",
    "FallbackReason",
    "ReasoningCall",
    "ResultEvent",
    "TaskError",
    "TaskEvent",
    "TokenUsage",
    "WorkflowCommand",
    "WorkflowEvent",
    "WorkflowStatus",
]

# Unparametrised, a payload is any JSON object (PEP 696 default), never an empty BaseModel.
InputT = TypeVar("InputT", bound=BaseModel | dict[str, Any], default=dict[str, Any])
OutputT = TypeVar("OutputT", bound=BaseModel | dict[str, Any], default=dict[str, Any])

_FROZEN = ConfigDict(extra="ignore", frozen=True)


class TaskEvent(StepEvent, Generic[InputT]):
    """Work for one agent: run ``capability`` on ``input``. Published to ``tasks.<capability>``.

    Everything the agent needs is in ``input``: the orchestrator attaches context from its
    workflow table, so that agents keep no state and any replica can take any task.
    """

    type: Literal["task"] = "task"
    input: InputT


class TaskError(BaseModel):
    """Why a step failed, typed so that the orchestrator knows whether to retry."""

    model_config = _FROZEN

    retriable: bool
    """True: the same task may succeed later (timeout, rate limit). False: it never will."""
    code: Annotated[str, Field(min_length=1, max_length=100)]
    """A stable, machine-readable word such as ``timeout`` or ``invalid-input``."""
    message: Annotated[str, Field(max_length=10_000)]


class TokenUsage(BaseModel):
    """What a reasoning engine spent on the task."""

    model_config = _FROZEN

    prompt_tokens: Annotated[int, Field(ge=0)] = 0
    completion_tokens: Annotated[int, Field(ge=0)] = 0


FallbackReason = Literal[
    "timeout",
    "transport",
    "server-error",
    "malformed-reply",
    "invalid-output",
    "circuit-open",
]
"""Why a routed reasoning call moved on from an engine to the next one:

- ``timeout``: no answer within the engine's timeout;
- ``transport``: the server could not be reached or dropped the connection;
- ``server-error``: it answered 5xx, or 429 (busy);
- ``malformed-reply``: its reply is not JSON, or not a chat completion;
- ``invalid-output``: the answer is not a valid instance of the output model asked for;
- ``circuit-open``: its circuit breaker was open, so it was skipped without a call.
"""

EngineName = Annotated[str, Field(min_length=1, max_length=64)]


class EngineFailure(BaseModel):
    """One engine that was tried (or skipped) during a reasoning call and did not answer."""

    model_config = _FROZEN

    engine: EngineName
    """The route's name, as configured (``EXPEDITER_ENGINE_ROUTES``)."""
    model: Annotated[str, Field(max_length=256)]
    reason: Literal[FallbackReason, "refused"]
    """A :data:`FallbackReason`, or ``refused`` for an error that is not one (a 4xx, a prompt
    too long, no rulebook): such an error ends the call instead of falling back."""
    detail: Annotated[str, Field(max_length=500)] = ""
    latency_ms: Annotated[int, Field(ge=0)] = 0


class ReasoningCall(BaseModel):
    """Which engine answered one ``ctx.reason`` call of a task, and how it got there."""

    model_config = _FROZEN

    engine: EngineName | None
    """The route that answered; None when none did (the task then failed)."""
    model: Annotated[str, Field(max_length=256)] | None
    """The model that answered: a served model's name or a GGUF file's name."""
    split: Literal["primary", "candidate"] | None = None
    """With a traffic split: the arm this call's workflow is on (sticky per workflow)."""
    fallback: bool = False
    """True when the answer came from another engine than the first one in the call's order."""
    failures: list[EngineFailure] = Field(default_factory=list)
    """The engines tried or skipped before the one that answered (or all of them), in order:
    why each fell back."""
    latency_ms: Annotated[int, Field(ge=0)] = 0
    """The whole call, fallbacks included."""
    usage: TokenUsage = Field(default_factory=TokenUsage)
    """Tokens of the answering engine."""


class ResultEvent(StepEvent, Generic[OutputT]):
    """The outcome of one task: success with ``output``, or failure with ``error``.

    Published to ``results``, keyed by workflow id. ``task_id`` is the ``event_id`` of the task,
    so that the orchestrator can apply each (workflow, step, attempt) once.
    """

    type: Literal["result"] = "result"
    task_id: uuid.UUID
    status: Literal["succeeded", "failed"]
    output: OutputT | None = None
    error: TaskError | None = None
    usage: TokenUsage = Field(default_factory=TokenUsage)
    duration_ms: Annotated[int, Field(ge=0)] = 0
    tries: Annotated[int, Field(ge=1)] = 1
    """How many times the worker ran the task in place for this ``attempt`` (1: no in-place
    retry). ``attempt`` is always the attempt the orchestrator dispatched, the identity of the
    step's try, so that a result retried in place is not taken for a late one; the orchestrator
    owns the attempts, the worker only counts its tries within one."""
    reasoning: list[ReasoningCall] | None = None
    """The task's reasoning calls, in order (``ctx.reason``): which engine and model answered
    each, whether it fell back and why, its tokens and latency. None when the handler did not
    reason (or the result comes from a worker older than this field)."""
    estimated_tokens: Annotated[int, Field(ge=0)] | None = None
    """The work the task was expected to cost, in tokens: the producer's
    ``expediter-expected-tokens`` header, or the agent's estimator. Next to ``usage`` it
    measures the estimator's error. None from a worker older than this field."""
    estimate_source: Literal["header", "estimator"] | None = None
    input_bytes: Annotated[int, Field(ge=0)] | None = None
    """The task record's size in bytes: what the estimator guesses from and is calibrated on."""

    @model_validator(mode="after")
    def _outcome_matches_status(self) -> ResultEvent[OutputT]:
        if self.status == "succeeded" and (self.output is None or self.error is not None):
            raise ValueError("a succeeded result has an output and no error")
        if self.status == "failed" and (self.error is None or self.output is not None):
            raise ValueError("a failed result has an error and no output")
        return self


WorkflowStatus = Literal[
    "started", "step-started", "step-completed", "step-late", "completed", "failed",
    "approval-requested", "approval-decided", "decision-parked", "decision-ignored",
]  # fmt: skip
"""``approval-requested`` (asked, or escalated: ``round`` 2) and ``approval-decided`` (by a
person or the deadline) mark an approval step's wait; ``decision-parked`` is a decision that
came before its request, ``decision-ignored`` one recorded and not applied, with the reason."""


class WorkflowEvent(Event):
    """A change of a workflow's state, as the orchestrator records it. Keyed by workflow id."""

    type: Literal["workflow"] = "workflow"
    workflow_id: Identifier
    workflow: Identifier
    """The workflow definition's name, e.g. ``field-analysis``."""
    status: WorkflowStatus
    step_id: Identifier | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class WorkflowCommand(Event):
    """What the orchestrator is asked to do with a workflow, on ``workflows.commands``.

    ``start`` comes from ``expediter submit``; ``expire`` from the orchestrator's own deadline
    timer, so that a deadline is handled in the stream that owns the workflow's table entry,
    like a result. Keyed by workflow id, co-partitioned with the workflow table.
    """

    type: Literal["workflow-command"] = "workflow-command"
    action: Literal["start", "expire"]
    workflow_id: Identifier
    workflow: Identifier
    input: dict[str, Any] = Field(default_factory=dict)
    step_id: Identifier | None = None
    attempt: Annotated[int, Field(ge=1)] | None = None
    """With ``expire``: the attempt whose deadline passed (a newer attempt is not expired)."""


class AgentResources(BaseModel):
    """What one replica of an agent needs and may take on."""

    model_config = _FROZEN

    accelerator: Literal["cpu", "gpu"] = "cpu"
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 1
    max_task_seconds: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    """The longest one task may run; terminationGracePeriodSeconds must cover it."""


class AgentCard(Event):
    """An agent instance's entry in the ``registry`` topic (compacted, keyed by
    ``<capability>/<instance>``; a tombstone removes it when the instance stops cleanly)."""

    type: Literal["agent-card"] = "agent-card"
    name: Identifier
    capability: Identifier
    version: Annotated[str, Field(min_length=1, max_length=64)]
    instance: Identifier
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    resources: AgentResources = Field(default_factory=AgentResources)
    engine: Annotated[str, Field(max_length=64)] | None = None
    """The reasoning engine the instance runs (``rules``, ``llama``, ``openai``)."""
    model: Annotated[str, Field(max_length=256)] | None = None
    """The engine's model (a GGUF file name, a served model's name), when it has one."""
    lease_seconds: Annotated[float, Field(gt=0, le=86_400)] | None = None
    """How long the card holds without a heartbeat: the worker publishes it again well within
    this, and a reader takes a card whose ``expires_at`` passed for a vanished instance (one
    killed with -9 sends no tombstone). None: a card from a worker without leases."""
    expires_at: AwareDatetime | None = None
    """``created_at + lease_seconds``: after this, without a newer card, the instance is stale."""


DeadLetterReason = Literal[
    "oversized",
    "undecodable",
    "invalid",
    "unsupported-version",
    "wrong-capability",
    "exhausted",
    "permanent",
    "unknown-workflow",
    "handling-failed",
]
"""Why a record became a dead letter, the one list the model, the worker, the orchestrator and
``expediter dlq`` share:

- ``oversized``, ``undecodable``, ``invalid``, ``unsupported-version``: the record is not a
  valid event (:data:`expediter.errors.DecodeReason`);
- ``wrong-capability``: a task on another capability's topic;
- ``exhausted``: a retriable failure after its last try; ``permanent``: a permanent failure;
- ``unknown-workflow``: a command for a workflow the orchestrator does not have;
- ``handling-failed``: the orchestrator's handling of the record raised.
"""


class DeadLetter(Event):
    """A record that could not be processed, kept whole with the reason, in ``dlq.<capability>``.

    The same facts travel in the record's headers (reason, source topic, partition, offset), so
    that tools can filter without decoding. The original bytes are kept base64-encoded: they
    may not be JSON at all.
    """

    type: Literal["dead-letter"] = "dead-letter"
    reason: DeadLetterReason
    """Why the record is here; see :data:`DeadLetterReason`."""
    detail: Annotated[str, Field(max_length=10_000)]
    source_topic: Annotated[str, Field(min_length=1, max_length=249)]
    source_partition: Annotated[int, Field(ge=0)]
    source_offset: Annotated[int, Field(ge=0)]
    original_key: str | None = None
    original_value: str
    original_headers: list[tuple[str, str]] = Field(default_factory=list)
    """Header names with base64 values, in their original order."""
    workflow_id: Identifier | None = None
    step_id: Identifier | None = None
    capability: Identifier | None = None
    attempt: Annotated[int, Field(ge=1)] | None = None
    truncated: bool = False
    """True when ``original_value`` (or the key, or the headers) keeps only a bounded prefix of
    the original, so that the dead letter always fits in the broker's message limit. The whole
    record stays at ``source_topic``/``source_partition``/``source_offset`` while that topic
    retains it; a truncated dead letter cannot be redriven as it is."""
    original_value_bytes: Annotated[int, Field(ge=0)] | None = None
    """The size of the original value in bytes, whether or not it was truncated."""
