"""Reasoning: turns a goal and context features into a Plan, as an LLM's structured output.

The handler asks ``ctx.reason(prompt, Plan)``; which engine answers is configuration. The Plan
schema is deliberately small and closed (enums, short strings, few items, string-valued
arguments) so that a tiny model decoding under a JSON-schema grammar still yields a valid plan.
``rules`` answers the same prompt deterministically, for tests and demos without a model. The
plan's tool steps are meant for the action agent, whose tool names the ``Tool`` enum lists.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from expediter import Agent, AgentResources, PermanentError, TaskContext

Priority = Literal["low", "medium", "high", "urgent"]
ToolName = Literal["create_work_order", "schedule_irrigation", "notify_agronomist", "none"]
"""The action agent's tools, plus ``none`` for a step no tool carries out."""

ShortText = Annotated[str, Field(min_length=1, max_length=160)]
ArgumentValue = Annotated[str, Field(max_length=120)]


class PlanStep(BaseModel):
    # The serialization schema (and so the llama engine's grammar, built from it) lists every
    # field as required, in this order: with ``tool`` optional, the grammar let a small model
    # close the step after its rationale, and nearly every plan came back with tool "none".
    # Validation, and the exported payload schema (validation mode), still accept a step
    # without a tool (the rules write them).
    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)

    action: Annotated[str, Field(min_length=1, max_length=60)]
    """A short imperative: "treat north-east corner"."""
    tool: ToolName = "none"
    arguments: Annotated[dict[str, ArgumentValue], Field(max_length=6)] = Field(
        default_factory=dict
    )
    """String values: the tool's own model coerces them ("30" -> 30 minutes)."""
    rationale: ShortText


MAX_STEPS = 3
"""Steps a plan this agent writes holds at most (the rules write up to 3: treat, irrigate,
notify); a Plan read back may hold 5, as its exported schema has always said."""


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    summary: ShortText
    priority: Priority
    steps: Annotated[list[PlanStep], Field(min_length=1, max_length=5)]

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # What this agent writes (the serialization schema, from which the llama engine builds
        # its grammar) has at most MAX_STEPS steps: under greedy decoding Gemma 270M repeated
        # its last step until the limit, 5 steps and ~300 tokens a plan. The validation schema,
        # the exported payload schema, keeps 5.
        schema = handler(core_schema)
        if handler.mode == "serialization":
            handler.resolve_ref_schema(schema)["properties"]["steps"]["maxItems"] = MAX_STEPS
        return schema


class ReasoningInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    goal: Annotated[str, Field(min_length=1, max_length=500)]
    field_id: Annotated[str, Field(max_length=64, pattern=r"^[A-Za-z0-9_-]*$")] = ""
    context: Annotated[dict[str, Any], Field(max_length=64)] = Field(default_factory=dict)
    """Features from earlier steps (perception, soil, pests), attached by the orchestrator."""


def prompt_for(task: ReasoningInput) -> str:
    context = json.dumps(task.context, sort_keys=True, default=str)[:4000]
    return f"Goal: {task.goal}\nField: {task.field_id or 'unknown'}\nContext: {context}\n"


EXAMPLE_INPUT = ReasoningInput(
    goal="Protect the crop this week",
    field_id="field-x",
    context={"pests": 12, "moisture_pct": 11},
)
EXAMPLE_PLAN = Plan(
    summary="Treat the pests and irrigate the dry field",
    priority="high",
    steps=[
        PlanStep(
            action="treat infested zone",
            tool="create_work_order",
            arguments={"field_id": "field-x", "task": "treat infested zone", "priority": "high"},
            rationale="12 pests were counted",
        ),
        PlanStep(
            action="irrigate field",
            tool="schedule_irrigation",
            arguments={"field_id": "field-x", "minutes": "45"},
            rationale="soil moisture is 11 percent",
        ),
        PlanStep(
            action="inform agronomist",
            tool="notify_agronomist",
            arguments={"field_id": "field-x", "message": "pests treated, irrigation set"},
            rationale="a person should know the plan",
        ),
    ],
)
"""The worked example the prompt shows: built from the models, so it always validates."""

