"""The deadline index: a scan costs what is due, not what waits (counted, not timed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from expediter.orchestrator.scheduling import DeadlineIndex, Due, deadlines_of

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def waiting(deadline: datetime, *, attempt: int = 1, status: str = "waiting") -> dict[str, Any]:
    """A table value: a running workflow with one approval waiting until ``deadline``."""
    return {
        "status": "running",
        "workflow": "gate",
        "steps": {"drones": {"status": status, "attempt": attempt,
                             "deadline": deadline.isoformat()}},
    }  # fmt: skip


def test_thousands_of_waits_cost_a_scan_nothing_until_one_is_due() -> None:
    index = DeadlineIndex()
    for n in range(10_000):
        index.track(f"wf-{n}", waiting(T0 + timedelta(days=3, seconds=n)))
    index.track("wf-soon", waiting(T0 + timedelta(seconds=5)))
    assert len(index) == 10_001
    found = []
    for second in range(60):  # a minute of scans, once a second
        found += index.due((T0 + timedelta(seconds=second)).timestamp())
    assert [d.workflow_id for d in found] == ["wf-soon"]
    assert index.cost.examined == 1, "only the one due entry was ever looked at"
    assert index.cost.due == 1
    assert len(index) == 10_000


def test_a_changed_state_replaces_its_deadlines_and_stale_ones_are_skipped() -> None:
    index = DeadlineIndex()
    index.track("wf-1", waiting(T0 + timedelta(seconds=10)))
    index.track("wf-1", waiting(T0 + timedelta(seconds=20), attempt=2))  # escalated
    assert index.due((T0 + timedelta(seconds=15)).timestamp()) == []
    assert index.cost.examined == 1, "the old deadline was popped and dropped as stale"
    due = index.due((T0 + timedelta(seconds=25)).timestamp())
    assert [(d.workflow_id, d.step_id, d.attempt) for d in due] == [("wf-1", "drones", 2)]
    index.track("wf-1", {"status": "completed", "steps": {}})
    assert len(index) == 0


def test_decided_and_finished_workflows_have_no_deadline() -> None:
    assert deadlines_of(waiting(T0, status="approved")) == frozenset()
    assert deadlines_of({**waiting(T0), "status": "failed"}) == frozenset()
    assert deadlines_of(None) == frozenset()
    assert deadlines_of(waiting(T0, status="running")) == {(T0.timestamp(), "drones", 1)}


def test_a_rebuild_reads_the_table_once_and_a_failed_send_is_retried() -> None:
    index = DeadlineIndex()
    index.track("gone", waiting(T0))
    table = [(f"wf-{n}", waiting(T0 + timedelta(seconds=n))) for n in range(100)]
    table += [(f"done-{n}", {"status": "completed", "steps": {}}) for n in range(900)]
    index.rebuild(table)
    assert (index.cost.rebuilds, index.cost.rebuild_examined, len(index)) == (1, 1000, 100)
    due = index.due((T0 + timedelta(seconds=2.5)).timestamp())
    assert [d.workflow_id for d in due] == ["wf-0", "wf-1", "wf-2"]
    index.retry(due[0])
    again = index.due((T0 + timedelta(seconds=2.5)).timestamp())
    assert again == [Due(T0.timestamp(), "wf-0", "drones", 1)]


def test_the_heap_is_compacted_when_stale_entries_pile_up() -> None:
    index = DeadlineIndex()
    for n in range(5_000):  # one workflow's deadline moved 5,000 times (retries, escalations)
        index.track("wf-1", waiting(T0 + timedelta(days=1, seconds=n), attempt=n + 1))
    assert len(index) == 1
    assert len(index._heap) <= 2 * len(index) + 1024
