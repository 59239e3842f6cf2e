"""Which deadlines are due: an index of the workflow table's deadlines, so that the timer's scan
costs what is due, not what is waiting.

The deadline itself is state: a running step's and a waiting approval's ``deadline`` is in the
workflow table (and so in its changelog), never only in memory. This index is a cache of those
deadlines in a heap. The orchestrator updates it from each state it saves
(:meth:`DeadlineIndex.track`), and rebuilds it from the table after each rebalance (the table
is restored from the changelog by then), so a restart days later finds every deadline again.

Without it the timer read every entry of the table once a second and parsed each running
workflow: with thousands of approvals waiting for days, that was thousands of parses a second
for nothing. With it, a scan pops only the entries that are due (``examined`` counts them;
``bench/bench_approvals.py`` compares both). Pure: called by :mod:`expediter.orchestrator.running`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

__all__ = ["DeadlineIndex", "Due", "deadlines_of"]

_WAITS = ("running", "waiting")
"""Step statuses with a live deadline: an agent step's attempt, an approval's round."""


class Due(NamedTuple):
    """A deadline: when, and which (workflow, step, attempt or round) it belongs to."""

    at: float
    """POSIX seconds."""
    workflow_id: str
    step_id: str
    attempt: int


def deadlines_of(value: Mapping[str, Any] | None) -> frozenset[tuple[float, str, int]]:
    """(deadline, step id, attempt) of each live wait in a table value (the JSON the table
    holds). Read without pydantic: a rebuild reads every running workflow once."""
    if not value or value.get("status") != "running":
        return frozenset()
    found = set()
    for step_id, step in (value.get("steps") or {}).items():
        deadline = step.get("deadline")
        if step.get("status") in _WAITS and deadline:
            found.add((datetime.fromisoformat(deadline).timestamp(), step_id, step["attempt"]))
    return frozenset(found)


@dataclass
class ScanCost:
    """What the scans have cost so far: entries popped, and of those, still current."""

    examined: int = 0
    due: int = 0
    rebuilds: int = 0
    rebuild_examined: int = 0
    """Table entries read by rebuilds (once per rebalance)."""


class DeadlineIndex:
    """The live deadlines of the workflows this replica holds, soonest first."""

    def __init__(self) -> None:
        self._heap: list[Due] = []
        self._live: dict[str, frozenset[tuple[float, str, int]]] = {}
        self._count = 0
        self.cost = ScanCost()

    def __len__(self) -> int:
        """Live deadlines (not counting stale heap entries)."""
        return self._count

    def track(self, workflow_id: str, value: Mapping[str, Any] | None) -> None:
        """The workflow's state changed: its live deadlines are now those of ``value``."""
        now = deadlines_of(value)
        before = self._live.get(workflow_id, frozenset())
        if now == before:
            return
        self._count += len(now) - len(before)
        if now:
            self._live[workflow_id] = now
        else:
            self._live.pop(workflow_id, None)
        for at, step_id, attempt in now - before:
            heapq.heappush(self._heap, Due(at, workflow_id, step_id, attempt))
        # Entries of ``before`` stay in the heap and are dropped as stale when popped; keep the
        # heap within a small multiple of the live entries.
        if len(self._heap) > 2 * self._count + 1024:
            self._compact()

    def rebuild(self, items: Iterable[tuple[str, Mapping[str, Any] | None]]) -> None:
        """Forget everything and read the table's ``(key, value)`` items (after a rebalance)."""
        self._heap, self._live, self._count = [], {}, 0
        self.cost.rebuilds += 1
        for workflow_id, value in items:
            self.cost.rebuild_examined += 1
            self.track(workflow_id, value)

    def due(self, now: float) -> list[Due]:
        """Pop every live deadline at or before ``now``. The caller puts back (:meth:`retry`)
        any it could not act on; the others come back through :meth:`track` if they change."""
        found: list[Due] = []
        heap = self._heap
        while heap and heap[0].at < now:
            entry = heapq.heappop(heap)
            self.cost.examined += 1
            live = self._live.get(entry.workflow_id)
            key = (entry.at, entry.step_id, entry.attempt)
            if live is None or key not in live:
                continue  # stale: the workflow moved on since
            remaining = live - {key}
            if remaining:
                self._live[entry.workflow_id] = remaining
            else:
                del self._live[entry.workflow_id]
            self._count -= 1
            self.cost.due += 1
            found.append(entry)
        return found

    def retry(self, entry: Due) -> None:
        """Put back a due deadline whose expire command was not sent."""
        live = self._live.get(entry.workflow_id, frozenset())
        key = (entry.at, entry.step_id, entry.attempt)
        if key not in live:
            self._live[entry.workflow_id] = live | {key}
            self._count += 1
            heapq.heappush(self._heap, entry)

    def _compact(self) -> None:
        self._heap = [
            Due(at, workflow_id, step_id, attempt)
            for workflow_id, live in self._live.items()
            for at, step_id, attempt in live
        ]
        heapq.heapify(self._heap)
