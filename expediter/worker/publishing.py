"""Publishing one transaction's records: as one batch per partition, keys partitioned once.

Called by the worker's committer (:mod:`expediter.worker.working`), inside the transaction that
also commits the consumer offsets. :meth:`Publisher.publish` returns the delivery futures, which
the transaction awaits before it commits (:mod:`expediter.worker.transacting`): aiokafka fails
an undelivered batch only through its future.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import TopicPartition

from expediter.events import OutgoingRecord

__all__ = ["BATCH_BYTES", "KeyPartitions", "Publisher"]

BATCH_BYTES = 256 * 1024
"""The worker producer's batch size (``max_batch_size``): a quarter of the default
max.request.size (1 MB). At the 16 KB default a busy worker sent a produce request per 40
results."""


class KeyPartitions:
    """The producer's default partitioner (murmur2 of the key), remembered per key.

    Keys are workflow ids, which repeat, and murmur2 is pure Python in aiokafka; the answer
    depends only on the key and the partition count, so a changed count starts afresh.
    """

    _MAX_KEYS = 100_000

    def __init__(self) -> None:
        self._default = DefaultPartitioner()
        self._known: dict[tuple[str, int], dict[bytes, int]] = {}

    def __call__(self, topic: str, key: bytes | None, partitions: list[int],
                 available: list[int]) -> int:  # fmt: skip
        if key is None:
            return int(self._default(None, partitions, available))
        known = self._known.get((topic, len(partitions)))
        if known is None:
            known = self._known[(topic, len(partitions))] = {}
        partition = known.get(key)
        if partition is None:
            if len(known) >= self._MAX_KEYS:
                known.clear()
            partition = known[key] = int(self._default(key, partitions, available))
        return partition


class Publisher:
    """Sends one transaction's records as one BatchBuilder per partition (``send_batch``).

    Why not ``producer.send`` per record: it costs an await, a metadata wait, a serialise and a
    murmur2 per record, the largest share of the commit path. The records land in the same
    partitions (the default partitioner), in the same order per partition, in the same
    transaction. A record too big for a batch goes through ``send`` (after what was batched for
    its partition, to keep the order), so the producer's size checks still apply. Building
    comes first and sending after, so that no record waits on an await.
    """

    _BATCHED_MAX = BATCH_BYTES - 1024  # a record that fits in a batch, with its overhead

    def __init__(self, producer: AIOKafkaProducer, partitioner: KeyPartitions) -> None:
        self.producer = producer
        self.partitioner = partitioner
        self._builders: dict[TopicPartition, Any] = {}
        self._ready: list[tuple[TopicPartition, Any]] = []
        """Full builders and big records, in the order they must go."""
        self._partitions: dict[str, tuple[list[int], list[int]]] = {}

    async def publish(self, records: list[tuple[str, OutgoingRecord]]) -> list[asyncio.Future[Any]]:
        """Send ``records``; return their delivery futures, one per batch or big record."""
        for topic in {topic for topic, _ in records}:
            # The same lists, in the same order, that producer.send gives the partitioner.
            every = list(await self.producer.partitions_for(topic))
            available = list(self.producer.client.cluster.available_partitions_for_topic(topic))
            self._partitions[topic] = (every, available)
        for topic, record in records:
            self._add(topic, record)
        return await self._flush()

    def _add(self, topic: str, record: OutgoingRecord) -> None:
        tp = TopicPartition(topic, self.partitioner(topic, record.key, *self._partitions[topic]))
        if len(record.value) + len(record.key or b"") > self._BATCHED_MAX:
            self._seal(tp)
            self._ready.append((tp, record))
            return
        builder = self._builders.get(tp)
        if builder is None:
            builder = self._builders[tp] = self.producer.create_batch()
        if builder.append(key=record.key, value=record.value, timestamp=None,
                          headers=record.headers) is None:  # fmt: skip
            self._seal(tp)  # full: it goes as it is, and the record starts the next
            builder = self._builders[tp] = self.producer.create_batch()
            builder.append(key=record.key, value=record.value, timestamp=None,
                           headers=record.headers)  # fmt: skip

    def _seal(self, tp: TopicPartition) -> None:
        builder = self._builders.pop(tp, None)
        if builder is not None:
            self._ready.append((tp, builder))

    async def _flush(self) -> list[asyncio.Future[Any]]:
        for tp in list(self._builders):
            self._seal(tp)
        ready, self._ready = self._ready, []
        futures: list[asyncio.Future[Any]] = []
        for tp, item in ready:
            if isinstance(item, OutgoingRecord):
                future = await self.producer.send(
                    tp.topic, item.value, key=item.key, headers=item.headers,
                    partition=tp.partition,
                )  # fmt: skip
            else:
                future = await self.producer.send_batch(item, tp.topic, partition=tp.partition)
            futures.append(future)
        return futures
