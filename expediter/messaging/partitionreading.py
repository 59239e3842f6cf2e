"""Reading offset ranges of partitions without a consumer group, and the records of one key.

:class:`PartitionReader` holds one consumer with no group: partitions are assigned by hand, so
no group's offsets move and no rebalance reaches a running worker. It reads at isolation level
read_committed: the records of an aborted transaction (a worker killed mid-batch) never
happened, so they are not history, and the end of a partition is its last stable offset.

- :meth:`PartitionReader.read` yields the records of offset ranges, each partition in offset
  order, that a filter accepts (:meth:`~PartitionReader.read_batches` a fetched batch at a
  time); a read that stops moving raises instead of hanging.
- :meth:`PartitionReader.read_key` reads the records of one key: only the partition the key
  hashes to (:func:`~expediter.messaging.topology.partition_for_key`), between two offsets (by
  default all that the partition holds now).

Called by ``expediter status`` (expediter.orchestrator.submitting, ``read_status``) and by the
history reader of ``replay``, ``trace``, ``diff`` and ``dlq`` (expediter.replaying.reading).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Self, TypeAlias

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from expediter.errors import BrokerError, ExpediterError
from expediter.messaging.connecting import client_options, connected
from expediter.messaging.topology import TopicMetadata, partition_for_key
from expediter.settings import KafkaSettings

__all__ = ["FETCH_BYTES", "PartitionRange", "PartitionReader", "Progress", "Record"]

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Progress = Callable[[int], None]
"""Called with how many more offsets of a read were passed; drives a progress bar."""

FETCH_BYTES = 8 * 1024 * 1024
"""Per partition and fetch: history is read in bulk, not record by record."""
_IDLE_SECONDS = 30.0


@dataclass(frozen=True)
class PartitionRange:
    """Offsets ``start`` (inclusive) to ``end`` (exclusive) of one partition."""

    partition: int
    start: int
    end: int

    @property
    def count(self) -> int:
        return max(self.end - self.start, 0)


class PartitionReader:
    """Reads ranges of partitions over one group-less consumer; an async context manager."""

    def __init__(self, settings: KafkaSettings, *, fetch_bytes: int = FETCH_BYTES) -> None:
        self.settings = settings
        self.fetch_bytes = fetch_bytes
        self._stack: AsyncExitStack | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._metadata: TopicMetadata | None = None

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            consumer = await stack.enter_async_context(
                connected(
                    AIOKafkaConsumer(
                        **client_options(self.settings),
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
            self._consumer = consumer
            self._metadata = TopicMetadata(consumer._client)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        self._consumer = self._metadata = None
        if stack is not None:
            await stack.aclose()

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise ExpediterError("this reader is not started: use `async with` first")
        return self._consumer

    @property
    def metadata(self) -> TopicMetadata:
        """The cluster's topics and their partitions, read once and kept."""
        if self._metadata is None:
            raise ExpediterError("this reader is not started: use `async with` first")
        return self._metadata

    async def bounds(
        self, tps: Sequence[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """(first offset held, end offset) of each partition, as of now."""
        try:
            begins, ends = await asyncio.gather(
                self.consumer.beginning_offsets(tps), self.consumer.end_offsets(tps)
            )
        except KafkaError as exc:
            topics = ", ".join(sorted({tp.topic for tp in tps}))
            raise BrokerError(f"reading the offsets of {topics} failed: {exc!r}") from exc
        return dict(begins), dict(ends)

    async def read_key(
        self,
        topic: str,
        key: bytes,
        *,
        match: bytes | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> list[Record]:
        """The records of ``key`` (or keyed ``match``, when the records of ``key`` are stored
        under another key in its partition, as a Faust table's changelog is), from ``start`` to
        ``end`` (exclusive) of the partition ``key`` hashes to; by default all it holds now."""
        tp = TopicPartition(topic, partition_for_key(key, await self.metadata.require(topic)))
        if start is None or end is None:
            begins, ends = await self.bounds([tp])
            start = begins[tp] if start is None else start
            end = ends[tp] if end is None else end
        wanted = match if match is not None else key
        span = PartitionRange(tp.partition, start, end)
        return [r async for r in self.read(topic, [span], accept=lambda r: r.key == wanted)]

    async def read(
        self,
        topic: str,
        ranges: Sequence[PartitionRange],
        *,
        accept: Callable[[Record], bool] | None = None,
        progress: Progress | None = None,
        batch: int = 10_000,
    ) -> AsyncIterator[Record]:
        """The records of ``ranges`` of ``topic`` that ``accept`` (if given) accepts, each
        partition in offset order."""
        async for records in self.read_batches(
            topic, ranges, accept=accept, progress=progress, batch=batch
        ):
            for record in records:
                yield record

    async def read_batches(
        self,
        topic: str,
        ranges: Sequence[PartitionRange],
        *,
        accept: Callable[[Record], bool] | None = None,
        progress: Progress | None = None,
        batch: int = 10_000,
    ) -> AsyncIterator[list[Record]]:
        """What :meth:`read` yields, a fetched batch of one partition at a time (never empty).

        For readers whose cost is per record (``replay --json``): a batch spares them a turn of
        an async generator per record."""
        wanted = {TopicPartition(topic, r.partition): r for r in ranges if r.count}
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
                    records = batches.get(tp)
                    if records:
                        if records[-1].offset >= end:
                            records = [record for record in records if record.offset < end]
                        if accept is not None:
                            records = [record for record in records if accept(record)]
                        if records:
                            yield records
                    # The position passes transaction markers too, which no record reaches.
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
                        f"reading {topic} made no progress for {_IDLE_SECONDS:.0f}s "
                        f"at {', '.join(f'p{tp.partition}@{done[tp]}' for tp in behind)}; "
                        "check the broker"
                    )
        except KafkaError as exc:
            raise BrokerError(f"reading {topic} failed: {exc!r}") from exc
        finally:
            consumer.assign([])
