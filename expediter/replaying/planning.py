"""Turning a :class:`~expediter.replaying.selecting.Selection` into exact offsets to read.

End offsets are as of now; ``since``/``until`` become offsets through offsets-for-times. Bad
input is refused before anything is read or written: a partition the topic lacks, an empty
range, a start before what the topic still holds (a ``--from-offset`` below a partition's first
offset, or a ``--since`` before the topic's retention start or before records deleted from the
front), each with the value to use instead.

Called by :meth:`expediter.replaying.reading.HistoryReader.plan`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from expediter.errors import BrokerError, ConfigurationError
from expediter.messaging.partitionreading import PartitionRange, PartitionReader
from expediter.replaying.selecting import RangePlan, Selection, chosen_partitions
from expediter.replaying.times import duration_text, from_ms, iso, to_ms

__all__ = ["Retention", "plan_ranges"]

Retention = Callable[[str], Awaitable[tuple[int | None, str]]]
"""(retention.ms, cleanup.policy) of a topic; retention None when it keeps for ever."""

_GRACE = timedelta(minutes=1)


async def plan_ranges(
    selection: Selection, count: int, reader: PartitionReader, retention: Retention
) -> RangePlan:
    """The offsets ``selection`` covers in its topic of ``count`` partitions, or
    ConfigurationError saying what is wrong."""
    tps = [TopicPartition(selection.topic, p) for p in chosen_partitions(selection, count)]
    begins, ends = await reader.bounds(tps)
    starts = dict(begins)
    stops = dict(ends)
    if selection.from_offset is not None:
        for tp in tps:
            if selection.from_offset < begins[tp] and not selection.clamp:
                raise ConfigurationError(
                    f"--from-offset {selection.from_offset}: partition {tp.partition} of "
                    f"{tp.topic} starts at offset {begins[tp]} (the records before were "
                    f"deleted by retention); use --from-offset {begins[tp]} or later"
                )
            starts[tp] = max(starts[tp], selection.from_offset)
    if selection.to_offset is not None:
        for tp in tps:
            stops[tp] = min(stops[tp], selection.to_offset + 1)
    if selection.since is not None:
        found = await _offsets_for(reader, tps, selection.since)
        if not selection.clamp:
            await _check_retained(selection, retention, begins, found)
        for tp in tps:
            hit = found.get(tp)
            starts[tp] = max(starts[tp], hit.offset if hit is not None else ends[tp])
    if selection.until is not None:
        found = await _offsets_for(reader, tps, selection.until)
        for tp in tps:
            hit = found.get(tp)
            if hit is not None:
                stops[tp] = min(stops[tp], hit.offset)
    ranges = tuple(
        PartitionRange(tp.partition, starts[tp], max(stops[tp], starts[tp])) for tp in tps
    )
    plan = RangePlan(selection=selection, ranges=ranges, partitions=count)
    if plan.total == 0 and not selection.allow_empty:
        held = ", ".join(
            f"p{tp.partition} {begins[tp]}..{ends[tp] - 1}" if ends[tp] > begins[tp]
            else f"p{tp.partition} empty"
            for tp in tps
        )  # fmt: skip
        raise ConfigurationError(
            f"empty range: {selection.describe()} selects no records (the topic holds "
            f"{held}); widen the offsets or the time range, or check the partition"
        )
    return plan


async def _offsets_for(
    reader: PartitionReader, tps: list[TopicPartition], when: datetime
) -> dict[Any, Any]:
    try:
        found: dict[Any, Any] = await reader.consumer.offsets_for_times(
            {tp: to_ms(when) for tp in tps}
        )
    except KafkaError as exc:
        topic = tps[0].topic if tps else ""
        raise BrokerError(f"reading the offsets of {topic} failed: {exc!r}") from exc
    return found


async def _check_retained(
    selection: Selection,
    retention: Retention,
    begins: dict[TopicPartition, int],
    found: dict[Any, Any],
) -> None:
    """Refuse a ``since`` before what the topic still holds: the range would silently miss the
    records retention deleted."""
    assert selection.since is not None
    since = selection.since
    retention_ms, policy = await retention(selection.topic)
    if retention_ms is not None and "delete" in policy:
        oldest = datetime.now(UTC) - timedelta(milliseconds=retention_ms)
        # The grace lets `--since 7d` on a 7d topic mean "all of it": that `since` was computed
        # a moment ago. Records actually deleted are caught below.
        if since < oldest - _GRACE:
            raise ConfigurationError(
                f"--since {iso(since)} is before the retention start of {selection.topic}: "
                f"it keeps records for {duration_text(retention_ms)} (retention.ms="
                f"{retention_ms}), so nothing older than {iso(oldest)} can be there; use "
                f"--since {iso(oldest)} or later"
            )
    for tp, begin in begins.items():
        hit = found.get(tp)
        # The first record still held is at or after `since`, and earlier ones were deleted:
        # some of the deleted ones may have been in the range.
        if begin > 0 and hit is not None and hit.offset == begin and hit.timestamp > to_ms(since):
            first = from_ms(hit.timestamp)
            raise ConfigurationError(
                f"--since {iso(since)} is before the retention start of {selection.topic}: "
                f"partition {tp.partition} now starts at offset {begin} ({iso(first)}); the "
                f"records before were deleted, so the range would be incomplete; use "
                f"--since {iso(first)} or later"
            )
