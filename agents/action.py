"""Action: executes a list of tool calls through the task's ToolBox.

Only the tools listed in ``tools=`` may run (the allowlist); their arguments are validated by
each tool's pydantic model; and every call is recorded in the tool ledger by (task id, step,
n), so a redelivered task gets the recorded results and its side effects happen once.

The side effect here is real and observable: each tool appends one JSON line to an outbox file
(``EXPEDITER_ACTION_OUTBOX``, default ``.expediter/outbox.jsonl``), standing in for a work-order
system, an irrigation controller or a pager.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from expediter import Agent, AgentResources, TaskContext, tool

OUTBOX_ENV = "EXPEDITER_ACTION_OUTBOX"
DEFAULT_OUTBOX = Path(".expediter/outbox.jsonl")

FieldId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Priority = Literal["low", "medium", "high", "urgent"]


def outbox_path() -> Path:
    # Read at each call, not at import: tests and operators redirect it per run.
    return Path(os.environ.get(OUTBOX_ENV) or DEFAULT_OUTBOX)


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(line + "\n")


async def send_to_outbox(kind: str, payload: dict[str, Any]) -> str:
    """The side effect: one JSON line in the outbox; returns the new item's id."""
    item_id = f"{kind[:2]}-{uuid.uuid4().hex[:12]}"
    line = json.dumps(
        {"id": item_id, "kind": kind, "at": datetime.now(UTC).isoformat(), **payload},
        sort_keys=True,
    )
    await asyncio.to_thread(_append, outbox_path(), line)
    return item_id


# -- tools ------------------------------------------------------------------------------------


class WorkOrderArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field_id: FieldId
    task: Annotated[str, Field(min_length=1, max_length=200)]
    priority: Priority = "medium"


class WorkOrder(BaseModel):
    work_order_id: str
    status: Literal["open"] = "open"


@tool(name="create_work_order", description="Open a work order for a field crew.")
async def create_work_order(args: WorkOrderArgs) -> WorkOrder:
    return WorkOrder(work_order_id=await send_to_outbox("work-order", args.model_dump()))


class IrrigationArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field_id: FieldId
    minutes: Annotated[int, Field(ge=1, le=600)]
    start_at: AwareDatetime | None = None
    """None starts at once."""


class Irrigation(BaseModel):
    irrigation_id: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime


@tool(name="schedule_irrigation", description="Schedule an irrigation run on a field.")
async def schedule_irrigation(args: IrrigationArgs) -> Irrigation:
    starts = args.start_at or datetime.now(UTC)
    ends = starts + timedelta(minutes=args.minutes)
    item = await send_to_outbox(
        "irrigation",
        {"field_id": args.field_id, "minutes": args.minutes, "starts_at": starts.isoformat()},
    )
    return Irrigation(irrigation_id=item, starts_at=starts, ends_at=ends)


class NotifyArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field_id: FieldId
    message: Annotated[str, Field(min_length=1, max_length=500)]
    severity: Literal["info", "warning", "critical"] = "info"


class Notification(BaseModel):
    notification_id: str
    channel: Literal["outbox"] = "outbox"


@tool(name="notify_agronomist", description="Send the field's agronomist a message.")
async def notify_agronomist(args: NotifyArgs) -> Notification:
    return Notification(notification_id=await send_to_outbox("notification", args.model_dump()))


# -- the agent --------------------------------------------------------------------------------


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: Annotated[str, Field(min_length=1, max_length=64)]
    arguments: dict[str, Any] = Field(default_factory=dict)


class ActionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    calls: Annotated[list[ToolCall], Field(max_length=20)]
    """Run in order; a refused call fails the task (and the calls before it stay recorded)."""


class CallResult(BaseModel):
    tool: str
    result: dict[str, Any]


class ActionOutput(BaseModel):
    results: list[CallResult]


async def act(task: ActionInput, ctx: TaskContext) -> ActionOutput:
    results = []
    # In order, one at a time: the ledger position of each call must be the same on a replay.
    for call in task.calls:
        result = await ctx.tools.call(call.tool, call.arguments)
        results.append(CallResult(tool=call.tool, result=result))
    return ActionOutput(results=results)


agent = Agent(
    name="action",
    capability="action",
    version="1.0.0",
    input_model=ActionInput,
    output_model=ActionOutput,
    handler=act,
    resources=AgentResources(accelerator="cpu", concurrency=4, max_task_seconds=30),
    description="Executes allowlisted tools; each call recorded so a redelivery never repeats it.",
    tools=[create_work_order, schedule_irrigation, notify_agronomist],
)
