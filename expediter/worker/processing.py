"""Running one task record: decode, call the handler with retries, and say what to publish.

:class:`TaskRunner` never raises for a bad record or a failed handler: it returns an
:class:`Outcome` holding the records to publish (a result, a dead letter, or both), which the
worker then commits together with the consumer offset in one transaction. Only cancellation
(a revoked partition, a shutdown past its drain) escapes. Called by
:mod:`expediter.worker.working`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import types
import uuid
from collections.abc import Awaitable, Coroutine, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from aiokafka.structs import ConsumerRecord

from expediter.authoring.agents import Agent, TaskContext, ToolCaller
from expediter.errors import DecodeError, EngineError, PermanentError, TaskFailure, ToolError
from expediter.events import (
    DeadLetterReason,
    OutgoingRecord,
    Producer,
    ResultTemplate,
    TaskError,
    TaskEvent,
    TokenUsage,
    TraceParent,
    continue_trace,
    decode,
    to_record,
)
from expediter.messaging import TopicNames
from expediter.reasoning.protocol import ReasoningEngine
from expediter.scaling.estimating import TokenEstimator
from expediter.settings import WorkerSettings
from expediter.worker.delaying import RetryTiers, prior_tries
from expediter.worker.failing import backoff, dead_letter, failure_result, is_retriable, task_error

__all__ = ["Outcome", "TaskRunner", "ToolCallerFactory", "identified", "record_task_id"]

T = TypeVar("T")

OutcomeStatus = Literal["succeeded", "failed", "dead-lettered", "expired", "delayed"]
"""``delayed``: moved to a retry tier (:mod:`expediter.worker.delaying`), to run again there."""


@dataclass
class Outcome:
    """What one record came to, and what to publish about it."""

    status: OutcomeStatus
    publish: list[tuple[str, OutgoingRecord]] = field(default_factory=list)
    seconds: float = 0.0
    usage: TokenUsage = field(default_factory=TokenUsage)
    reason: str | None = None
    retries: int = 0


async def _bounded(work: Awaitable[T], seconds: float) -> T:
    """``await coro`` under a timeout of ``seconds``, as ``asyncio.timeout`` would.

    Why not just ``asyncio.timeout``: arming and cancelling its timer handle is the largest
    per-task cost for a handler that never waits (a rule, a lookup). So the coroutine's first
    step runs here; if it finishes, no timer was needed (a step that never yields cannot be
    interrupted by a timeout anyway). If it waits, the rest runs under ``asyncio.timeout_at``
    with the time the first step took already off the limit, so the limit is the same.
    """
    if not isinstance(work, types.CoroutineType):  # a future or other awaitable: no shortcut
        async with asyncio.timeout(seconds):
            return await work
    coro: Coroutine[Any, Any, T] = work
    started = time.monotonic()  # cheaper than the loop's clock, needed only if it waits
    try:
        waiting = coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    except BaseException:
        coro.close()
        raise
    deadline = asyncio.get_running_loop().time() + seconds - (time.monotonic() - started)
    async with asyncio.timeout_at(deadline):
        return await _resume(coro, waiting)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, T], waiting: Any) -> Generator[Any, Any, T]:
    """Drive ``coro`` on from a step that yielded ``waiting``, within the calling task: every
    value the task sends or throws in (a future's wake-up, a cancellation) goes on to it."""
    try:
        while True:
            try:
                sent = yield waiting
            except GeneratorExit:
                raise
            except BaseException as exc:
                waiting = coro.throw(exc)
            else:
                waiting = coro.send(sent)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        coro.close()


class ToolCallerFactory:
    """Builds the tool caller for one task; the worker supplies one backed by the ledger."""

    def __call__(self, task: TaskEvent[Any]) -> ToolCaller:
        return _NO_TOOLS


class _NoTools:
    async def call(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        raise ToolError(f"tool {name!r} refused: this agent declares no tools (Agent(tools=...))")


_NO_TOOLS = _NoTools()


def record_task_id(topic: str, partition: int, offset: int) -> uuid.UUID:
    """The id of a task record that came without an ``event_id``: derived from where it lies,
    so every redelivery (and every worker) gives it the same one."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"kafka:{topic}/{partition}/{offset}")


def identified(task: TaskEvent[Any], record: ConsumerRecord[bytes, bytes]) -> TaskEvent[Any]:
    """``task``, with its record's derived id if the producer set none (decoding would have
    given it a new random one each time)."""
    if "event_id" in task.model_fields_set:
        return task
    return task.model_copy(
        update={"event_id": record_task_id(record.topic, record.partition, record.offset)}
    )


class TaskRunner:
    def __init__(
        self,
        agent: Agent[Any, Any],
        engine: ReasoningEngine,
        settings: WorkerSettings,
        names: TopicNames,
        producer: Producer,
        tools: ToolCallerFactory,
        log: logging.Logger,
        tiers: RetryTiers | None = None,
    ) -> None:
        self.agent = agent
        self.tiers = tiers
        """Where a task goes once its in-place tries are used up; None: it is exhausted."""
        self.engine = engine
        self.settings = settings
        self.names = names
        self.producer = producer
        self.tools = tools
        self.log = log
        self.model = TaskEvent[agent.input_model]  # type: ignore[name-defined]
        self.results_topic = names.results
        self.dlq_topic = names.dlq(agent.capability)
        self._succeeded = ResultTemplate(producer)
        self.estimator: TokenEstimator = agent.estimator.build()
        """The task's expected tokens when its producer stated none; calibrated on the tokens
        this worker measures, and recorded on the result next to them (issue 18)."""

    async def run(self, record: ConsumerRecord[bytes, bytes]) -> Outcome:
        started = time.monotonic()
        trace = continue_trace(record.headers)
        try:
            task: TaskEvent[Any] = decode(
                record.value, self.model, max_bytes=self.settings.max_record_bytes
            )
        except DecodeError as exc:
            outcome = self._poison(record, exc, trace)
        else:
            task = identified(task, record)
            if task.capability != self.agent.capability:
                outcome = self._misrouted(record, task, trace)
            else:
                outcome = await self._attempts(record, task, trace)
        outcome.seconds = time.monotonic() - started
        return outcome

    def _poison(
        self, record: ConsumerRecord[bytes, bytes], exc: DecodeError, trace: TraceParent
    ) -> Outcome:
        outcome = Outcome(status="dead-lettered", reason=exc.reason)
        envelope: TaskEvent[Any] | None = None
        if exc.reason == "invalid":
            # The envelope may be fine and only the payload wrong: then the workflow that sent
            # it hears of the failure instead of waiting for its deadline.
            try:
                envelope = identified(decode(record.value, TaskEvent), record)
            except DecodeError:
                envelope = None
        if envelope is not None:
            error = TaskError(retriable=False, code="invalid-input", message=exc.detail[:10_000])
            result = failure_result(envelope, self.producer, error, duration_ms=0)
            outcome.publish.append((self.results_topic, to_record(result, trace=trace)))
        letter = dead_letter(
            record, self.producer, reason=exc.reason, detail=exc.detail, task=envelope
        )
        outcome.publish.append((self.dlq_topic, to_record(letter, trace=trace)))
        self.log.warning(
            "record %s[%d]@%d to the DLQ: %s",
            record.topic, record.partition, record.offset, exc,
            extra={"capability": self.agent.capability, "reason": exc.reason},
        )  # fmt: skip
        return outcome

    def _misrouted(
        self, record: ConsumerRecord[bytes, bytes], task: TaskEvent[Any], trace: TraceParent
    ) -> Outcome:
        """A task for another capability: serving it would answer with the wrong agent's output
        under the task's capability. It goes to the DLQ (``wrong-capability``), and its workflow
        gets a failure result instead of waiting for its deadline."""
        detail = (
            f"a task for capability {task.capability!r} on {record.topic}, which agent "
            f"{self.agent.name} serves for {self.agent.capability!r}: publish it to "
            f"{self.names.tasks(task.capability)}"
        )
        error = TaskError(retriable=False, code="wrong-capability", message=detail)
        result = failure_result(task, self.producer, error, duration_ms=0)
        letter = dead_letter(
            record, self.producer, reason="wrong-capability", detail=detail, task=task
        )
        self.log.warning(
            "record %s[%d]@%d to the DLQ: %s", record.topic, record.partition, record.offset,
            detail, extra={"capability": self.agent.capability, "reason": "wrong-capability"},
        )  # fmt: skip
        return Outcome(
            status="dead-lettered", reason="wrong-capability",
            publish=[(self.results_topic, to_record(result, trace=trace)),
                     (self.dlq_topic, to_record(letter, trace=trace))],
        )  # fmt: skip

    async def _attempts(
        self, record: ConsumerRecord[bytes, bytes], task: TaskEvent[Any], trace: TraceParent
    ) -> Outcome:
        if task.deadline is not None and task.deadline <= datetime.now(UTC):
            # The orchestrator has stopped waiting; spending a GPU on it helps nobody.
            error = TaskError(
                retriable=False, code="expired", message="deadline passed before start"
            )
            result = failure_result(task, self.producer, error, duration_ms=0)
            return Outcome(
                status="expired", reason="expired",
                publish=[(self.results_topic, to_record(result, trace=trace))],
            )  # fmt: skip
        # Retries have one owner each: the orchestrator's attempts (``task.attempt``, kept as the
        # result's identity) and, within one, the worker's in-place tries (``tries``).
        # A task from a retry tier counts the tries it had before (its result's ``tries``).
        first = 1 + (prior_tries(record) if self.tiers is not None else 0)
        tries = first
        retries = 0
        while True:
            ctx = TaskContext(
                task_id=task.event_id,
                workflow_id=task.workflow_id,
                step_id=task.step_id,
                attempt=task.attempt,
                engine=self.engine,
                tools=self.tools(task),
                log=self.log,
                tries=tries,
            )
            started = time.monotonic()
            try:
                output = await _bounded(
                    self.agent.handler(task.input, ctx), self.agent.resources.max_task_seconds
                )
                if not isinstance(output, self.agent.output_model):
                    raise PermanentError(
                        f"the handler returned {type(output).__name__}, not "
                        f"{self.agent.output_model.__name__}",
                        code="bad-output",
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the handler is user code: anything may come out
                error = task_error(exc)
                if is_retriable(exc) and tries - first + 1 < self.settings.max_attempts:
                    self.log.info(
                        "task %s try %d failed (%s), retrying",
                        task.event_id,
                        tries,
                        error.code,
                        extra={"capability": task.capability, "workflow_id": task.workflow_id},
                    )
                    await asyncio.sleep(backoff(self.settings.retry_backoff_seconds, tries))
                    tries += 1
                    retries += 1
                    continue
                reason: DeadLetterReason = "exhausted" if is_retriable(exc) else "permanent"
                moved = None
                if reason == "exhausted" and self.tiers is not None:
                    moved = self.tiers.move(record, task, trace, tries)
                if moved is not None:
                    self.log.info(
                        "task %s failed %d time(s) (%s); to %s", task.event_id, tries,
                        error.code, moved[0],
                        extra={"capability": task.capability, "workflow_id": task.workflow_id},
                    )  # fmt: skip
                    return Outcome(status="delayed", reason=error.code, usage=ctx.usage,
                                   retries=retries, publish=[moved])  # fmt: skip
                if not isinstance(exc, TaskFailure | EngineError | TimeoutError):
                    self.log.exception("handler of %s raised", self.agent.capability)
                failed = self._failed(record, task, trace, error, reason, tries, ctx, started)
                failed.retries = retries  # this delivery's; a tier's earlier tries were counted
                return failed
            size = len(record.value or b"")
            estimate = self.estimator.estimate(size, record.headers)
            if estimate.source == "estimator":  # as the scaler calibrates: size-based tasks
                self.estimator.observe(size, ctx.usage.prompt_tokens + ctx.usage.completion_tokens)
            succeeded = self._succeeded.record(
                task, output, attempt=task.attempt, usage=ctx.usage, trace=trace,
                duration_ms=int((time.monotonic() - started) * 1000), tries=tries,
                reasoning=ctx.reasoning, estimate=(estimate.tokens, estimate.source, size),
            )  # fmt: skip
            if len(succeeded.value) > self.settings.max_record_bytes:
                # Published, it would fail the whole transaction and stall every partition.
                error = TaskError(
                    retriable=False, code="oversized-output",
                    message=f"the result is {len(succeeded.value)} bytes, over "
                    f"EXPEDITER_MAX_RECORD_BYTES ({self.settings.max_record_bytes}): return "
                    "less, or store the data elsewhere and return a reference",
                )  # fmt: skip
                return self._failed(record, task, trace, error, "permanent", tries, ctx, started)
            return Outcome(
                status="succeeded",
                publish=[(self.results_topic, succeeded)],
                usage=ctx.usage,
                retries=retries,
            )

    def _failed(
        self,
        record: ConsumerRecord[bytes, bytes],
        task: TaskEvent[Any],
        trace: TraceParent,
        error: TaskError,
        reason: DeadLetterReason,
        tries: int,
        ctx: TaskContext,
        started: float,
    ) -> Outcome:
        duration_ms = int((time.monotonic() - started) * 1000)
        result = failure_result(task, self.producer, error, duration_ms=duration_ms, tries=tries)
        if ctx.reasoning:  # which engines were tried, and why each failed
            result = result.model_copy(update={"reasoning": list(ctx.reasoning)})
        detail = f"{error.code} (after {tries} tries): {error.message}"
        letter = dead_letter(record, self.producer, reason=reason, detail=detail, task=task)
        return Outcome(
            status="failed",
            reason=reason,
            usage=ctx.usage,
            retries=tries - 1,
            publish=[
                (self.results_topic, to_record(result, trace=trace)),
                (self.dlq_topic, to_record(letter, trace=trace)),
            ],
        )
