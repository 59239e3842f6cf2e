"""A step the worker retries in place completes in the orchestrator: it is not a late result.

The real pieces on both sides, no broker: the orchestrator's state machine dispatches the task,
the worker's TaskRunner runs it (the handler fails retriably once, then succeeds), and the
result it really publishes goes back into the state machine.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel

from expediter import Agent, RetriableError, Step, TaskContext, Workflow, WorkflowState
from expediter.events import Producer, ResultEvent, TaskEvent, decode, to_record
from expediter.messaging import TopicNames
from expediter.orchestrator.stepping import apply_result, start
from expediter.reasoning import RuleEngine
from expediter.settings import WorkerSettings
from expediter.worker.processing import TaskRunner, ToolCallerFactory


class Given(BaseModel):
    n: int


class Answer(BaseModel):
    n: int
    tries: int


async def flaky_once(task: Given, ctx: TaskContext) -> Answer:
    if ctx.tries == 1:
        raise RetriableError("a flaky dependency", code="flaky")
    return Answer(n=task.n, tries=ctx.tries)


AGENT = Agent(
    name="flaky", capability="flaky", version="1.0.0", input_model=Given,
    output_model=Answer, handler=flaky_once,
)  # fmt: skip


def given(state: WorkflowState) -> dict[str, Any]:
    return {"n": 7}


WORKFLOW = Workflow(
    name="retried",
    stages=[Step("a", "flaky", given, deadline_seconds=60)],
    report=lambda state: {"a": state.steps["a"].output},
)


def as_consumed(task: TaskEvent[Any]) -> ConsumerRecord[bytes, bytes]:
    record = to_record(task)
    return ConsumerRecord(
        topic="tasks.flaky", partition=0, offset=0, timestamp=0, timestamp_type=0,
        key=record.key, value=record.value, checksum=None, serialized_key_size=0,
        serialized_value_size=len(record.value), headers=record.headers,
    )  # fmt: skip


async def test_a_result_retried_in_place_completes_its_step_and_the_workflow() -> None:
    now = datetime.now(UTC)  # the worker checks the task's deadline against the clock
    state, effects = start(WORKFLOW, "wf-retried", {}, now)
    (dispatched,) = effects.tasks
    runner = TaskRunner(
        AGENT, RuleEngine(), WorkerSettings(retry_backoff_seconds=0), TopicNames(""),
        Producer(name="flaky", version="1.0.0"), ToolCallerFactory(),
        logging.getLogger("test"),
    )  # fmt: skip
    outcome = await runner.run(as_consumed(dispatched))
    assert outcome.status == "succeeded"
    assert outcome.retries == 1
    (published,) = [record for topic, record in outcome.publish if topic == "results"]
    result = decode(published.value, ResultEvent)
    assert (result.attempt, result.tries) == (dispatched.attempt, 2)

    applied = apply_result(WORKFLOW, state, result, now)
    assert "step-late" not in [event.status for event in applied.events]
    assert state.steps["a"].status == "succeeded"
    assert state.status == "completed"
    assert applied.tasks == [], "the step was dispatched again"
