"""Approval steps on the pure state machine: asked, decided once, parked, ignored with a reason,
and each deadline policy (no broker needed; tests/e2e/test_approvals.py runs them on one)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from expediter import (
    All,
    Approval,
    ConfigurationError,
    Group,
    Parallel,
    Step,
    Workflow,
    WorkflowState,
)
from expediter.events import ApprovalDecision, Producer, ResultEvent
from expediter.orchestrator.stepping import apply_decision, apply_result, expire, overdue, start

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PERSON = Producer(name="cli", version="1")
AGRONOMISTS = Group("agronomists", ["ana", "ben"])


def flow(**approval: Any) -> Workflow:
    """survey (an agent) -> drones (an approval) -> dispatch (only when approved)."""
    options: dict[str, Any] = {"deadline_seconds": 60, **approval}
    return Workflow(
        name="w",
        stages=[
            Step("survey", "pest-detection", lambda s: {"field": s.input["field"]}),
            Approval(
                "drones",
                ask=lambda s: {"field": s.input["field"], "ha": s.output("survey")["ha"]},
                approvers=[AGRONOMISTS, "chief"],
                title="Dispatch bio-drones?",
                when=lambda s: s.output("survey")["ha"] >= 50,
                **options,
            ),
            Step(
                "dispatch",
                "action",
                lambda s: {"by": s.output("drones")["by"]},
                when=lambda s: s.approved("drones"),
            ),
        ],
        report=lambda s: {"drones": s.output("drones") or None},
    )


def surveyed(
    workflow: Workflow, ha: float = 80, early: ApprovalDecision | None = None
) -> tuple[WorkflowState, Any]:
    """The survey done with ``ha`` infested (``early``: a decision sent before it finished)."""
    state, effects = start(workflow, "wf-1", {"field": "f1"}, T0)
    if early is not None:
        apply_decision(workflow, state, early, T0)
    task = effects.tasks[0]
    result = ResultEvent(producer=PERSON, workflow_id="wf-1", step_id="survey",
                         capability="pest-detection", task_id=task.event_id, status="succeeded",
                         output={"ha": ha})  # fmt: skip
    return state, apply_result(workflow, state, result, T0 + timedelta(seconds=1))


def decision(by: str, verdict: str = "approve", step: str = "drones", **extra: Any) -> Any:
    return ApprovalDecision(producer=PERSON, request_id=f"wf-1/{step}", workflow_id="wf-1",
                            step_id=step, decision=verdict, decider=by, **extra)  # fmt: skip


def statuses(effects: Any) -> list[str]:
    return [e.status for e in effects.events]


def test_the_approval_is_asked_when_its_stage_starts_with_what_the_state_says() -> None:
    state, effects = surveyed(flow())
    assert [r.request_id for r in effects.requests] == ["wf-1/drones"]
    request = effects.requests[0]
    assert request.ask == {"field": "f1", "ha": 80}
    assert request.approvers == ["ana", "ben", "chief"]
    assert request.groups == ["agronomists"]
    assert request.deadline == T0 + timedelta(seconds=61)
    assert state.steps["drones"].status == "waiting"
    assert "approval-requested" in statuses(effects)
    assert overdue(state, T0 + timedelta(seconds=62)) == [("drones", 1)]


def test_an_approval_decides_once_and_later_steps_read_the_decision() -> None:
    workflow = flow()
    state, _ = surveyed(workflow)
    now = T0 + timedelta(seconds=5)
    effects = apply_decision(workflow, state, decision("ben", comment="go"), now)
    assert state.steps["drones"].status == "approved"
    assert state.output("drones")["by"] == "ben"
    assert state.output("drones")["comment"] == "go"
    assert effects.resolved == ["wf-1/drones"]
    assert [t.step_id for t in effects.tasks] == ["dispatch"]
    assert effects.tasks[0].input == {"by": "ben"}
    again = apply_decision(workflow, state, decision("ana", "reject"), now)
    assert statuses(again) == ["decision-ignored"]
    assert again.events[0].detail["reason"] == "already-decided"
    assert state.steps["drones"].status == "approved", "never applied twice"
    assert state.steps["drones"].approval.ignored[0].reason == "already-decided"


def test_a_redelivered_decision_is_counted_not_recorded() -> None:
    workflow = flow()
    state, _ = surveyed(workflow)
    once = decision("ana")
    apply_decision(workflow, state, once, T0)
    redelivered = apply_decision(workflow, state, once, T0)
    assert redelivered.events == []
    assert redelivered.tasks == []
    assert state.steps["drones"].duplicates == 1


def test_a_rejection_is_an_answer_the_workflow_branches_on() -> None:
    workflow = flow()
    state, _ = surveyed(workflow)
    effects = apply_decision(workflow, state, decision("chief", "reject"), T0)
    assert state.status == "completed"
    assert state.steps["dispatch"].status == "skipped"
    assert state.report == {"drones": state.output("drones")}
    assert state.output("drones")["approved"] is False
    assert effects.completion is not None


def test_someone_not_allowed_is_refused_and_recorded_and_the_request_stays_open() -> None:
    workflow = flow()
    state, _ = surveyed(workflow)
    effects = apply_decision(workflow, state, decision("mallory"), T0)
    assert effects.events[0].detail == {
        "decision_id": effects.events[0].detail["decision_id"], "by": "mallory",
        "decision": "approve", "reason": "not-allowed",
    }  # fmt: skip
    assert state.steps["drones"].status == "waiting"
    assert effects.resolved == []
    assert apply_decision(workflow, state, decision("ana"), T0).resolved == ["wf-1/drones"]


def test_a_decision_for_no_such_request_is_ignored_with_the_reason() -> None:
    workflow = flow()
    state, _ = surveyed(workflow)
    for wrong in (decision("ana", step="survey"), decision("ana", step="nope")):
        effects = apply_decision(workflow, state, wrong, T0)
        assert effects.events[0].detail["reason"] == "unknown-request"
    mismatched = ApprovalDecision(producer=PERSON, request_id="wf-2/drones", workflow_id="wf-1",
                                  step_id="drones", decision="approve", decider="ana")  # fmt: skip
    assert apply_decision(workflow, state, mismatched, T0).events[0].detail["reason"] == (
        "unknown-request"
    )
    assert state.steps["drones"].status == "waiting"


def test_a_decision_before_the_request_is_parked_then_applied_when_asked() -> None:
    workflow = flow()
    state, first = start(workflow, "wf-1", {"field": "f1"}, T0)
    early = apply_decision(workflow, state, decision("mallory"), T0)
    parked = apply_decision(workflow, state, decision("ana", comment="pre-approved"), T0)
    assert statuses(early) == statuses(parked) == ["decision-parked"]
    assert "drones" not in [t.step_id for t in first.tasks]
    result = ResultEvent(producer=PERSON, workflow_id="wf-1", step_id="survey",
                         capability="pest-detection", task_id=first.tasks[0].event_id,
                         status="succeeded", output={"ha": 90})  # fmt: skip
    effects = apply_result(workflow, state, result, T0 + timedelta(seconds=2))
    assert statuses(effects)[:4] == [
        "step-completed", "approval-requested", "decision-ignored", "approval-decided"
    ]  # fmt: skip
    assert effects.events[2].detail["reason"] == "not-allowed"
    assert state.output("drones")["comment"] == "pre-approved"
    assert [t.step_id for t in effects.tasks] == ["dispatch"]
    assert effects.requests
    assert effects.resolved == ["wf-1/drones"]


def test_an_approval_whose_condition_is_false_is_skipped_and_asks_nothing() -> None:
    workflow = flow()
    state, effects = surveyed(workflow, ha=10, early=decision("ana"))
    assert effects.requests == []
    ignored = [e.detail for e in effects.events if e.status == "decision-ignored"]
    assert [(d["by"], d["reason"]) for d in ignored] == [("ana", "unknown-request")], (
        "the decision parked for it is recorded, not left waiting"
    )
    assert state.steps["drones"].status == "skipped"
    assert state.status == "completed"
    late = apply_decision(workflow, state, decision("ana"), T0)
    assert late.events[0].detail["reason"] == "unknown-request"


@pytest.mark.parametrize(("policy", "outcome"), [("reject", "rejected"), ("approve", "approved")])
def test_the_deadline_decides_by_its_policy(policy: str, outcome: str) -> None:
    workflow = flow(on_deadline=policy)
    state, _ = surveyed(workflow)
    assert expire(workflow, state, "drones", 1, T0 + timedelta(seconds=30)).events == [], (
        "not due yet"
    )
    effects = expire(workflow, state, "drones", 1, T0 + timedelta(seconds=62))
    assert state.steps["drones"].status == outcome
    assert state.output("drones")["reason"] == "deadline"
    assert state.output("drones")["by"] is None
    assert effects.resolved == ["wf-1/drones"]
    assert [t.step_id for t in effects.tasks] == (["dispatch"] if outcome == "approved" else [])
    late = apply_decision(workflow, state, decision("ana"), T0 + timedelta(seconds=63))
    assert late.events[0].detail["reason"] == "already-decided"


def test_escalation_asks_the_other_group_too_then_its_own_deadline_decides() -> None:
    managers = Group("farm-managers", ["carla"])
    workflow = flow(on_deadline="escalate", escalate_to=[managers], escalation_seconds=30,
                    after_escalation="approve")  # fmt: skip
    state, _ = surveyed(workflow)
    refused = apply_decision(workflow, state, decision("carla"), T0 + timedelta(seconds=10))
    assert refused.events[0].detail["reason"] == "not-allowed", "not asked yet"
    escalated = expire(workflow, state, "drones", 1, T0 + timedelta(seconds=62))
    assert [r.round for r in escalated.requests] == [2]
    assert escalated.requests[0].approvers == ["ana", "ben", "chief", "carla"]
    assert escalated.requests[0].deadline == T0 + timedelta(seconds=92)
    assert escalated.requests[0].requested_at == T0 + timedelta(seconds=1)
    assert escalated.resolved == []
    assert expire(workflow, state, "drones", 1, T0 + timedelta(seconds=95)).events == [], (
        "round 1's command is stale"
    )
    final = expire(workflow, state, "drones", 2, T0 + timedelta(seconds=95))
    assert state.output("drones") | {"at": None} == {
        "approved": True, "decision": "approved", "by": None, "comment": None, "at": None,
        "reason": "deadline", "round": 2,
    }  # fmt: skip
    assert final.resolved == ["wf-1/drones"]


def test_escalated_requests_take_a_decision_from_the_escalation_group() -> None:
    workflow = flow(on_deadline="escalate", escalate_to=[Group("farm-managers", ["carla"])])
    state, _ = surveyed(workflow)
    expire(workflow, state, "drones", 1, T0 + timedelta(seconds=62))
    apply_decision(workflow, state, decision("carla", "reject"), T0 + timedelta(seconds=70))
    assert (state.steps["drones"].status, state.output("drones")["round"]) == ("rejected", 2)


def test_a_workflow_that_fails_elsewhere_withdraws_its_open_request() -> None:
    workflow = Workflow(
        name="w",
        stages=[Parallel("both", [
            Step("survey", "pest-detection", lambda s: {}, max_attempts=1),
            Approval("drones", ask=lambda s: {}, approvers=["ana"]),
        ], join=All()), Approval("later", ask=lambda s: {}, approvers=["ana"])],
        report=lambda s: {},
    )  # fmt: skip
    state, first = start(workflow, "wf-1", {}, T0)
    assert [r.request_id for r in first.requests] == ["wf-1/drones"]
    apply_decision(workflow, state, decision("ana", step="later"), T0)  # parked, never asked
    effects = expire(workflow, state, "survey", 1, T0 + timedelta(seconds=500))
    assert state.status == "failed"
    assert effects.resolved == ["wf-1/drones"]
    late = apply_decision(workflow, state, decision("ana"), T0 + timedelta(seconds=501))
    assert late.events[0].detail["reason"] == "withdrawn"
    ignored = [e.detail["reason"] for e in effects.events if e.status == "decision-ignored"]
    assert ignored == ["workflow-finished"]


def test_an_ask_that_raises_fails_that_workflow() -> None:
    workflow = Workflow(
        name="w",
        stages=[Approval("drones", ask=lambda s: {"x": s.input["missing"]}, approvers=["ana"])],
        report=lambda s: {},
    )
    state, effects = start(workflow, "wf-1", {}, T0)
    assert state.status == "failed"
    assert state.steps["drones"].error is not None
    assert state.steps["drones"].error.code == "ask"
    assert effects.requests == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"approvers": []}, "non-empty list"),
        ({"approvers": "ana"}, "non-empty list"),
        ({"approvers": ["not a name"]}, "not a decider's name"),
        ({"id": "a/b"}, "no '/'"),
        ({"on_deadline": "escalate"}, "escalate_to"),
        ({"escalate_to": ["carla"]}, "set on_deadline='escalate'"),
        ({"deadline_seconds": 0}, "deadline_seconds"),
        ({"on_deadline": "maybe"}, "on_deadline must be"),
    ],
)
def test_a_misdeclared_approval_is_refused_naming_the_fix(
    options: dict[str, Any], message: str
) -> None:
    given: dict[str, Any] = {"id": "ok", "ask": lambda s: {}, "approvers": ["ana"], **options}
    with pytest.raises(ConfigurationError, match=message):
        Approval(**given)


def test_groups_need_members_with_valid_names() -> None:
    with pytest.raises(ConfigurationError, match="non-empty list"):
        Group("agronomists", [])
    with pytest.raises(ConfigurationError, match="lowercase DNS label"):
        Group("Agronomists", ["ana"])


def test_ids_of_steps_and_approvals_share_one_namespace() -> None:
    with pytest.raises(ConfigurationError, match="used twice"):
        Workflow(name="w", stages=[Step("x", "c", lambda s: {}),
                                   Approval("x", ask=lambda s: {}, approvers=["a"])],
                 report=lambda s: {})  # fmt: skip


def test_approvals_are_not_tasks_for_agents() -> None:
    workflow = flow()
    assert [s.id for s in workflow.steps()] == ["survey", "dispatch"]
    assert [a.id for a in workflow.approvals()] == ["drones"]
    assert [m.id for m in workflow.members()] == ["survey", "drones", "dispatch"]


def test_decision_ids_remembered_per_step_are_bounded() -> None:
    workflow = flow()
    state, _ = surveyed(workflow)
    for _ in range(300):
        apply_decision(workflow, state, decision("mallory", event_id=uuid.uuid4()), T0)
    approval = state.steps["drones"].approval
    assert approval is not None
    assert (len(approval.seen), len(approval.ignored), approval.ignored_count) == (200, 20, 300)
