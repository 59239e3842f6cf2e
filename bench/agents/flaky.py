"""The agent the retry bench runs: a task marked ``fail`` fails retriably until its third try;
every other task returns at once."""

from __future__ import annotations

from pydantic import BaseModel

from expediter import Agent, AgentResources, RetriableError, TaskContext


class FlakyInput(BaseModel):
    n: int
    fail: bool = False


class FlakyOutput(BaseModel):
    n: int


async def flaky(task: FlakyInput, ctx: TaskContext) -> FlakyOutput:
    if task.fail and ctx.tries < 3:
        raise RetriableError(f"try {ctx.tries} of a flaky dependency", code="flaky")
    return FlakyOutput(n=task.n)


agent = Agent(
    name="flaky", capability="flaky", version="1.0.0", input_model=FlakyInput,
    output_model=FlakyOutput, handler=flaky, resources=AgentResources(concurrency=8),
)  # fmt: skip
