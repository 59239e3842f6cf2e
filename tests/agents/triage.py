"""A test agent that reasons once per task with a tiny output model, for the routing tests: its
rulebook answers deterministically (the ``rules`` engine), and a real model answers the same
question through a routed remote engine.

The output model is bounded everywhere (an enum, a small integer range), so that Gemma 3 270M
answers in about 20 tokens: ``EXPEDITER_TEST_MAX_TOKENS`` (40) is what each call may spend.
"""

from __future__ import annotations

import os
from enum import StrEnum

from pydantic import BaseModel, Field

from expediter import Agent, AgentResources, TaskContext


class Urgency(StrEnum):
    LOW = "low"
    HIGH = "high"


class TriageInput(BaseModel):
    field_id: str
    note: str


class Assessment(BaseModel):
    urgency: Urgency
    hours: int = Field(ge=0, le=3)


class TriageOutput(BaseModel):
    field_id: str
    urgency: Urgency
    hours: int


async def triage(task: TriageInput, ctx: TaskContext) -> TriageOutput:
    assessment = await ctx.reason(
        f"Field {task.field_id}: {task.note}. How urgent is irrigation, and for how many hours?",
        Assessment,
        system="You are an agronomist. Answer in JSON.",
        max_tokens=int(os.environ.get("EXPEDITER_TEST_MAX_TOKENS", "40")),
    )
    return TriageOutput(field_id=task.field_id, urgency=assessment.urgency, hours=assessment.hours)


def rules(prompt: str, output_model: type[BaseModel]) -> BaseModel:
    dry = "dry" in prompt
    return Assessment(urgency=Urgency.HIGH if dry else Urgency.LOW, hours=2 if dry else 0)


agent = Agent(
    name="triage",
    capability="triage",
    version="1.0.0",
    input_model=TriageInput,
    output_model=TriageOutput,
    handler=triage,
    rules=rules,
    resources=AgentResources(concurrency=1, max_task_seconds=120),
)
