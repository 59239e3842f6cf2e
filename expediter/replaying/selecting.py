"""What a history read covers: a :class:`Selection` of one topic, and the :class:`RangePlan` it
becomes.

A selection names a topic and filters that combine: partitions, offsets, a time range, a key or
a workflow id. :func:`check_shape` refuses a selection that cannot select anything before the
cluster is asked; :func:`chosen_partitions` says which partitions it reads (a key's records are
all in the partition the key hashes to); :meth:`Selection.accepts` is the key and workflow
filter applied to each record read. The plan (exact offsets per partition) is made by
:mod:`expediter.replaying.planning`.

Called by the history reader (:mod:`expediter.replaying.reading`), the replay, trace, diff and
DLQ tools of this package, ``expediter replay`` (expediter.cli.replay) and the replay bench.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from expediter.errors import ConfigurationError
from expediter.messaging.partitionreading import PartitionRange, Record
from expediter.messaging.topology import partition_for_key
from expediter.replaying.times import iso

__all__ = ["RangePlan", "Selection", "check_shape", "chosen_partitions"]


@dataclass(frozen=True)
class Selection:
    """What to read from ``topic``. Filters combine; unset ones select everything."""

    topic: str
    partitions: tuple[int, ...] = ()
    """Empty: every partition, or only the key's partition when ``key``/``workflow_id`` is set."""
    from_offset: int | None = None
    """Inclusive, in each selected partition."""
    to_offset: int | None = None
    """Inclusive, in each selected partition."""
    since: datetime | None = None
    """Inclusive: records with a timestamp at or after it."""
    until: datetime | None = None
    """Exclusive: records with a timestamp before it."""
    key: str | None = None
    workflow_id: str | None = None
    """Records keyed by it, or whose JSON value's ``workflow_id`` is it."""
    all_partitions: bool = False
    """With a key: read every partition, not only the key's (for topics keyed another way, or
    whose partitions were raised after the records were written)."""
    clamp: bool = False
    """Start silently at what the topic still holds instead of refusing a start before it; for
    internal scans bounded by a time guessed from other records."""
    allow_empty: bool = False
    """An empty range is an answer (a trace's topic without that workflow), not an error."""

    def describe(self) -> str:
        parts = [self.topic]
        if self.partitions:
            parts.append(f"partitions {','.join(map(str, self.partitions))}")
        if self.from_offset is not None or self.to_offset is not None:
            low = "" if self.from_offset is None else self.from_offset
            high = "" if self.to_offset is None else self.to_offset
            parts.append(f"offsets {low}..{high}")
        if self.since is not None:
            parts.append(f"since {iso(self.since)}")
        if self.until is not None:
            parts.append(f"until {iso(self.until)}")
        if self.key is not None:
            parts.append(f"key {self.key!r}")
        if self.workflow_id is not None:
            parts.append(f"workflow {self.workflow_id!r}")
        return ", ".join(parts)

    @property
    def match_key(self) -> bytes | None:
        chosen = self.key if self.key is not None else self.workflow_id
        return chosen.encode() if chosen is not None else None

    def accepts(self, record: Record) -> bool:
        """Whether ``record`` passes the key and workflow filters (offsets and times are the
        plan's business)."""
        key = self.match_key
        if key is None or record.key == key:
            return True
        return self.workflow_id is not None and _names_workflow(record.value, self.workflow_id)


@dataclass(frozen=True)
class RangePlan:
    """Exact offsets to read; ``total`` counts offsets, before key or workflow filters."""

    selection: Selection
    ranges: tuple[PartitionRange, ...]
    partitions: int
    """How many partitions the topic has."""

    @property
    def total(self) -> int:
        return sum(r.count for r in self.ranges)

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.selection.topic,
            "ranges": [
                {"partition": r.partition, "start": r.start, "end": r.end}
                for r in self.ranges
                if r.count
            ],
            "offsets": self.total,
        }


def check_shape(selection: Selection) -> None:
    """Refuse a selection that selects nothing whatever the topic holds."""
    if selection.from_offset is not None and selection.from_offset < 0:
        raise ConfigurationError("--from-offset must be 0 or more")
    if (
        selection.from_offset is not None
        and selection.to_offset is not None
        and selection.to_offset < selection.from_offset
    ):
        raise ConfigurationError(
            f"empty range: --to-offset {selection.to_offset} is before --from-offset "
            f"{selection.from_offset}; both are inclusive"
        )
    if selection.since and selection.until and selection.until <= selection.since:
        raise ConfigurationError(
            f"empty range: --until {iso(selection.until)} is not after --since "
            f"{iso(selection.since)}"
        )
    if selection.since is not None and selection.since > datetime.now(UTC) + timedelta(minutes=1):
        raise ConfigurationError(
            f"empty range: --since {iso(selection.since)} is in the future; give a past time"
        )


def chosen_partitions(selection: Selection, count: int) -> Sequence[int]:
    """The partitions ``selection`` reads of a topic with ``count`` partitions."""
    if selection.partitions:
        unknown = sorted(p for p in set(selection.partitions) if not 0 <= p < count)
        if unknown:
            raise ConfigurationError(
                f"{selection.topic} has partitions 0..{count - 1}; there is no partition "
                f"{', '.join(map(str, unknown))}: pick one of those"
            )
        return sorted(set(selection.partitions))
    key = selection.match_key
    if key is not None and not selection.all_partitions:
        return [partition_for_key(key, count)]
    return range(count)


def _names_workflow(value: bytes | None, workflow: str) -> bool:
    # Cheap test first: most records of a large range are another workflow's.
    if not value or workflow.encode() not in value:
        return False
    try:
        document = json.loads(value)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("workflow_id") == workflow
