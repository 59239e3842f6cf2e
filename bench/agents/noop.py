"""The no-op agent the worker bench runs: it returns its input's size, nothing else."""

from __future__ import annotations

from pydantic import BaseModel

from expediter import Agent, AgentResources, TaskContext


class NoopInput(BaseModel):
    field_id: str
    depth_cm: int
    crop: str


class NoopOutput(BaseModel):
    ok: bool


async def noop(task: NoopInput, ctx: TaskContext) -> NoopOutput:
    return NoopOutput(ok=True)


agent = Agent(
    name="noop", capability="noop", version="1.0.0", input_model=NoopInput,
    output_model=NoopOutput, handler=noop, resources=AgentResources(concurrency=8),
)  # fmt: skip
