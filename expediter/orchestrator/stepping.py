"""The orchestrator's state machine: commands and results in, table updates and events out.

Pure functions over a :class:`WorkflowState`, with no Kafka in sight, so that every join rule
is unit-tested. The Faust app (``running.py``) calls them inside the stream that owns the
workflow's partition and publishes the :class:`Effects` in the same transaction.

Rules:
- a result is applied once per (step, attempt): a second copy is a duplicate, ignored;
- a result after the step's deadline, for an older attempt, or for a step no longer running
  (its group already joined, or it was expired) is late: counted, announced, otherwise ignored;
- a retriable failure or a missed deadline publishes attempt + 1 until the step's max_attempts,
  then the step fails; a failed stage fails the workflow;
- input the workflow's input model refuses fails the workflow at its start; an exception in the
  workflow's own code (a step's input builder, its ``when=`` condition, an approval's ``ask``,
  the report) fails that step and the workflow, with the error in the state and in a ``failed``
  completion. It never escapes to the caller: one bad workflow must not stop the orchestrator;
- an approval step waits for a person's decision (:func:`apply_decision`) or its deadline
  (:func:`expire`); what becomes of each decision is :mod:`expediter.orchestrator.approving`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from expediter.authoring.approvals import APPROVAL_CAPABILITY, Approval
from expediter.authoring.state import StepState, WorkflowState
from expediter.authoring.workflows import InvalidInputError, Parallel, Step, Workflow
from expediter.events import (
    ApprovalDecision,
    ApprovalRequest,
    Producer,
    ResultEvent,
    TaskError,
    TaskEvent,
    WorkflowEvent,
    WorkflowStatus,
)
from expediter.orchestrator import approving

__all__ = ["Effects", "apply_decision", "apply_result", "expire", "overdue", "start"]

PRODUCER = Producer(name="orchestrator", version="1")


@dataclass
class Effects:
    tasks: list[TaskEvent] = field(default_factory=list)
    events: list[WorkflowEvent] = field(default_factory=list)
    completion: WorkflowEvent | None = None
    requests: list[ApprovalRequest] = field(default_factory=list)
    """Approval requests made or escalated: published on ``approvals.requests``."""
    resolved: list[str] = field(default_factory=list)
    """Request ids decided or withdrawn: a tombstone each on ``approvals.requests``."""

    def note(
        self, state: WorkflowState, status: WorkflowStatus, step: str | None = None, **detail: Any
    ) -> None:
        self.events.append(
            WorkflowEvent(
                producer=PRODUCER,
                workflow_id=state.workflow_id,
                workflow=state.workflow,
                status=status,
                step_id=step,
                detail=detail,
            )
        )


def start(
    workflow: Workflow, workflow_id: str, given: dict[str, Any], now: datetime
) -> tuple[WorkflowState, Effects]:
    """A new workflow: its first stage's tasks, or a failed workflow if ``given`` is invalid."""
    try:
        checked, invalid = workflow.check_input(given), None
    except InvalidInputError as exc:
        checked, invalid = given, exc
    state = WorkflowState(
        workflow_id=workflow_id,
        workflow=workflow.name,
        input=checked,
        created_at=now,
        steps={s.id: StepState(capability=s.capability) for s in workflow.steps()},
    )
    effects = Effects()
    effects.note(state, "started", input=checked)
    if invalid is not None:
        _finish(state, "failed", now, effects, reason=str(invalid))
        return state, effects
    _guarded(lambda: _advance(workflow, state, now, effects), state, now, effects)
    return state, effects


def apply_result(
    workflow: Workflow, state: WorkflowState, result: ResultEvent, now: datetime
) -> Effects:
    effects = Effects()
    step = state.steps.get(result.step_id)
    spec = workflow.step(result.step_id)
    if step is None or spec is None:
        effects.note(state, "step-late", result.step_id, reason="unknown step")
        return effects
    if result.event_id in step.results:
        step.duplicates += 1  # this very result again (a redelivery): applied once already
        return effects
    step.results.append(result.event_id)
    late = (
        result.attempt != step.attempt
        or step.status != "running"
        or state.status != "running"
        or _stage_of(workflow, spec) != state.stage
        or (step.deadline is not None and now > step.deadline)
    )
    if late:
        step.late += 1
        effects.note(state, "step-late", result.step_id, attempt=result.attempt)
        return effects
    if result.status == "succeeded":
        step.status = "succeeded"
        step.output = result.output if isinstance(result.output, dict) else {}
        step.finished_at = now
        effects.note(state, "step-completed", result.step_id, attempt=result.attempt)
    elif result.error is not None and result.error.retriable and step.attempt < spec.max_attempts:
        retry = step.attempt + 1
        _guarded(lambda: _dispatch(state, spec, retry, now, effects), state, now, effects)
    else:
        step.status = "failed"
        step.error = result.error
        step.finished_at = now
        effects.note(state, "step-completed", result.step_id, attempt=result.attempt,
                     failed=True)  # fmt: skip
    _guarded(lambda: _advance(workflow, state, now, effects), state, now, effects)
    return effects


