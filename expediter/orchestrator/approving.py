"""An approval step's life in the workflow state: asked, escalated, decided, and what becomes
of each decision that arrives.

Pure functions over a :class:`~expediter.authoring.state.StepState`, with no Kafka in sight;
:mod:`expediter.orchestrator.stepping` calls them where an agent step would dispatch a task,
take a result or expire, and publishes what they return in the same transaction.

Rules:
- the request is made when the approval's stage starts (its ``ask`` built from the state); the
  step is ``waiting`` with a deadline, kept in the table: a restart days later honours it;
- a decision is applied at most once: a redelivered decision event (same event id) is only
  counted; any other decision once the request is resolved is recorded and ignored
  (``already-decided``); so is one from someone not among the approvers (``not-allowed``, the
  request stays open) and one for no such request (``unknown-request``);
- a decision that comes before its request (the workflow has not reached the approval yet) is
  parked in the state and applied when the request is made, if its decider is allowed then;
- at the deadline: ``reject`` or ``approve`` decides (``by`` None, reason ``deadline``);
  ``escalate`` makes round 2, asked of the escalation's approvers too, with its own deadline and
  ``after_escalation`` at its end.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from expediter.authoring.approvals import (
    APPROVAL_CAPABILITY,
    HISTORY,
    Approval,
    ApprovalState,
    Decision,
    IgnoredDecision,
    IgnoredReason,
    ParkedDecision,
)
from expediter.authoring.state import StepState, WorkflowState
from expediter.events import ApprovalDecision, ApprovalRequest, Producer

if TYPE_CHECKING:
    from expediter.orchestrator.stepping import Effects

__all__ = [
    "SEEN",
    "Verdict",
    "ask",
    "drop_parked",
    "expire",
    "judge",
    "request_id",
    "take",
    "withdraw_open",
]

SEEN = 200
"""Decision event ids remembered per step: enough for any redelivery, bounded for floods."""

Verdict = Literal["apply", "park", "duplicate"] | IgnoredReason


def request_id(workflow_id: str, step_id: str) -> str:
    """The request id people type: ``<workflow id>/<step id>`` (approval ids hold no '/')."""
    return f"{workflow_id}/{step_id}"


def ask(
    state: WorkflowState, spec: Approval, given: dict[str, Any], round_: int, now: datetime,
    effects: Effects, producer: Producer,
) -> None:  # fmt: skip
    """Put the step in ``waiting`` for ``round_``, publish the request, then apply what was
    parked: the first decision of an allowed decider decides."""
    step = state.steps.setdefault(spec.id, StepState(capability=APPROVAL_CAPABILITY))
    names, groups = spec.deciders(round_)
    previous = step.approval or ApprovalState(request_id=request_id(state.workflow_id, spec.id))
    approval = previous.model_copy(update={
        "title": spec.title or f"approve {spec.id}", "ask": given, "approvers": names,
        "groups": groups, "round": round_, "on_deadline": spec.policy(round_),
        "requested_at": previous.requested_at or now,
    })  # fmt: skip
    step.status, step.attempt, step.approval = "waiting", round_, approval
    step.started_at = step.started_at or now
    step.deadline = now + timedelta(seconds=spec.seconds(round_))
    request = ApprovalRequest(
        producer=producer, request_id=approval.request_id, workflow_id=state.workflow_id,
        workflow=state.workflow, step_id=spec.id, title=approval.title, ask=given,
        approvers=names, groups=groups, round=round_, requested_at=approval.requested_at or now,
        deadline=step.deadline, on_deadline=spec.policy(round_),
    )  # fmt: skip
    effects.requests.append(request)
    effects.note(state, "approval-requested", spec.id, request_id=request.request_id,
                 round=round_, deadline=step.deadline.isoformat(), approvers=names,
                 groups=groups, on_deadline=request.on_deadline)  # fmt: skip
    parked, approval.parked = approval.parked, []
    for early in parked:
        reason: IgnoredReason | None = (
            "already-decided" if step.status != "waiting"
            else None if early.by in approval.approvers else "not-allowed"
        )  # fmt: skip
        if reason is None:
            _settle(state, step, early.decision, now, effects, by=early.by, parked=True,
                    comment=early.comment, decision_id=str(early.decision_id))  # fmt: skip
        else:
            _ignore(state, step, early, reason, effects)


def take(
    state: WorkflowState, spec: Approval | None, decision: ApprovalDecision, now: datetime,
    effects: Effects,
) -> bool:  # fmt: skip
    """Handle a person's decision; True when it decided the request (the caller advances)."""
    verdict, step = judge(state, spec, decision)
    if verdict == "duplicate":
        assert step is not None
        step.duplicates += 1  # this very decision again (a redelivery): handled once already
        return False
    if verdict == "park":
        step = state.steps.setdefault(decision.step_id, StepState(capability=APPROVAL_CAPABILITY))
        _remember(step, decision)
        assert step.approval is not None
        step.approval.parked.append(_parked(decision))
        del step.approval.parked[:-HISTORY]
        effects.note(state, "decision-parked", decision.step_id, **_detail(_parked(decision)),
                     reason="the workflow has not asked yet; applied when it does")  # fmt: skip
        return False
    if step is not None and step.capability == APPROVAL_CAPABILITY:
        _remember(step, decision)
    if verdict != "apply":
        _ignore(state, step, _parked(decision), verdict, effects, step_id=decision.step_id)
        return False
    assert step is not None
    _settle(state, step, _parked(decision).decision, now, effects, by=decision.decider,
            comment=decision.comment, decision_id=str(decision.event_id))  # fmt: skip
    return True


