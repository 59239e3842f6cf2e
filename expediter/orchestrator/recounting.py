"""A workflow's state told again from its history, for ``expediter status`` once the workflow
has left the orchestrator's table and compaction has dropped its last state from the changelog.

The orchestrator deletes a finished workflow from its table after ``finished_retention_seconds``
(:mod:`expediter.orchestrator.retiring`). Until the changelog is compacted, its last state is
still there, before the tombstone, and ``status`` shows that. After compaction only
``workflows.events`` has it: every started, step-started, step-completed, step-late, approval
and completion event. :func:`state_from_history` folds them into a :class:`WorkflowState` with
what they say: each step's status, attempt, times and late results; the workflow's input,
status, report and reason. Not in the events, and so left empty: step outputs and errors (a
failed step's error code is in its task's result on ``results``, which ``trace`` prints).

Pure: called by :func:`expediter.orchestrator.submitting.read_status`.
"""

from __future__ import annotations

from collections.abc import Iterable

from expediter.authoring.approvals import APPROVAL_CAPABILITY
from expediter.authoring.state import StepState, WorkflowState
from expediter.events import WorkflowEvent

__all__ = ["state_from_history"]


def state_from_history(events: Iterable[WorkflowEvent]) -> WorkflowState | None:
    """The state ``events`` (one workflow's, oldest first) describe; None without ``started``
    (its start has left the topic too)."""
    state: WorkflowState | None = None
    for event in events:
        if event.status == "started":
            state = WorkflowState(
                workflow_id=event.workflow_id, workflow=event.workflow,
                input=dict(event.detail.get("input") or {}), created_at=event.created_at,
            )  # fmt: skip
            continue
        if state is None:
            continue
        if event.step_id is None:
            if event.status in ("completed", "failed"):
                state.status = event.status
                state.finished_at = event.created_at
                report = event.detail.get("report")
                state.report = dict(report) if isinstance(report, dict) else None
                state.reason = event.detail.get("reason")
            continue
        _apply(state, event)
    return state


def _apply(state: WorkflowState, event: WorkflowEvent) -> None:
    step_id = str(event.step_id)
    detail = event.detail
    approval = event.status.startswith(("approval", "decision"))
    capability = APPROVAL_CAPABILITY if approval else str(detail.get("capability") or "")
    step = state.steps.setdefault(step_id, StepState(capability=capability))
    attempt = detail.get("attempt", detail.get("round"))
    if event.status in ("step-started", "approval-requested"):
        step.status = "running" if event.status == "step-started" else "waiting"
        step.attempt = int(attempt or step.attempt + 1)
        step.started_at = event.created_at
        step.finished_at = None
    elif event.status == "step-completed":
        if detail.get("skipped"):
            step.status = "skipped"
        else:
            step.status = "failed" if detail.get("failed") else "succeeded"
        step.finished_at = event.created_at
    elif event.status == "approval-decided":
        decision = detail.get("decision")
        if decision == "approved" or decision == "rejected":
            step.status = decision
        step.finished_at = event.created_at
    elif event.status == "step-late":
        step.late += 1
