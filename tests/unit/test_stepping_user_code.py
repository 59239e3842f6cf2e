"""A workflow's own code and input fail that workflow, never the orchestrator (no broker needed).

Bad input is refused by the workflow's input model; an exception in a step's input builder, a
``when=`` condition or the report fails that step and the workflow, with the error recorded in
the state and the completion. The stepping functions never raise for it: before, the exception
escaped into the Faust agent and stopped every workflow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from expediter import InvalidInputError, Parallel, Step, Workflow, WorkflowState, load_workflows
from expediter.events import Producer, ResultEvent, TaskError, TaskEvent
from expediter.orchestrator.stepping import Effects, apply_result, expire, start

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AGENT = Producer(name="agent", version="1")
FIELD_ANALYSIS = load_workflows(Path(__file__).resolve().parents[2] / "workflows")["field-analysis"]


def field(state: WorkflowState) -> dict[str, Any]:
    return {"field_id": state.input["field_id"]}  # KeyError without a field_id


def result(task: TaskEvent, *, ok: bool = True, **output: Any) -> ResultEvent:
    return ResultEvent(
        producer=AGENT, workflow_id=task.workflow_id, step_id=task.step_id,
        capability=task.capability, attempt=task.attempt, task_id=task.event_id,
        status="succeeded" if ok else "failed", output=output or {"ok": True} if ok else None,
        error=None if ok else TaskError(retriable=True, code="x", message="x"),
    )  # fmt: skip


def assert_failed(state: WorkflowState, effects: Effects, *words: str) -> None:
    assert state.status == "failed"
    assert effects.completion is not None
    assert effects.completion.status == "failed"
    for word in words:
        assert word in (state.reason or ""), state.reason
        assert word in effects.completion.detail["reason"]


def test_input_the_model_refuses_fails_the_workflow_naming_the_field() -> None:
    state, effects = start(FIELD_ANALYSIS, "wf-1", {}, T0)
    assert_failed(state, effects, "invalid input for workflow field-analysis", "field_id")
    assert effects.tasks == []
    assert {s.status for s in state.steps.values()} == {"pending"}


def test_the_input_model_names_each_bad_field_and_fills_in_defaults() -> None:
    with pytest.raises(InvalidInputError) as caught:
        FIELD_ANALYSIS.check_input({"field_id": "f", "depth_cm": "deep", "feild": 1})
    message = str(caught.value)
    assert "depth_cm: Input should be a valid integer" in message
    assert "feild: Extra inputs are not permitted" in message
    assert "field_id, depth_cm (optional)" in message, "the message says what it takes"
    assert FIELD_ANALYSIS.check_input({"field_id": "f"}) == {
        "field_id": "f", "depth_cm": 30, "drone_approval_ha": 50.0,
    }  # fmt: skip


def test_an_input_builder_that_raises_fails_its_workflow_and_dispatches_none_of_the_group() -> None:
    wf = Workflow(
        name="t",
        stages=[Parallel("g", [Step("a", "cap-a", lambda s: {}), Step("b", "cap-b", field)])],
        report=lambda s: {},
    )
    state, effects = start(wf, "wf-1", {}, T0)  # no input model: anything goes in
    assert_failed(state, effects, "step b", "input-builder", "KeyError('field_id')")
    assert effects.tasks == [], "a group is dispatched whole or not at all"
    step = state.steps["b"]
    assert step.status == "failed"
    assert step.error is not None
    assert step.error.code == "input-builder"
    assert [e.status for e in effects.events] == ["started", "step-completed", "failed"]


def test_a_condition_that_raises_fails_its_workflow() -> None:
    def pests(state: WorkflowState) -> bool:
        return bool(state.output("a")["pests"])  # KeyError: the agent sent no "pests"

    wf = Workflow(
        name="t",
        stages=[Step("a", "cap-a", lambda s: {}), Step("b", "cap-b", lambda s: {}, when=pests)],
        report=lambda s: {},
    )
    state, effects = start(wf, "wf-1", {}, T0)
    out = apply_result(wf, state, result(effects.tasks[0], zone=1), T0)
    assert_failed(state, out, "step b", "condition", "KeyError('pests')")
    assert out.tasks == []
    assert state.steps["a"].status == "succeeded"
    assert state.steps["b"].status == "failed"


def test_a_report_that_raises_fails_its_workflow() -> None:
    wf = Workflow(name="t", stages=[Step("a", "cap-a", lambda s: {})],
                  report=lambda s: {"n": 1 // 0})  # fmt: skip
    state, effects = start(wf, "wf-1", {}, T0)
    out = apply_result(wf, state, result(effects.tasks[0]), T0)
    assert_failed(state, out, "report", "ZeroDivisionError")


@pytest.mark.parametrize("how", ["retriable failure", "missed deadline"])
def test_an_input_builder_that_raises_on_a_retry_fails_its_workflow(how: str) -> None:
    def once(state: WorkflowState) -> dict[str, Any]:
        if state.steps["a"].attempt >= 1:
            raise RuntimeError("no second try")
        return {}

    wf = Workflow(name="t", stages=[Step("a", "cap-a", once, deadline_seconds=1)],
                  report=lambda s: {})  # fmt: skip
    state, effects = start(wf, "wf-1", {}, T0)
    task = effects.tasks[0]
    if how == "retriable failure":
        out = apply_result(wf, state, result(task, ok=False), T0)
    else:
        out = expire(wf, state, "a", 1, task.deadline.replace(year=2027))  # type: ignore[union-attr]
    assert_failed(state, out, "step a", "RuntimeError('no second try')")
    assert out.tasks == []
