"""Reading any range of any topic: by partition and offsets, by time, by key or by workflow id.

A :class:`Selection` says what to read. :meth:`HistoryReader.plan` turns it into exact offset
ranges per partition (end offsets as of now; ``since``/``until`` through offsets-for-times) and
refuses bad input before anything is read or written: an unknown topic, an empty range, a start
before what the topic still holds. :meth:`HistoryReader.read` then yields the records.

It never joins a consumer group: partitions are assigned by hand, so no group's offsets move and
no rebalance reaches a running worker. Reads are read_committed: the records of an aborted
transaction (a worker killed mid-batch) never happened, so they are not history.

Called by the replay, trace, rerun, diff and dlq tools of this package and by the replay bench.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Self, TypeAlias

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord, TopicPartition

from expediter.errors import BrokerError, ConfigurationError, ExpediterError
from expediter.messaging import client_options, connected
from expediter.messaging.catalogs import parse_duration_ms
from expediter.settings import KafkaSettings

__all__ = [
    "HistoryReader",
    "PartitionRange",
    "Progress",
    "RangePlan",
    "Record",
    "Selection",
    "from_ms",
    "iso",
    "parse_when",
    "partition_for_key",
    "to_ms",
]

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Progress = Callable[[int], None]
"""Called with how many more offsets of the plan were read; drives a progress bar."""

_FETCH_BYTES = 8 * 1024 * 1024
_IDLE_SECONDS = 30.0
_GRACE = timedelta(minutes=1)


def to_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def iso(when: datetime) -> str:
    """UTC, milliseconds, ``Z``: sortable and unambiguous in logs and JSON."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_when(text: str, *, now: datetime | None = None, option: str = "--since") -> datetime:
    """A point in time from ISO 8601 (``2025-06-01T12:00``, UTC when no offset is given), epoch
    milliseconds, or a duration ago (``90s``, ``15m``, ``2h``, ``7d``)."""
    value = text.strip()
    now = now or datetime.now(UTC)
    if value.isdigit() and len(value) >= 10:
        return from_ms(int(value))
    try:
        return now - timedelta(milliseconds=parse_duration_ms(value))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"{option} {text!r} is not a time: write ISO 8601 (2025-06-01T12:00:00Z), epoch "
            "milliseconds, or a duration ago such as 15m, 2h or 7d"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def partition_for_key(key: bytes, partitions: int) -> int:
    """Where Kafka's default partitioner (murmur2, as in the Java client and aiokafka) puts
    ``key`` among ``partitions``: every event of one workflow is in that one partition."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


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


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int
    end: int
    """Exclusive."""

    @property
    def count(self) -> int:
        return max(self.end - self.start, 0)


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


class HistoryReader:
    """Reads ranges of topics without a consumer group; an async context manager.

    One admin client (metadata, configs) and one consumer (offsets, records), reused for every
    plan and read, so that ``trace`` over a dozen topics connects once.
    """

    def __init__(self, settings: KafkaSettings, *, fetch_bytes: int = _FETCH_BYTES) -> None:
        self.settings = settings
        self.fetch_bytes = fetch_bytes
        self._stack: AsyncExitStack | None = None
        self._admin: Any = None
        self._consumer: AIOKafkaConsumer | None = None
        self._topics: dict[str, int] | None = None

    async def __aenter__(self) -> Self:
        options = client_options(self.settings)
        async with AsyncExitStack() as stack:
            self._admin = await stack.enter_async_context(
                connected(AIOKafkaAdminClient(**options), self.settings)
            )
            self._consumer = await stack.enter_async_context(
                connected(
                    AIOKafkaConsumer(
                        **options,
                        group_id=None,
                        enable_auto_commit=False,
                        isolation_level="read_committed",
                        max_partition_fetch_bytes=self.fetch_bytes,
                        fetch_max_bytes=max(self.fetch_bytes * 4, 52_428_800),
                        fetch_max_wait_ms=100,
                    ),
                    self.settings,
                )
            )
            # aiokafka's group-less consumer starts a background task at start; stopped before
            # that task first runs, stop() raises CancelledError. One turn of the loop lets it.
            await asyncio.sleep(0)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        self._admin = self._consumer = None
        if stack is not None:
            await stack.aclose()

    @property
    def admin(self) -> Any:
        """The started admin client (aiokafka's admin client is untyped)."""
        if self._admin is None:
            raise ExpediterError("this HistoryReader is not started: use `async with` first")
        return self._admin

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise ExpediterError("this HistoryReader is not started: use `async with` first")
        return self._consumer

    # -- metadata -----------------------------------------------------------------------------

    async def topics(self, *, refresh: bool = False) -> dict[str, int]:
        """Every topic on the cluster and its number of partitions.

        All topics, never a request naming one: on clusters with auto-creation on, asking for a
        missing topic would create it, and a typo would become a topic.
        """
        if self._topics is None or refresh:
            try:
                described: list[dict[str, Any]] = await self.admin.describe_topics()
            except KafkaError as exc:
                raise BrokerError(f"reading the cluster's topics failed: {exc!r}") from exc
            self._topics = {
                t["topic"]: len(t["partitions"]) for t in described if t["error_code"] == 0
            }
        return self._topics

    async def require(self, topic: str) -> int:
        """The partitions of ``topic``; ConfigurationError naming close names when it is missing."""
        known = await self.topics()
        if topic in known:
            return known[topic]
        close = difflib.get_close_matches(topic, list(known), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigurationError(
            f"topic {topic!r} does not exist on {self.settings.bootstrap}{hint}: check the name "
            "and the prefix; `expediter topics list` shows the cluster's topics"
        )

    async def retention(self, topic: str) -> tuple[int | None, str]:
        """(retention.ms, cleanup.policy) of ``topic``; retention None when it keeps for ever."""
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        try:
            (response,) = await self.admin.describe_configs([resource])
        except KafkaError as exc:
            raise BrokerError(f"reading the configs of {topic} failed: {exc!r}") from exc
        error_code, error_message, _, _, entries = response.resources[0]
        if error_code:
            raise BrokerError(
                f"reading the configs of {topic} failed (error {error_code}: {error_message})"
            )
        configs = {entry[0]: entry[1] for entry in entries}
        retention = int(configs.get("retention.ms") or -1)
        return (retention if retention >= 0 else None), str(configs.get("cleanup.policy") or "")

    # -- planning -----------------------------------------------------------------------------

    async def plan(self, selection: Selection) -> RangePlan:
        """The offsets ``selection`` covers, or ConfigurationError saying what is wrong."""
        _check_shape(selection)
        count = await self.require(selection.topic)
        wanted = _partitions(selection, count)
        tps = [TopicPartition(selection.topic, p) for p in wanted]
        consumer = self.consumer
        try:
            begins, ends = await asyncio.gather(
                consumer.beginning_offsets(tps), consumer.end_offsets(tps)
            )
            starts = dict(begins)
            stops = dict(ends)
            if selection.from_offset is not None:
                for tp in tps:
                    if selection.from_offset < begins[tp] and not selection.clamp:
                        raise ConfigurationError(
                            f"--from-offset {selection.from_offset}: partition {tp.partition} "
                            f"of {tp.topic} starts at offset {begins[tp]} (the records before "
                            "were deleted by retention); use --from-offset "
                            f"{begins[tp]} or later"
                        )
                    starts[tp] = max(starts[tp], selection.from_offset)
            if selection.to_offset is not None:
                for tp in tps:
                    stops[tp] = min(stops[tp], selection.to_offset + 1)
            if selection.since is not None:
                found = await consumer.offsets_for_times({tp: to_ms(selection.since) for tp in tps})
                if not selection.clamp:
                    await self._check_retained(selection, begins, found)
                for tp in tps:
                    hit = found.get(tp)
                    starts[tp] = max(starts[tp], hit.offset if hit is not None else ends[tp])
            if selection.until is not None:
                found = await consumer.offsets_for_times({tp: to_ms(selection.until) for tp in tps})
                for tp in tps:
                    hit = found.get(tp)
                    if hit is not None:
                        stops[tp] = min(stops[tp], hit.offset)
        except KafkaError as exc:
            raise BrokerError(f"reading the offsets of {selection.topic} failed: {exc!r}") from exc
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

    async def _check_retained(
        self, selection: Selection, begins: dict[TopicPartition, int], found: dict[Any, Any]
    ) -> None:
        """Refuse a ``since`` before what the topic still holds: the range would silently miss
        the records retention deleted."""
        assert selection.since is not None
        since = selection.since
        retention_ms, policy = await self.retention(selection.topic)
        if retention_ms is not None and "delete" in policy:
            oldest = datetime.now(UTC) - timedelta(milliseconds=retention_ms)
            # The grace lets `--since 7d` on a 7d topic mean "all of it": that `since` was
            # computed a moment ago. Records actually deleted are caught below.
            if since < oldest - _GRACE:
                raise ConfigurationError(
                    f"--since {iso(since)} is before the retention start of {selection.topic}: "
                    f"it keeps records for {_duration(retention_ms)} (retention.ms="
                    f"{retention_ms}), so nothing older than {iso(oldest)} can be there; use "
                    f"--since {iso(oldest)} or later"
                )
        for tp, begin in begins.items():
            hit = found.get(tp)
            # The first record still held is at or after `since`, and earlier ones were
            # deleted: some of the deleted ones may have been in the range.
            if (
                begin > 0
                and hit is not None
                and hit.offset == begin
                and hit.timestamp > to_ms(since)
            ):
                first = from_ms(hit.timestamp)
                raise ConfigurationError(
                    f"--since {iso(since)} is before the retention start of {selection.topic}: "
                    f"partition {tp.partition} now starts at offset {begin} ({iso(first)}); the "
                    f"records before were deleted, so the range would be incomplete; use "
                    f"--since {iso(first)} or later"
                )

    # -- reading ------------------------------------------------------------------------------

    async def read(
        self, plan: RangePlan, *, progress: Progress | None = None, batch: int = 10_000
    ) -> AsyncIterator[Record]:
        """The plan's records, each partition in offset order, key and workflow filters applied."""
        selection = plan.selection
        key = selection.match_key
        workflow = selection.workflow_id
        wanted = {TopicPartition(selection.topic, r.partition): r for r in plan.ranges if r.count}
        if not wanted:
            return
        consumer = self.consumer
        consumer.assign(list(wanted))
        for tp, span in wanted.items():
            consumer.seek(tp, span.start)
        done: dict[TopicPartition, int] = {tp: span.start for tp, span in wanted.items()}
        behind = set(wanted)
        idle_since = time.monotonic()
        try:
            while behind:
                batches = await consumer.getmany(*behind, timeout_ms=200, max_records=batch)
                moved = 0
                for tp in list(behind):
                    end = wanted[tp].end
                    for record in batches.get(tp, ()):
                        if record.offset >= end:
                            break
                        if (
                            key is None
                            or record.key == key
                            or (workflow is not None and _names_workflow(record.value, workflow))
                        ):
                            yield record
                    position = min(await consumer.position(tp), end)
                    moved += position - done[tp]
                    done[tp] = position
                    if position >= end:
                        behind.discard(tp)
                        consumer.pause(tp)
                if moved:
                    idle_since = time.monotonic()
                    if progress is not None:
                        progress(moved)
                elif time.monotonic() - idle_since > _IDLE_SECONDS:
                    raise BrokerError(
                        f"reading {selection.topic} made no progress for {_IDLE_SECONDS:.0f}s "
                        f"at {', '.join(f'p{tp.partition}@{done[tp]}' for tp in behind)}; "
                        "check the broker"
                    )
        except KafkaError as exc:
            raise BrokerError(f"reading {selection.topic} failed: {exc!r}") from exc
        finally:
            consumer.assign([])

    async def records(self, plan: RangePlan, *, progress: Progress | None = None) -> list[Record]:
        return [record async for record in self.read(plan, progress=progress)]

    async def fetch(self, selection: Selection) -> list[Record]:
        """Plan and read ``selection`` in one go."""
        return await self.records(await self.plan(selection))


def _check_shape(selection: Selection) -> None:
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


def _partitions(selection: Selection, count: int) -> Sequence[int]:
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


def _duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
