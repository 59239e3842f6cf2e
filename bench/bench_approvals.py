"""Bench: the orchestrator's deadline scan with thousands of approvals waiting.

The table holds N workflows waiting on an approval (deadlines a day away) beside 10,000
finished ones, as real table values. Two scans, each run once a second by the orchestrator:

- baseline, measured in the same run: the scan as it was, reading every table entry and
  parsing each running workflow to find overdue steps;
- the deadline index (expediter.orchestrator.scheduling): popping what is due.

One JSON line per N with the time per scan and how many entries each looked at (the scan-cost
count); the last line carries ``ratio`` = full-scan time / index time at the largest N (how many
times cheaper a scan is), and ``index_growth`` = the index's time at the largest N over its time
at the smallest (flat means the wait count does not slow it).

    .venv/bin/python bench/bench_approvals.py [--pending 1000,10000] [--finished 10000]
                                              [--scans 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from common import emit

from expediter import Approval, Workflow, WorkflowState
from expediter.orchestrator.scheduling import DeadlineIndex
from expediter.orchestrator.stepping import overdue, start

GATE = Workflow(
    name="gate",
    stages=[Approval("drones", ask=lambda s: {"field": "f"}, approvers=["ana"])],
    report=lambda s: {},
)


def table(pending: int, finished: int) -> dict[str, Any]:
    """``pending`` waiting workflows and ``finished`` completed ones, as the table holds them."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {}
    for n in range(pending):
        state, _ = start(GATE, f"wf-p{n}", {}, now + timedelta(seconds=n % 3600))
        values[state.workflow_id] = state.model_dump(mode="json")
    done, _ = start(GATE, "wf-done", {}, now)
    done.status = "completed"
    value = done.model_dump(mode="json")
    for n in range(finished):
        values[f"wf-d{n}"] = {**value, "workflow_id": f"wf-d{n}"}
    return values


def full_scan(values: dict[str, Any], now: datetime) -> tuple[int, int]:
    """The scan before the index: every entry read, every running one parsed."""
    examined = due = 0
    for value in list(values.values()):
        examined += 1
        if not value or value.get("status") != "running":
            continue
        due += len(overdue(WorkflowState.model_validate(value), now))
    return examined, due


def per_scan(work: Any, scans: int) -> float:
    started = time.perf_counter()
    for _ in range(scans):
        work()
    return (time.perf_counter() - started) / scans


def measure(pending: int, finished: int, scans: int, rounds: int) -> tuple[float, float]:
    """Seconds per scan, full and indexed (medians of ``rounds``); prints one JSON line."""
    values = table(pending, finished)
    index = DeadlineIndex()
    index.rebuild(values.items())
    now = datetime.now(UTC)
    full_examined, full_due = full_scan(values, now)
    before = index.cost.examined
    assert index.due(now.timestamp()) == [], "nothing is due yet"
    assert full_due == 0, "nothing is due yet"
    full = [per_scan(lambda: full_scan(values, now), max(1, scans // 10)) for _ in range(rounds)]
    indexed = [per_scan(lambda: index.due(now.timestamp()), scans) for _ in range(rounds)]
    result = (statistics.median(full), statistics.median(indexed))
    emit({
        "pending": pending, "finished": finished, "waiting_deadlines": len(index),
        "full_scan_ms": round(result[0] * 1000, 3), "index_scan_ms": round(result[1] * 1000, 5),
        "full_scan_examined": full_examined,
        "index_scan_examined": index.cost.examined - before,
        "rebuild_examined": index.cost.rebuild_examined,
    })  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", default="1000,10000", help="comma-separated wait counts")
    parser.add_argument("--finished", type=int, default=10_000)
    parser.add_argument("--scans", type=int, default=20, help="scans timed per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    figures: dict[int, tuple[float, float]] = {}
    for pending in [int(n) for n in args.pending.split(",")]:
        figures[pending] = measure(pending, args.finished, args.scans, args.rounds)
    smallest, largest = min(figures), max(figures)
    emit({
        "pending": largest,
        "full_scan_ms": round(figures[largest][0] * 1000, 3),
        "index_scan_ms": round(figures[largest][1] * 1000, 5),
        "ratio": round(figures[largest][0] / max(figures[largest][1], 1e-9), 1),
        "index_growth": round(figures[largest][1] / max(figures[smallest][1], 1e-9), 2),
    })  # fmt: skip


if __name__ == "__main__":
    main()