def judge(
    state: WorkflowState, spec: Approval | None, decision: ApprovalDecision
) -> tuple[Verdict, StepState | None]:
    """What to do with ``decision``: apply it, park it, count a redelivery, or ignore it."""
    step = state.steps.get(decision.step_id)
    if spec is None or decision.request_id != request_id(state.workflow_id, decision.step_id):
        return "unknown-request", step
    approval = step.approval if step is not None else None
    if approval is not None and decision.event_id in approval.seen:
        return "duplicate", step
    if step is None or approval is None or approval.round == 0:
        if step is not None and step.status == "skipped":
            return "unknown-request", step  # its when= was false: nothing was asked
        return ("park" if state.status == "running" else "workflow-finished"), step
    if approval.reason == "withdrawn":
        return "withdrawn", step
    if step.status != "waiting":
        return "already-decided", step
    if decision.decider not in approval.approvers:
        return "not-allowed", step
    return "apply", step


def expire(
    spec: Approval, state: WorkflowState, step: StepState, now: datetime, effects: Effects,
    producer: Producer,
) -> None:  # fmt: skip
    """The step's deadline passed with no decision: its policy for this round."""
    assert step.approval is not None
    policy = spec.policy(step.attempt)
    if policy == "escalate":
        ask(state, spec, step.approval.ask, step.attempt + 1, now, effects, producer)
        return
    decision: Decision = "approved" if policy == "approve" else "rejected"
    _settle(state, step, decision, now, effects, by=None, reason="deadline")


def withdraw_open(state: WorkflowState, now: datetime, effects: Effects) -> None:
    """The workflow ends: an approval still waiting is withdrawn (no decision applies now), and
    decisions parked for an approval it never reached are recorded as such."""
    for step in state.steps.values():
        if step.status == "waiting" and step.approval is not None:
            step.approval.reason = "withdrawn"
            step.status = "skipped"
            step.finished_at = now
            effects.resolved.append(step.approval.request_id)
        elif step.status == "pending":
            drop_parked(state, step, "workflow-finished", effects)


def drop_parked(
    state: WorkflowState, step: StepState, reason: IgnoredReason, effects: Effects
) -> None:
    """Decisions parked for a request that will not be made: recorded and ignored."""
    if step.approval is None:
        return
    parked, step.approval.parked = step.approval.parked, []
    for early in parked:
        _ignore(state, step, early, reason, effects)


# -- internals ------------------------------------------------------------------------------


def _settle(
    state: WorkflowState, step: StepState, decision: Decision, now: datetime, effects: Effects,
    *, by: str | None, comment: str | None = None,
    reason: Literal["decided", "deadline"] = "decided", decision_id: str | None = None,
    parked: bool = False,
) -> None:  # fmt: skip
    """Resolve the waiting step; its output is what later steps and ``when=`` read."""
    approval = step.approval
    assert approval is not None
    approval.decision, approval.decided_by, approval.decided_at = decision, by, now
    approval.comment, approval.reason = comment, reason
    step.status = decision
    step.finished_at = now
    step.output = {
        "approved": decision == "approved", "decision": decision, "by": by, "comment": comment,
        "at": now.isoformat(), "reason": reason, "round": approval.round,
    }  # fmt: skip
    effects.resolved.append(approval.request_id)
    step_id = approval.request_id.rsplit("/", 1)[1]
    extra: dict[str, Any] = {"decision_id": decision_id} if decision_id else {}
    if parked:
        extra["parked"] = True
    effects.note(state, "approval-decided", step_id, decision=decision, by=by, comment=comment,
                 reason=reason, round=approval.round, **extra)  # fmt: skip


def _ignore(
    state: WorkflowState, step: StepState | None, decision: ParkedDecision,
    reason: IgnoredReason, effects: Effects, *, step_id: str | None = None,
) -> None:  # fmt: skip
    """Record ``decision`` (on the step, when it has an approval state, and as an event)."""
    if step is not None and step.approval is not None:
        step.approval.ignored_count += 1
        step.approval.ignored.append(IgnoredDecision(
            decision_id=decision.decision_id, decision=decision.decision, by=decision.by,
            at=decision.at, reason=reason,
        ))  # fmt: skip
        del step.approval.ignored[:-HISTORY]
        step_id = step_id or step.approval.request_id.rsplit("/", 1)[1]
    effects.note(state, "decision-ignored", step_id, **_detail(decision), reason=reason)


def _remember(step: StepState, decision: ApprovalDecision) -> None:
    """Note ``decision``'s event id on the step (creating its state if it was never asked)."""
    if step.approval is None:
        step.approval = ApprovalState(request_id=decision.request_id)
    step.approval.seen.append(decision.event_id)
    del step.approval.seen[:-SEEN]


def _parked(decision: ApprovalDecision) -> ParkedDecision:
    """The state's record of a decision event."""
    return ParkedDecision(
        decision_id=decision.event_id, by=decision.decider, comment=decision.comment,
        decision="approved" if decision.decision == "approve" else "rejected",
        at=decision.created_at,
    )  # fmt: skip


def _detail(decision: ParkedDecision) -> dict[str, Any]:
    return {"decision_id": str(decision.decision_id), "by": decision.by,
            "decision": "approve" if decision.decision == "approved" else "reject"}  # fmt: skip
