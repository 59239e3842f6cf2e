"""A test agent whose behaviour each task chooses: succeed, sleep, fail, crash or hang.

Loaded by path like any agent file (expediter.authoring.loading). ``CALLS`` counts handler calls
per task id, for tests that run the worker in-process.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from typing import Literal

from pydantic import BaseModel, Field

from expediter import Agent, AgentResources, PermanentError, RetriableError, TaskContext

CALLS: Counter[uuid.UUID] = Counter()


class Boom(BaseException):  # not an Exception: it escapes the handler error handling
    """Stands for a bug in the runtime itself: nothing may swallow it."""


class ProbeInput(BaseModel):
    n: int
    sleep: float = Field(default=0.0, ge=0)
    mode: Literal["ok", "retriable", "permanent", "boom", "block"] = "ok"
    fail_attempts: int = Field(default=0, ge=0)
    """With mode=retriable: fail while the worker's try (``ctx.tries``) is at most this."""


class ProbeOutput(BaseModel):
    n: int
    attempt: int
    pid: int


async def probe(task: ProbeInput, ctx: TaskContext) -> ProbeOutput:
    CALLS[ctx.task_id] += 1
    if task.sleep:
        await asyncio.sleep(task.sleep)
    if task.mode == "retriable" and ctx.tries <= task.fail_attempts:
        raise RetriableError(f"flaky, try {ctx.tries}", code="flaky")
    if task.mode == "permanent":
        raise PermanentError("this input can never work", code="bad-field")
    if task.mode == "boom":
        raise Boom("runtime bug")
    if task.mode == "block":
        time.sleep(3600)  # noqa: ASYNC251 -- blocks the loop on purpose: only the deadline helps
    return ProbeOutput(n=task.n, attempt=ctx.attempt, pid=os.getpid())


agent = Agent(
    name="probe",
    capability="probe",
    version="1.0.0",
    input_model=ProbeInput,
    output_model=ProbeOutput,
    handler=probe,
    resources=AgentResources(concurrency=4, max_task_seconds=30),
)
