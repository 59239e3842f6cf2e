"""Pending work per capability, kept incrementally as offset-indexed running sums.

For each partition of a task topic, :class:`PartitionSums` holds the running sum of the
estimated tokens of every record from a ``base`` offset on: ``sums[i]`` is the work of the
records at offsets ``base .. base + i - 1``. A record read from the topic appends one sum; the
group's committed offset selects a prefix. The pending work of the partition is then one
subtraction::

    pending = sums[indexed_end - base] - sums[committed - base]

and the records the tail has not read yet (between the indexed end and the high watermark) count
at the mean estimate. Nothing is re-read on a poll: a poll costs O(partitions), a new record O(1),
and the prefix below the committed offset is dropped in chunks (amortised O(1) a record).

How it scales with 1M pending tasks: one 8-byte integer per pending record (``array('q')``),
8 MB for a million, whatever their sizes; a poll is one subtraction per partition; the only pass
over the records is the tail's single read of each as it arrives (or, at start-up, of those
already pending, from the committed offset on). Records below the committed offset are never
read.

Pure: offsets and estimates come from the caller. Who calls it: :mod:`expediter.scaler`
(``expediter scaler``) feeds records and committed offsets; the bench and tests feed their own.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass

from expediter.errors import ConfigurationError

__all__ = ["PartitionSums", "PendingWork", "WorkReading"]

_TRIM_AT = 4096
"""Drop the prefix below the committed offset once it is this long (and half the array)."""


class PartitionSums:
    """One partition's running sums of estimated tokens, from ``base`` on."""

    def __init__(self, base: int = 0) -> None:
        if base < 0:
            raise ConfigurationError(f"base offset must be >= 0, got {base}")
        self.base = base
        self._sums = array("q", [0])

    @property
    def end(self) -> int:
        """The offset after the last indexed record: where the tail reads next."""
        return self.base + len(self._sums) - 1

    @property
    def indexed(self) -> int:
        """Records indexed (from ``base`` to ``end``)."""
        return len(self._sums) - 1

    def append(self, offset: int, tokens: int) -> None:
        """The record at ``offset`` is expected to cost ``tokens``.

        Offsets may skip (compaction, transaction markers): the skipped ones cost nothing. A
        record at or below an indexed offset was already counted and is ignored (a re-read).
        """
        if tokens < 0:
            raise ConfigurationError(f"tokens must be >= 0, got {tokens} at offset {offset}")
        if offset < self.end:
            return
        last = self._sums[-1]
        self._sums.extend([last] * (offset - self.end))  # skipped offsets: no work
        self._sums.append(last + tokens)

    def advance(self, offset: int) -> None:
        """The tail's position reached ``offset`` past no record (transaction markers, or
        records it skipped): those offsets cost nothing and are no longer unread."""
        if offset > self.end:
            self._sums.extend([self._sums[-1]] * (offset - self.end))

    def restart(self, base: int) -> None:
        """Forget everything and index from ``base`` (the tail jumped, e.g. after retention)."""
        self.base = base
        self._sums = array("q", [0])

    def pending(self, committed: int | None, mean: float = 0.0, latest: int | None = None) -> float:
        """Tokens of the records at ``committed`` and after.

        ``committed`` None (the group has none) counts from ``base``. Records between the
        indexed end and ``latest`` (the high watermark), not read yet, count ``mean`` each.
        """
        start = self.base if committed is None else max(committed, self.base)
        end = self.end
        counted = 0 if start >= end else self._sums[end - self.base] - self._sums[start - self.base]
        unread = 0 if latest is None else max(0, latest - max(end, start))
        return counted + unread * mean

    def trim(self, committed: int) -> None:
        """Drop sums below ``committed`` once that prefix is large: memory stays O(pending)."""
        drop = min(committed, self.end) - self.base
        if drop >= _TRIM_AT and drop * 2 >= len(self._sums):
            offset = self._sums[drop]
            self._sums = array("q", (s - offset for s in self._sums[drop:]))
            self.base += drop


@dataclass(frozen=True)
class WorkReading:
    """Pending work of one consumer group on one topic at one poll."""

    tokens: float
    """Estimated tokens of every record not committed yet."""
    records: int
    """Records not committed yet (the lag, counted as KEDA counts it with an offset)."""
    per_partition: tuple[float, ...]


class PendingWork:
    """The running sums of every partition of one task topic, and the mean estimate."""

    def __init__(self, partitions: int) -> None:
        if partitions < 1:
            raise ConfigurationError(f"partitions must be >= 1, got {partitions}")
        self.partitions = [PartitionSums() for _ in range(partitions)]
        self._records = 0
        self._tokens = 0

    def start_at(self, partition: int, offset: int) -> None:
        """Index ``partition`` from ``offset`` (the group's committed offset at start-up)."""
        self.partitions[partition].restart(offset)

    def add(self, partition: int, offset: int, tokens: int) -> None:
        """One record read by the tail."""
        sums = self.partitions[partition]
        before = sums.end
        sums.append(offset, tokens)
        if sums.end != before:
            self._records += 1
            self._tokens += tokens

    @property
    def mean(self) -> float:
        """The mean estimate of the records indexed so far (for those not read yet)."""
        return self._tokens / self._records if self._records else 0.0

    def read(
        self,
        committed: Mapping[int, int | None],
        latest: Mapping[int, int] | None = None,
        *,
        mean: float | None = None,
    ) -> WorkReading:
        """Pending work at the group's ``committed`` offsets (a partition left out: none).

        ``latest`` (high watermarks) adds the records the tail has not read yet, at ``mean``
        each (default: the mean of those indexed).
        """
        parts: list[float] = []
        records = 0
        mean = self.mean if mean is None else mean
        for p, sums in enumerate(self.partitions):
            done = committed.get(p)
            high = None if latest is None else latest.get(p)
            parts.append(sums.pending(done, mean, high))
            top = sums.end if high is None else max(high, sums.end)
            records += max(0, top - (sums.base if done is None else done))
            if done is not None:
                sums.trim(done)
        return WorkReading(sum(parts), records, tuple(parts))
