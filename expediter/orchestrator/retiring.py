"""When a finished workflow leaves the table: an index of finished workflows by the moment their
retention ends, per table partition.

A finished workflow stays in the table for ``finished_retention_seconds`` (a late result, a
resubmitted start or a decision still finds it and is recorded against it), then its entry is
deleted: a tombstone in the table's changelog, in the transaction of a record handled on the
same partition (:mod:`expediter.orchestrator.running`), so the deletion and everything else that
record caused commit or abort together. Its history stays in ``workflows.events`` and (until
compaction) in the changelog, where ``expediter status`` and ``trace`` read it.

Without this the table grew by every workflow ever run (about 12.6 KB of RSS each), and a
restart replayed all of them before the first new workflow could move.

This index is a cache of the table, like :class:`~expediter.orchestrator.scheduling.DeadlineIndex`:
updated from each saved state (:meth:`RetentionIndex.track`) and rebuilt from the table after
each rebalance. Read without pydantic. Pure: called by :mod:`expediter.orchestrator.running`.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

__all__ = ["FINISHED", "NUDGE_AFTER_SECONDS", "Nudging", "RecentlyRetired", "RetentionIndex",
           "retire_at"]  # fmt: skip

FINISHED = ("completed", "failed")
"""A workflow's statuses once it has ended."""


def retire_at(value: Mapping[str, Any] | None, retention: float) -> float | None:
    """POSIX seconds at which the workflow whose table value is ``value`` may leave the table;
    None while it runs (or for a value without ``finished_at``)."""
    if not value or value.get("status") not in FINISHED:
        return None
    finished = value.get("finished_at")
    if not finished:
        return None
    return datetime.fromisoformat(finished).timestamp() + retention


class RetentionIndex:
    """Finished workflows of the partitions this replica holds, soonest retirement first."""

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self._heaps: dict[int, list[tuple[float, str]]] = {}
        self._at: dict[str, tuple[int, float]] = {}

    def __len__(self) -> int:
        """Finished workflows waiting to leave the table."""
        return len(self._at)

    def partitions(self) -> list[int]:
        """Partitions that hold a finished workflow."""
        return [p for p, heap in self._heaps.items() if heap]

    def clear(self) -> None:
        """Forget everything (a rebalance: the caller tracks the table's entries again)."""
        self._heaps, self._at = {}, {}

    def track(self, workflow_id: str, partition: int, value: Mapping[str, Any] | None) -> None:
        """The workflow's table value is now ``value`` (None: it left the table)."""
        at = retire_at(value, self.retention)
        known = self._at.get(workflow_id)
        if at is None:
            self._at.pop(workflow_id, None)  # its heap entry is dropped as stale when popped
            return
        if known == (partition, at):
            return
        self._at[workflow_id] = (partition, at)
        heapq.heappush(self._heaps.setdefault(partition, []), (at, workflow_id))

    def next_due(self, partition: int) -> tuple[float, str] | None:
        """The partition's soonest (retire at, workflow id), or None."""
        heap = self._heaps.get(partition)
        while heap:
            at, workflow_id = heap[0]
            if self._at.get(workflow_id) == (partition, at):
                return at, workflow_id
            heapq.heappop(heap)  # stale: retired, tracked again, or running again
        return None

    def due(self, partition: int, now: float, limit: int) -> list[str]:
        """Pop up to ``limit`` workflows of ``partition`` whose retention ended by ``now``.
        The caller deletes them from the table (and calls :meth:`track` with None)."""
        found: list[str] = []
        while len(found) < limit:
            head = self.next_due(partition)
            if head is None or head[0] > now:
                break
            heapq.heappop(self._heaps[partition])
            del self._at[head[1]]
            found.append(head[1])
        return found


NUDGE_AFTER_SECONDS = 1.0
"""A partition whose oldest due retirement has waited this long (no record came to carry it)
gets a nudge from the timer; at most one per partition per this long."""


class Nudging:
    """Which partitions need a nudge: retirements are written in the transaction of a record
    handled on their partition, so on a partition where no record comes the deadline timer
    sends one (an ``expire`` without a step, for the partition's soonest due workflow)."""

    def __init__(self, after: float = NUDGE_AFTER_SECONDS) -> None:
        self.after = after
        self._last: dict[int, float] = {}  # partition -> when it was last nudged

    def due(self, retention: RetentionIndex, now: float) -> list[str]:
        """The workflow to name in each nudge due at ``now``, one per partition at most."""
        found = []
        for partition in retention.partitions():
            head = retention.next_due(partition)
            if head is None or head[0] + self.after > now:
                continue
            if self._last.get(partition, 0.0) + self.after > now:
                continue
            self._last[partition] = now
            found.append(head[1])
        return found


class RecentlyRetired:
    """The ids of the last ``size`` workflows this replica retired, so that a late record for
    one is logged with its reason (retired) rather than as an id never seen. Memory only, and
    bounded: after a restart such a record is logged as unknown, and ignored all the same."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, workflow_id: str) -> None:
        self._ids[workflow_id] = None
        self._ids.move_to_end(workflow_id)
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._ids
