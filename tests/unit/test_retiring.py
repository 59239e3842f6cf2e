"""A bounded orchestrator table: when a finished workflow leaves it, and how `status` tells the
workflow's state again from its history once the table and the compacted changelog let it go
(pure; the broker-side behaviour is tests/e2e/test_orchestrator_retention.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from expediter import Any_, Parallel, Step, Workflow, WorkflowState
from expediter.events import Producer, ResultEvent, TaskError, TaskEvent, WorkflowEvent
from expediter.orchestrator.recounting import state_from_history
from expediter.orchestrator.retiring import Nudging, RecentlyRetired, RetentionIndex, retire_at
from expediter.orchestrator.stepping import Effects, apply_result, start

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AGENT = Producer(name="agent", version="1")


def value(status: str, finished: datetime | None = None) -> dict[str, Any]:
    """A table value as the orchestrator stores it (JSON), with only what retention reads."""
    return {"status": status, "finished_at": finished.isoformat() if finished else None}


def test_a_running_workflow_never_retires_and_a_finished_one_after_its_retention() -> None:
    assert retire_at(value("running"), 60) is None
    assert retire_at(None, 60) is None
    for status in ("completed", "failed"):
        assert retire_at(value(status, T0), 60) == T0.timestamp() + 60


def test_a_partition_is_nudged_once_its_head_waited_and_then_at_most_once_a_period() -> None:
    index = RetentionIndex(retention=10)
    index.track("wf-a", 0, value("completed", T0))
    index.track("wf-b", 0, value("completed", T0 + timedelta(seconds=5)))
    index.track("wf-c", 1, value("completed", T0 + timedelta(seconds=30)))
    nudging = Nudging(after=1.0)
    due = T0.timestamp() + 10  # wf-a's retention ends now
    assert nudging.due(index, due + 0.5) == []  # a record may still come to carry it
    assert nudging.due(index, due + 1.0) == ["wf-a"]  # one nudge, naming the partition's head
    assert nudging.due(index, due + 1.5) == []  # at most one per partition per period
    assert nudging.due(index, due + 2.0) == ["wf-a"]  # not carried yet: nudged again
    assert index.due(0, due + 2.0, limit=10) == ["wf-a"]  # the nudge's record retired it
    assert nudging.due(index, due + 5.5) == []  # wf-b is due at +5: it waits a period too
    assert nudging.due(index, due + 6.0) == ["wf-b"]
    assert index.due(0, due + 6.0, limit=10) == ["wf-b"]
    assert nudging.due(index, due + 30.5) == []
    assert nudging.due(index, due + 31.0) == ["wf-c"]  # the other partition, on its own clock


def test_due_pops_only_the_partitions_own_finished_workflows_in_order_up_to_a_limit() -> None:
    index = RetentionIndex(retention=10)
    for n in range(5):
        index.track(f"wf-{n}", 0, value("completed", T0 + timedelta(seconds=n)))
    index.track("wf-other", 1, value("completed", T0))
    index.track("wf-running", 0, value("running"))
    assert len(index) == 6
    now = T0.timestamp() + 10 + 3  # wf-0..wf-3 are due
    assert index.due(0, now, limit=2) == ["wf-0", "wf-1"]
    assert index.due(0, now, limit=10) == ["wf-2", "wf-3"]
    assert index.due(0, now, limit=10) == []
    assert index.next_due(0) == (T0.timestamp() + 14, "wf-4")
    assert index.partitions() == [0, 1]
    assert index.due(1, now, limit=10) == ["wf-other"]
    assert len(index) == 1


def test_a_workflow_that_left_or_changed_is_not_popped_from_a_stale_entry() -> None:
    index = RetentionIndex(retention=0)
    index.track("wf-a", 0, value("completed", T0))
    index.track("wf-a", 0, None)  # deleted (or retired elsewhere)
    index.track("wf-b", 0, value("failed", T0))
    index.track("wf-b", 0, value("running"))  # started anew with the same id after retiring
    index.track("wf-c", 0, value("completed", T0))
    index.track("wf-c", 0, value("completed", T0 + timedelta(seconds=5)))  # saved again later
    assert index.due(0, T0.timestamp() + 1, limit=10) == []
    assert index.due(0, T0.timestamp() + 5, limit=10) == ["wf-c"]
    assert len(index) == 0


def test_clear_forgets_everything_for_a_rebuild() -> None:
    index = RetentionIndex(retention=0)
    index.track("wf-a", 3, value("completed", T0))
    index.clear()
    assert len(index) == 0
    assert index.due(3, T0.timestamp() + 1, limit=10) == []


def test_recently_retired_keeps_the_last_ones_only() -> None:
    retired = RecentlyRetired(size=3)
    for n in range(5):
        retired.add(f"wf-{n}")
    assert "wf-0" not in retired
    assert "wf-1" not in retired
    assert all(f"wf-{n}" in retired for n in (2, 3, 4))


# -- the state told again from the history ---------------------------------------------------


def echo(state: WorkflowState) -> dict[str, Any]:
    return {"n": state.input.get("n", 0)}


FLOW = Workflow(
    name="t",
    stages=[
        Parallel("g", [Step(x, f"cap-{x}", echo, deadline_seconds=10) for x in "ab"], join=Any_()),
        Step("c", "cap-c", echo, max_attempts=2),
        Step("d", "cap-d", echo, when=lambda s: False),
    ],
    report=lambda s: {"n": s.input["n"]},
)


def result(task: TaskEvent, *, ok: bool = True) -> ResultEvent:
    return ResultEvent(
        producer=AGENT, workflow_id=task.workflow_id, step_id=task.step_id,
        capability=task.capability, attempt=task.attempt, task_id=task.event_id,
        status="succeeded" if ok else "failed", output={"ok": True} if ok else None,
        error=None if ok else TaskError(retriable=True, code="x", message="x"),
    )  # fmt: skip


def test_the_history_tells_what_the_table_held_once_the_workflow_finished() -> None:
    events: list[WorkflowEvent] = []

    def keep(effects: Effects) -> Effects:
        events.extend(effects.events)
        return effects

    state, first = start(FLOW, "wf-1", {"n": 7}, T0)
    tasks = {t.step_id: t for t in keep(first).tasks}
    then = T0 + timedelta(seconds=1)
    c = keep(apply_result(FLOW, state, result(tasks["a"]), then)).tasks[0]
    keep(apply_result(FLOW, state, result(tasks["b"]), then))  # late: the group joined on a
    retry = keep(apply_result(FLOW, state, result(c, ok=False), then)).tasks[0]
    keep(apply_result(FLOW, state, result(retry), then))
    assert state.status == "completed"

    told = state_from_history(events)
    assert told is not None
    assert (told.workflow_id, told.workflow, told.input) == ("wf-1", "t", {"n": 7})
    assert (told.status, told.report, told.reason) == ("completed", {"n": 7}, None)
    assert told.created_at == events[0].created_at
    assert told.finished_at == events[-1].created_at
    expected = {k: (s.status, s.attempt, s.late, s.capability) for k, s in state.steps.items()}
    assert {k: (s.status, s.attempt, s.late, s.capability) for k, s in told.steps.items()} == {
        **expected,
        "d": ("skipped", 0, 0, ""),  # never dispatched: its capability is not in the history
    }
    assert expected["b"] == ("running", 1, 1, "cap-b"), "b lost the Any join, then came late"


def test_a_failed_workflow_keeps_its_reason_and_no_start_means_no_state() -> None:
    state, effects = start(FLOW, "wf-2", {}, T0)  # c fails twice: the workflow fails
    tasks = {t.step_id: t for t in effects.tasks}
    events = list(effects.events)
    c = apply_result(FLOW, state, result(tasks["a"]), T0)
    events += c.events
    for _ in range(2):
        step = apply_result(FLOW, state, result(c.tasks[0], ok=False), T0)
        events += step.events
        c = step if step.tasks else c
    told = state_from_history(events)
    assert told is not None
    assert told.status == state.status == "failed"
    assert told.reason == state.reason
    assert told.steps["c"].status == "failed"
    assert state_from_history(events[1:]) is None