def expire(
    workflow: Workflow, state: WorkflowState, step_id: str, attempt: int, now: datetime
) -> Effects:
    """The timer saw ``step_id``'s ``attempt`` overdue: retry it or fail it (an approval: its
    deadline policy for that round)."""
    effects = Effects()
    step = state.steps.get(step_id)
    approval = workflow.approval(step_id)
    if approval is not None:
        if (
            step is not None and step.status == "waiting" and step.attempt == attempt
            and step.deadline is not None and now > step.deadline
        ):  # fmt: skip
            _guarded(lambda: approving.expire(approval, state, step, now, effects, PRODUCER),
                     state, now, effects)  # fmt: skip
            _guarded(lambda: _advance(workflow, state, now, effects), state, now, effects)
        return effects
    spec = workflow.step(step_id)
    if (
        step is None or spec is None or step.status != "running" or step.attempt != attempt
        or step.deadline is None or now <= step.deadline
    ):  # fmt: skip
        return effects  # already resolved, retried, or not due: a stale timer command
    if step.attempt < spec.max_attempts:
        retry = step.attempt + 1
        _guarded(lambda: _dispatch(state, spec, retry, now, effects), state, now, effects)
    else:
        step.status = "failed"
        step.error = TaskError(
            retriable=True, code="deadline", message=f"no result within {spec.deadline_seconds:g}s"
        )
        step.finished_at = now
        effects.note(state, "step-completed", step_id, attempt=attempt, failed=True,
                     reason="deadline")  # fmt: skip
    _guarded(lambda: _advance(workflow, state, now, effects), state, now, effects)
    return effects


def overdue(state: WorkflowState, now: datetime) -> list[tuple[str, int]]:
    """(step id, attempt) of running steps and waiting approvals whose deadline has passed."""
    if state.status != "running":
        return []
    return [
        (step_id, step.attempt)
        for step_id, step in state.steps.items()
        if step.status in ("running", "waiting") and step.deadline is not None
        and now > step.deadline
    ]  # fmt: skip


def apply_decision(
    workflow: Workflow, state: WorkflowState, decision: ApprovalDecision, now: datetime
) -> Effects:
    """A person's decision: applied once, parked until its request, or recorded and ignored."""
    effects = Effects()
    if approving.take(state, workflow.approval(decision.step_id), decision, now, effects):
        _guarded(lambda: _advance(workflow, state, now, effects), state, now, effects)
    return effects


# -- internals ------------------------------------------------------------------------------


class _UserCodeError(Exception):
    """The workflow's own code raised: ``code`` says which part (input-builder, condition)."""

    def __init__(self, step_id: str, code: str, error: Exception) -> None:
        self.step_id = step_id
        self.code = code
        self.reason = f"step {step_id}: its {code} raised {error!r}"
        super().__init__(self.reason)


def _guarded(
    work: Callable[[], None], state: WorkflowState, now: datetime, effects: Effects
) -> None:
    """Runs ``work``; if the workflow's code raised in it, fails that step and the workflow."""
    try:
        work()
    except _UserCodeError as exc:
        step = state.steps.setdefault(exc.step_id, StepState(capability=APPROVAL_CAPABILITY))
        step.status = "failed"
        step.error = TaskError(retriable=False, code=exc.code, message=exc.reason[:10_000])
        step.finished_at = now
        effects.note(state, "step-completed", exc.step_id, failed=True, reason=exc.reason)
        _finish(state, "failed", now, effects, reason=exc.reason)


def _build_input(spec: Step | Approval, state: WorkflowState) -> dict[str, Any]:
    try:
        built = spec.ask(state) if isinstance(spec, Approval) else spec.build_input(state)
        return dict(built)
    except Exception as exc:  # user code: fails this workflow (see _guarded), never the caller
        code = "ask" if isinstance(spec, Approval) else "input-builder"
        raise _UserCodeError(spec.id, code, exc) from exc


def _stage_of(workflow: Workflow, spec: Step | Approval) -> int:
    for index, stage in enumerate(workflow.stages):
        members = stage.steps if isinstance(stage, Parallel) else [stage]
        if spec in members:
            return index
    raise LookupError(spec.id)


