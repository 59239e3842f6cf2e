"""A test agent whose output depends on an environment variable, standing in for a prompt or
model change between an original run and a shadow re-run (``expediter diff`` must show it).

``EXPEDITER_TEST_TUNING`` is read at each call, not at import: a test changes it between runs.
"""

from __future__ import annotations

import os

from pydantic import BaseModel

from expediter import Agent, AgentResources, TaskContext

TUNING_ENV = "EXPEDITER_TEST_TUNING"


class TunableInput(BaseModel):
    n: int


class TunableOutput(BaseModel):
    n: int
    label: str
    score: float


async def tune(task: TunableInput, ctx: TaskContext) -> TunableOutput:
    tuning = os.environ.get(TUNING_ENV, "v1")
    # v2 changes the label of every task and the score of odd ones only.
    score = task.n * (1.5 if tuning == "v2" and task.n % 2 else 1.0)
    return TunableOutput(n=task.n, label=f"{tuning}-{task.n}", score=score)


agent = Agent(
    name="tunable",
    capability="tunable",
    version="1.0.0",
    input_model=TunableInput,
    output_model=TunableOutput,
    handler=tune,
    resources=AgentResources(concurrency=4, max_task_seconds=30),
)
