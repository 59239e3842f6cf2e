"""The benches' round-trip breakdown (bench/breakdown.py) follows a workflow's critical path.

bench_orchestrator.py reports ``critical_path_hops`` and the time by stage from the records a
tap read; a wrong walk would blame the wrong stage. These cases are the field-analysis shapes:
two parallel steps then the report (4 hops), or a third step after them (6 hops).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from breakdown import Seen, critical_path, stages


def rec(kind: str, created: float, seen: float, **value: str) -> Seen:
    return Seen(kind, created, seen, value)


COMMAND = rec("command", 0.000, 0.002)
SOIL = rec("task", 0.010, 0.110, event_id="t-soil")
PESTS = rec("task", 0.010, 0.110, event_id="t-pests")
SOIL_DONE = rec("result", 0.115, 0.120, task_id="t-soil")
PESTS_DONE = rec("result", 0.125, 0.135, task_id="t-pests")  # the later one gates the join


def test_two_parallel_steps_then_the_report_is_four_hops() -> None:
    done = rec("completed", 0.140, 0.240)
    records = [done, PESTS_DONE, SOIL, COMMAND, SOIL_DONE, PESTS]
    path = critical_path(records)
    assert path == [COMMAND, PESTS, PESTS_DONE, done]
    spent = stages(path, sent=0.0)
    assert spent["submit"] == pytest.approx(2)
    assert spent["orchestrator"] == pytest.approx((0.010 - 0.002 + 0.140 - 0.135) * 1000)
    assert spent["orchestrator_commit"] == pytest.approx(200)
    assert spent["worker"] == pytest.approx(15)
    assert spent["worker_commit"] == pytest.approx(10)


def test_a_third_step_after_the_join_is_six_hops() -> None:
    mapping = rec("task", 0.137, 0.237, event_id="t-map")
    mapped = rec("result", 0.240, 0.245, task_id="t-map")
    done = rec("completed", 0.247, 0.347)
    records = [COMMAND, SOIL, PESTS, SOIL_DONE, PESTS_DONE, mapping, mapped, done]
    assert critical_path(records) == [COMMAND, PESTS, PESTS_DONE, mapping, mapped, done]


def test_a_result_seen_by_the_tap_just_after_its_consumer_still_gates() -> None:
    late_tap = rec("result", 0.125, 0.1385, task_id="t-pests")  # the tap read it 1.5 ms late
    done = rec("completed", 0.137, 0.237)
    path = critical_path([COMMAND, SOIL, PESTS, SOIL_DONE, late_tap, done])
    assert path is not None
    assert path[-2] is late_tap


def test_an_unfinished_workflow_has_no_path_yet() -> None:
    assert critical_path([COMMAND, SOIL, PESTS, SOIL_DONE]) is None