def _dispatch(
    state: WorkflowState,
    spec: Step,
    attempt: int,
    now: datetime,
    effects: Effects,
    given: dict[str, Any] | None = None,
) -> None:
    # The input first: if the builder raises, the step is left as it was.
    given = _build_input(spec, state) if given is None else given
    step = state.steps[spec.id]
    deadline = now + timedelta(seconds=spec.deadline_seconds)
    task = TaskEvent(
        producer=PRODUCER, workflow_id=state.workflow_id, step_id=spec.id,
        capability=spec.capability, attempt=attempt, deadline=deadline, input=given,
    )  # fmt: skip
    step.status = "running"
    step.attempt = attempt
    step.task_id = task.event_id
    step.started_at = now
    step.deadline = deadline
    effects.tasks.append(task)
    # The capability too: `status` reads it from the history once the table has let go.
    effects.note(state, "step-started", spec.id, attempt=attempt, task_id=str(task.event_id),
                 capability=spec.capability)  # fmt: skip


def _advance(workflow: Workflow, state: WorkflowState, now: datetime, effects: Effects) -> None:
    while state.status == "running":
        if state.stage >= len(workflow.stages):
            try:
                state.report = dict(workflow.report(state))
            except Exception as exc:  # user code: a broken report fails the workflow, not us
                _finish(state, "failed", now, effects, reason=f"its report raised {exc!r}")
                return
            _finish(state, "completed", now, effects)
            return
        stage = workflow.stages[state.stage]
        members = list(stage.steps) if isinstance(stage, Parallel) else [stage]
        # Every member's condition and input before any task: if the workflow's code raises for
        # one, none of the group is dispatched.
        plans = [
            (spec, _build_input(spec, state) if _holds(spec, state) else None)
            for spec in members
            if _status(state, spec) == "pending"
        ]
        for spec, given in plans:
            if given is None:
                step = state.steps.setdefault(spec.id, StepState(capability=APPROVAL_CAPABILITY))
                step.status = "skipped"
                effects.note(state, "step-completed", spec.id, skipped=True)
                approving.drop_parked(state, step, "unknown-request", effects)
            elif isinstance(spec, Approval):
                approving.ask(state, spec, given, 1, now, effects, PRODUCER)
            else:
                _dispatch(state, spec, 1, now, effects, given)
        outcome = _joined(stage, members, state)
        if outcome is None:
            return
        if outcome is False:
            failed = [s.id for s in members if state.steps[s.id].status == "failed"]
            _finish(state, "failed", now, effects, reason=f"steps failed: {', '.join(failed)}")
            return
        state.stage += 1


def _holds(spec: Step | Approval, state: WorkflowState) -> bool:
    if spec.when is None:
        return True
    try:
        return bool(spec.when(state))
    except Exception as exc:  # user code: fails this workflow (see _guarded), never the caller
        raise _UserCodeError(spec.id, "condition", exc) from exc


def _joined(
    stage: Step | Approval | Parallel, members: list[Step | Approval], state: WorkflowState
) -> bool | None:
    """True: the stage is done; False: it can no longer succeed; None: keep waiting. A decided
    approval is done either way (a rejection is an answer; ``when=`` branches on it)."""
    statuses = [_status(state, s) for s in members]
    considered = [st for st in statuses if st != "skipped"]
    needed = stage.join.needed(len(considered)) if isinstance(stage, Parallel) else len(considered)
    succeeded = sum(considered.count(st) for st in ("succeeded", "approved", "rejected"))
    open_ = sum(considered.count(st) for st in ("running", "pending", "waiting"))
    if succeeded >= needed:
        return True
    if succeeded + open_ < needed:
        return False
    return None


def _status(state: WorkflowState, spec: Step | Approval) -> str:
    step = state.steps.get(spec.id)  # an approval has no state until it is asked (or parked)
    return step.status if step is not None else "pending"


def _finish(
    state: WorkflowState, status: str, now: datetime, effects: Effects, *, reason: str | None = None
) -> None:
    approving.withdraw_open(state, now, effects)
    state.status = "completed" if status == "completed" else "failed"
    state.finished_at = now
    state.reason = reason
    detail: dict[str, Any] = {"report": state.report} if state.report is not None else {}
    if reason:
        detail["reason"] = reason
    detail["seconds"] = round((now - state.created_at).total_seconds(), 3)
    completion = WorkflowEvent(
        producer=PRODUCER, workflow_id=state.workflow_id, workflow=state.workflow,
        status="completed" if status == "completed" else "failed", detail=detail,
    )  # fmt: skip
    effects.completion = completion
    effects.events.append(completion)
