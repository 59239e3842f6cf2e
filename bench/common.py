"""What the benches share: the last-line JSON output, a typical task, and percentiles.

Imported by the bench_*.py scripts (run as ``python bench/<name>.py``, so bench/ is on the path).
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from expediter.events import Producer, TaskEvent


def emit(document: dict[str, Any]) -> None:
    """One JSON line on stdout; a bench's last one carries its ``ratio``."""
    print(json.dumps(document), flush=True)


def task_event(n: int) -> TaskEvent:
    """A typical ~300-byte task, with 64 workflows interleaved."""
    return TaskEvent(
        producer=Producer(name="bench", version="0"), workflow_id=f"wf-{n % 64:04d}",
        step_id=f"s{n}", capability="noop",
        input={"field_id": f"field-{n % 1000}", "depth_cm": 30, "crop": "wheat"},
    )  # fmt: skip


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``samples``."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
