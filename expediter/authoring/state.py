"""The state of one workflow: the value of the orchestrator's Faust table, keyed by workflow id.

Everything the orchestrator knows about a workflow lives here (and so in the table's compacted
changelog), never in memory: any replica can take over any partition after a crash. That
includes an approval's wait (:class:`~expediter.authoring.approvals.ApprovalState`): its
deadline and who may decide survive a restart days later.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from expediter.authoring.approvals import ApprovalState
from expediter.events import TaskError

__all__ = ["StepState", "WorkflowState"]

StepStatus = Literal[
    "pending", "running", "succeeded", "failed", "skipped", "waiting", "approved", "rejected"
]
"""An approval step is ``waiting`` for a decision, then ``approved`` or ``rejected`` (both
count as done for its stage's join)."""


class StepState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    capability: str
    status: StepStatus = "pending"
    attempt: int = 0
    task_id: uuid.UUID | None = None
    started_at: datetime | None = None
    deadline: datetime | None = None
    finished_at: datetime | None = None
    output: dict[str, Any] | None = None
    error: TaskError | None = None
    results: list[uuid.UUID] = Field(default_factory=list)
    """Event ids of the results seen for this step, so that a redelivered one is ignored."""
    late: int = 0
    """Results that came after the deadline, for an old attempt, or after the step was done."""
    duplicates: int = 0
    """Results for an attempt already applied (a redelivery): ignored."""
    approval: ApprovalState | None = None
    """An approval step's request, wait and decision (``attempt`` is its round)."""


class WorkflowState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    workflow_id: str
    workflow: str
    input: dict[str, Any]
    status: Literal["running", "completed", "failed"] = "running"
    stage: int = 0
    created_at: datetime
    finished_at: datetime | None = None
    steps: dict[str, StepState] = Field(default_factory=dict)
    report: dict[str, Any] | None = None
    reason: str | None = None

    def output(self, step_id: str) -> dict[str, Any]:
        """The output of a succeeded step, or {} (so conditions read naturally)."""
        step = self.steps.get(step_id)
        return step.output or {} if step is not None else {}

    def approved(self, step_id: str) -> bool:
        """True once the approval ``step_id`` was approved (by a person or its deadline)."""
        return self.output(step_id).get("approved") is True
