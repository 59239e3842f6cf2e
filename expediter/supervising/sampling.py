"""Live lag from the broker: each partition's latest offset and the group's committed offset.

:class:`LagSampler` is an async context manager holding one admin client and one group-less
consumer; :meth:`LagSampler.sample` reads, for one task topic and consumer group, what KEDA's
Kafka scaler reads at each poll (kafka_scaler.go ``getConsumerOffsets`` and
``getProducerOffsets``): the latest offset of every partition and the group's committed offset,
None where the group has none. The latest offsets are read as KEDA reads them, at isolation level
read_uncommitted (the high watermark).

A transactional producer (the orchestrator) leaves a commit marker after its records; the worker
commits its position past such markers once a partition is idle, so an idle agent reads lag 0
here as it does on a cluster (expediter.worker.working, ``_commit_past_markers``).

Who calls it: :class:`expediter.supervising.running.Supervisor` at each polling interval, and
``expediter watch`` at each refresh.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from expediter.messaging import client_options, connected
from expediter.messaging.topology import MissingTopicError, TopicMetadata
from expediter.settings import KafkaSettings

__all__ = ["LagSample", "LagSampler", "MissingTopicError"]

COORDINATOR_ATTEMPTS = 120
"""Tries (0.5 s apart) to read a group's offsets while the coordinator is still loading: a
fresh local broker that has just created a few hundred partitions (``make demo``) took longer
than 10 s on a loaded machine."""
METADATA_MAX_AGE = 0.5
"""Seconds a read of the topics' partitions serves: the samples of one round
(:meth:`LagSampler.sample_all`) share one read, and each poll (1 s apart at the least) reads
again, so a topic's raised partitions count at the next poll, as in KEDA's scaler."""


@dataclass(frozen=True)
class LagSample:
    """One read of a topic's and a group's offsets, per partition in partition order."""

    topic: str
    group: str
    at: float
    """time.time() when the offsets were read."""
    latest: tuple[int, ...]
    committed: tuple[int | None, ...]

    @property
    def partitions(self) -> int:
        return len(self.latest)

    @property
    def produced(self) -> int:
        """The sum of the latest offsets: records ever written (for the in rate)."""
        return sum(self.latest)

    @property
    def consumed(self) -> int:
        """The sum of committed offsets, a partition without one counting 0 (the out rate)."""
        return sum(c or 0 for c in self.committed)


class LagSampler:
    """Reads offsets for any number of (topic, group) pairs over two long-lived clients."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self._stack = AsyncExitStack()
        self._admin: Any = None
        self._consumer: Any = None
        self._metadata: TopicMetadata | None = None

    async def __aenter__(self) -> LagSampler:
        options = client_options(self.kafka)
        try:
            self._admin = await self._stack.enter_async_context(
                connected(AIOKafkaAdminClient(**options), self.kafka)
            )
            self._consumer = await self._stack.enter_async_context(
                connected(
                    AIOKafkaConsumer(
                        **options,
                        group_id=None,
                        enable_auto_commit=False,
                        isolation_level="read_uncommitted",
                    ),
                    self.kafka,
                )
            )
            self._metadata = TopicMetadata(self._consumer._client, max_age=METADATA_MAX_AGE)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    async def sample(self, topic: str, group: str) -> LagSample:
        """The latest and committed offsets of every partition of ``topic`` for ``group``."""
        assert self._metadata is not None, "use LagSampler as an async context manager"
        # MissingTopicError when the topic does not exist (yet).
        count = await self._metadata.require(topic)
        tps = [TopicPartition(topic, p) for p in range(count)]
        latest, committed = await asyncio.gather(
            self._consumer.end_offsets(tps),
            self._committed_offsets(group, tps),
        )
        return LagSample(
            topic=topic, group=group, at=time.time(),
            latest=tuple(int(latest[tp]) for tp in tps),
            committed=tuple(_committed(committed.get(tp)) for tp in tps),
        )  # fmt: skip

    async def _committed_offsets(self, group: str, tps: list[TopicPartition]) -> Any:
        # A fresh cluster creates __consumer_offsets on the first group request and answers
        # COORDINATOR_NOT_AVAILABLE meanwhile; a retriable error gets a few seconds.
        assert self._admin is not None
        for attempt in range(COORDINATOR_ATTEMPTS):
            try:
                return await self._admin.list_consumer_group_offsets(group, partitions=tps)
            except KafkaError as exc:
                if not exc.retriable or attempt == COORDINATOR_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.5)
        raise AssertionError("unreachable")

    async def sample_or_idle(self, topic: str, group: str) -> LagSample:
        """:meth:`sample`, but a topic that does not exist reads as one idle partition: a retry
        tier nobody created holds no task (a worker whose tier topics are missing runs without
        tiers, :mod:`expediter.worker.delaying`)."""
        try:
            return await self.sample(topic, group)
        except MissingTopicError:
            return LagSample(topic=topic, group=group, at=time.time(), latest=(0,), committed=(0,))

    async def sample_all(self, pairs: Sequence[tuple[str, str]]) -> list[LagSample]:
        """:meth:`sample` for each (topic, group), concurrently, in order."""
        return list(await asyncio.gather(*(self.sample(t, g) for t, g in pairs)))


def _committed(entry: Any) -> int | None:
    # The broker answers -1 for a partition the group never committed on.
    if entry is None or entry.offset is None or entry.offset < 0:
        return None
    return int(entry.offset)
