"""What a copied task's deadline becomes: a re-run or a redrive happens after the fact.

A task's ``deadline`` says until when its work is useful, counted from when it was first
published. A copy made later (a shadow re-run, a redrive of a dead letter) that kept it would
come back ``expired`` every time the worker saw it past that moment, without running. So:

- a shadow re-run (:mod:`expediter.replaying.rerunning`) clears the deadline: it is debugging,
  after the fact, and its shadow worker may start much later; the handler's own time limit
  (``max_task_seconds``) still bounds each run;
- a redrive (:mod:`expediter.replaying.deadletters`) is a new attempt at live work: it gets a
  fresh deadline of the original length (``deadline - created_at``), counted from the redrive;
  ``--keep-deadline`` keeps the original instead.

Either way the copy carries the original in the header ``expediter-original-deadline``, and only
the ``deadline`` field of the JSON changes (fields this reader does not know go back untouched).
Called by the rerun and redrive modules.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from expediter.events import TaskEvent

__all__ = ["ORIGINAL_DEADLINE_HEADER", "fresh_deadline", "iso_deadline", "with_deadline"]

ORIGINAL_DEADLINE_HEADER = "expediter-original-deadline"
"""On a copied task whose deadline was cleared or moved: the deadline it had, ISO-8601."""


def iso_deadline(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def fresh_deadline(task: TaskEvent, now: datetime) -> datetime | None:
    """The task's original budget counted from ``now``; None when it had no deadline, or one
    not after its creation (no budget to give again)."""
    if task.deadline is None:
        return None
    budget = task.deadline - task.created_at
    return now + budget if budget.total_seconds() > 0 else None


def with_deadline(document: dict[str, Any], deadline: datetime | None) -> bytes:
    """``document`` (a task's JSON) with its deadline set (None: cleared), re-encoded."""
    document["deadline"] = iso_deadline(deadline) if deadline is not None else None
    return json.dumps(document, separators=(",", ":")).encode()
