"""The orchestrator's join rules, on the pure state machine (no broker needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from expediter import All, Any_, Parallel, Quorum, Step, Workflow, WorkflowState
from expediter.events import Producer, ResultEvent, TaskError, TaskEvent
from expediter.orchestrator.stepping import Effects, apply_result, expire, overdue, start

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AGENT = Producer(name="agent", version="1")


def echo(state: WorkflowState) -> dict[str, Any]:
    return {"n": state.input.get("n", 0)}


def flow(join: Any = None, *, when: Any = None, attempts: int = 2) -> Workflow:
    return Workflow(
        name="t",
        stages=[
            Parallel(
                "g",
                [
                    Step(x, f"cap-{x}", echo, max_attempts=attempts, deadline_seconds=10)
                    for x in ("a", "b", "c")
                ],
                join=join or All(),
            ),
            Step("d", "cap-d", echo, when=when),
        ],
        report=lambda s: {"outputs": {k: v.output for k, v in s.steps.items()}},
    )


def result(
    task: TaskEvent, *, ok: bool = True, retriable: bool = False, **output: Any
) -> ResultEvent:
    return ResultEvent(
        producer=AGENT, workflow_id=task.workflow_id, step_id=task.step_id,
        capability=task.capability, attempt=task.attempt, task_id=task.event_id,
        status="succeeded" if ok else "failed", output=output or {"ok": True} if ok else None,
        error=None if ok else TaskError(retriable=retriable, code="x", message="x"),
    )  # fmt: skip


def tasks_by_step(effects: Effects) -> dict[str, TaskEvent]:
    return {t.step_id: t for t in effects.tasks}


def test_start_fans_out_the_first_group_and_waits() -> None:
    state, effects = start(flow(), "wf-1", {"n": 3}, T0)
    assert sorted(tasks_by_step(effects)) == ["a", "b", "c"]
    assert all(t.input == {"n": 3} and t.attempt == 1 for t in effects.tasks)
    assert all(t.deadline == T0 + timedelta(seconds=10) for t in effects.tasks)
    assert state.status == "running"
    assert [e.status for e in effects.events] == ["started", *["step-started"] * 3]


def test_all_joins_after_every_step_then_the_next_stage_runs() -> None:
    wf = flow()
    state, effects = start(wf, "wf-1", {}, T0)
    tasks = tasks_by_step(effects)
    assert apply_result(wf, state, result(tasks["a"]), T0).tasks == []
    assert apply_result(wf, state, result(tasks["b"]), T0).tasks == []
    last = apply_result(wf, state, result(tasks["c"]), T0)
    assert [t.step_id for t in last.tasks] == ["d"]
    done = apply_result(wf, state, result(last.tasks[0]), T0)
    assert done.completion is not None
    assert done.completion.status == "completed"
    assert state.report is not None
    assert set(state.report["outputs"]) == {"a", "b", "c", "d"}


def test_any_joins_on_the_first_success_and_later_ones_are_late() -> None:
    wf = flow(Any_())
    state, effects = start(wf, "wf-1", {}, T0)
    tasks = tasks_by_step(effects)
    assert [t.step_id for t in apply_result(wf, state, result(tasks["b"]), T0).tasks] == ["d"]
    late = apply_result(wf, state, result(tasks["a"]), T0)
    assert [e.status for e in late.events] == ["step-late"]
    assert state.steps["a"].late == 1
    assert state.steps["a"].output is None


@pytest.mark.parametrize(("k", "successes_needed"), [(2, 2), (3, 3)])
def test_quorum_needs_k_successes(k: int, successes_needed: int) -> None:
    wf = flow(Quorum(k))
    state, effects = start(wf, "wf-1", {}, T0)
    tasks = list(tasks_by_step(effects).values())
    for n, task in enumerate(tasks, start=1):
        out = apply_result(wf, state, result(task), T0)
        assert bool(out.tasks) == (n == successes_needed)


def test_quorum_fails_once_it_can_no_longer_be_reached() -> None:
    wf = flow(Quorum(2))
    state, effects = start(wf, "wf-1", {}, T0)
    tasks = tasks_by_step(effects)
    apply_result(wf, state, result(tasks["a"], ok=False), T0)
    out = apply_result(wf, state, result(tasks["b"], ok=False), T0)
    assert out.completion is not None
    assert out.completion.status == "failed"
    assert "a, b" in out.completion.detail["reason"]


def test_a_redelivered_result_is_applied_once() -> None:
    wf = flow()
    state, effects = start(wf, "wf-1", {}, T0)
    first = result(tasks_by_step(effects)["a"], value=1)
    apply_result(wf, state, first, T0)
    again = apply_result(wf, state, first, T0)
    assert again.events == []
    assert again.tasks == []
    assert state.steps["a"].duplicates == 1


def test_a_result_after_the_deadline_is_late_and_ignored() -> None:
    wf = flow()
    state, effects = start(wf, "wf-1", {}, T0)
    out = apply_result(wf, state, result(tasks_by_step(effects)["a"]), T0 + timedelta(seconds=11))
    assert [e.status for e in out.events] == ["step-late"]
    assert state.steps["a"].status == "running"


def test_retriable_failure_republishes_the_next_attempt_up_to_the_limit() -> None:
    wf = flow(attempts=2)
    state, effects = start(wf, "wf-1", {}, T0)
    retry = apply_result(
        wf, state, result(tasks_by_step(effects)["a"], ok=False, retriable=True), T0
    )
    (again,) = retry.tasks
    assert (again.step_id, again.attempt) == ("a", 2)
    out = apply_result(wf, state, result(again, ok=False, retriable=True), T0)
    assert state.steps["a"].status == "failed"
    assert out.completion is not None
    assert out.completion.status == "failed"


def test_deadline_expiry_retries_then_fails_and_stale_expiries_do_nothing() -> None:
    wf = flow(attempts=2)
    state, effects = start(wf, "wf-1", {}, T0)
    later = T0 + timedelta(seconds=11)
    assert sorted(overdue(state, later)) == [("a", 1), ("b", 1), ("c", 1)]
    assert expire(wf, state, "a", 1, T0).tasks == [], "not due yet"
    (retry,) = expire(wf, state, "a", 1, later).tasks
    assert retry.attempt == 2
    assert expire(wf, state, "a", 1, later).tasks == [], "attempt 1 was already expired"
    # The late result of attempt 1 is recorded, not applied.
    late = apply_result(wf, state, result(tasks_by_step(effects)["a"]), later)
    assert [e.status for e in late.events] == ["step-late"]
    failed = expire(wf, state, "a", 2, later + timedelta(seconds=11))
    assert state.steps["a"].status == "failed"
    assert state.steps["a"].error is not None
    assert state.steps["a"].error.code == "deadline"
    assert failed.completion is not None


def test_a_false_condition_skips_its_step() -> None:
    wf = flow(when=lambda s: s.output("a").get("pests", 0) > 0)
    state, effects = start(wf, "wf-1", {}, T0)
    tasks = tasks_by_step(effects)
    apply_result(wf, state, result(tasks["a"], pests=0), T0)
    apply_result(wf, state, result(tasks["b"]), T0)
    out = apply_result(wf, state, result(tasks["c"]), T0)
    assert out.tasks == []
    assert state.steps["d"].status == "skipped"
    assert out.completion is not None
    assert out.completion.status == "completed"


def test_the_field_analysis_workflow_maps_only_fields_with_pests() -> None:
    from pathlib import Path

    from expediter import load_workflows

    wf = load_workflows(Path(__file__).resolve().parents[2] / "workflows")["field-analysis"]
    for pests, mapped in ((0, False), (4, True)):
        state, effects = start(wf, f"wf-{pests}", {"field_id": "f-1"}, T0)
        tasks = tasks_by_step(effects)
        assert tasks["soil"].input == {"field_id": "f-1", "depth_cm": 30}
        apply_result(wf, state, result(tasks["soil"], health="good"), T0)
        zone = {"x_min": 0.1, "y_min": 0.1, "x_max": 0.2, "y_max": 0.2}
        out = apply_result(wf, state, result(tasks["pests"], pests=pests, zone=zone), T0)
        assert bool(out.tasks) == mapped
        if mapped:
            assert out.tasks[0].input == {"field_id": "f-1", "zones": [zone]}