# The output's shape in a compact form, and one worked example. A small model decoding under
# the JSON-schema grammar fills string fields with JSON punctuation (`"summary": ":{"`) when it
# has never seen what a field should say; the raw JSON schema in the prompt made it copy schema
# keywords instead. The grammar still enforces the keys, enums and bounds.
SYSTEM = f"""You plan field operations for a farm. Answer with one JSON object of this shape:
{{"summary": "<one short sentence>", "priority": "low" | "medium" | "high" | "urgent",
 "steps": [1 to {MAX_STEPS} steps, each {{"action": "<short imperative>", "tool": "<tool>",
 "arguments": {{"<name>": "<string>"}}, "rationale": "<why, in a few words>"}}]}}
Each step's tool is one of: create_work_order (arguments field_id, task, priority) for pests
or other field work; schedule_irrigation (field_id, minutes) when moisture_pct is below 20;
notify_agronomist (field_id, message), which every plan ends with.
Use each tool at most once. Texts are plain words, never JSON.

Example request:
{prompt_for(EXAMPLE_INPUT)}
Example answer:
{json.dumps(EXAMPLE_PLAN.model_dump())}"""

MAX_TOKENS = 384
"""Room for a full plan (MAX_STEPS steps of bounded texts; a 3-step plan like the example is
~180 tokens): a model that rambles is cut here, not at the agent's max_task_seconds."""

_FIELD = re.compile(r"^Field: (\S+)$", re.MULTILINE)
_NUMBER = r"\"?{name}\"?\s*[:=]\s*(-?\d+(?:\.\d+)?)"


def _number(prompt: str, name: str) -> float | None:
    match = re.search(_NUMBER.format(name=re.escape(name)), prompt)
    return float(match.group(1)) if match else None


def plan_rules(prompt: str, output_model: type[BaseModel]) -> BaseModel:
    """The deterministic planner: keyword and threshold rules over the prompt's text."""
    if output_model is not Plan:
        raise PermanentError(
            f"the reasoning agent's rules answer Plan only, not {output_model.__name__}: ask "
            "ctx.reason(prompt, Plan)",
            code="no-rule",
        )
    lowered = prompt.lower()
    match = _FIELD.search(prompt)
    field = match.group(1) if match else "unknown"
    pests = _number(lowered, "pests")
    moisture = _number(lowered, "moisture_pct")
    steps: list[PlanStep] = []
    priority: Priority = "low"
    if (pests is not None and pests > 0) or (pests is None and "pest" in lowered):
        priority = "high" if pests is not None and pests >= 10 else "medium"
        steps.append(
            PlanStep(
                action="treat infested zone",
                tool="create_work_order",
                arguments={"field_id": field, "task": "treat infested zone", "priority": priority},
                rationale="pests were reported on the field",
            )
        )
    if (moisture is not None and moisture < 20) or "dry" in lowered or "irrigat" in lowered:
        priority = "medium" if priority == "low" else priority
        steps.append(
            PlanStep(
                action="irrigate field",
                tool="schedule_irrigation",
                arguments={"field_id": field, "minutes": "45"},
                rationale="soil moisture is low" if moisture is not None else "dry conditions",
            )
        )
    if steps:
        steps.append(
            PlanStep(
                action="inform agronomist",
                tool="notify_agronomist",
                arguments={
                    "field_id": field,
                    "message": "; ".join(step.action for step in steps),
                    "severity": "warning" if priority in ("high", "urgent") else "info",
                },
                rationale="a person should know what was scheduled",
            )
        )
    else:
        steps.append(
            PlanStep(action="keep monitoring", rationale="nothing in the context needs action")
        )
    return Plan(summary=f"{len(steps)} step(s) for field {field}", priority=priority, steps=steps)


async def plan(task: ReasoningInput, ctx: TaskContext) -> Plan:
    return await ctx.reason(prompt_for(task), Plan, system=SYSTEM, max_tokens=MAX_TOKENS)


agent = Agent(
    name="reasoning",
    capability="reasoning",
    version="1.0.0",
    input_model=ReasoningInput,
    output_model=Plan,
    handler=plan,
    # concurrency=1: one llama.cpp model instance generates one sequence at a time
    # (LlamaEngine.parallelism), so a second task would only queue for the model while its
    # lag counted as served; KEDA's lagThreshold (2 x concurrency) follows from it.
    resources=AgentResources(accelerator="gpu", concurrency=1, max_task_seconds=120),
    description="Plans field operations from a goal and context features (LLM, structured).",
    rules=plan_rules,
)
