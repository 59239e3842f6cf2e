"""Live lag from the broker: each partition's latest offset and the group's committed offset.

:class:`LagSampler` is an async context manager holding one admin client and one group-less
consumer; :meth:`LagSampler.sample` reads, for one task topic and consumer group, what KEDA's
Kafka scaler reads at each poll (kafka_scaler.go ``getConsumerOffsets`` and
``getProducerOffsets``): the latest offset of every partition and the group's committed offset,
None where the group has none. The latest offsets are read as KEDA reads them, at isolation level
read_uncommitted (the high watermark).

One deviation, on by default and reported per partition: a transactional producer (the
orchestrator's exactly-once Faust app) leaves a commit marker after its records, and a worker
commits ``last record + 1``, so KEDA would see a lag of 1 on such a partition forever and never
scale to zero. With ``skip_markers`` the sampler probes each partition whose gap is at most
``MARKER_PROBE_GAP`` with a read_committed fetch from the committed offset: when no record comes
back and the fetch position reaches the latest offset, the gap holds only control records and
:meth:`LagSample.effective_committed` counts it as consumed. ``committed`` stays what the group
committed. The root fix is a worker that commits its position past the markers; then KEDA on a
cluster agrees too.

Who calls it: :class:`expediter.supervising.running.Supervisor` at each polling interval, and
``expediter watch`` at each refresh.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from expediter.errors import ConfigurationError
from expediter.messaging import client_options, connected
from expediter.settings import KafkaSettings

__all__ = ["MARKER_PROBE_GAP", "LagSample", "LagSampler", "MissingTopicError"]

MARKER_PROBE_GAP = 3
"""A gap this small (committed to latest) may be transaction markers only; larger ones are lag."""
COORDINATOR_ATTEMPTS = 20
"""Tries (0.5 s apart) to read a group's offsets while the coordinator is still loading."""
_PROBE_SECONDS = 2.0


class MissingTopicError(ConfigurationError):
    """The task topic does not exist (yet)."""


@dataclass(frozen=True)
class LagSample:
    """One read of a topic's and a group's offsets, per partition in partition order."""

    topic: str
    group: str
    at: float
    """time.time() when the offsets were read."""
    latest: tuple[int, ...]
    committed: tuple[int | None, ...]
    markers_only: tuple[bool, ...] = ()
    """Per partition: the gap between committed and latest holds only transaction markers."""

    def effective_committed(self) -> tuple[int | None, ...]:
        """``committed``, with a gap of markers only counted as consumed."""
        if not self.markers_only:
            return self.committed
        return tuple(
            latest if markers else committed
            for latest, committed, markers in zip(
                self.latest, self.committed, self.markers_only, strict=True
            )
        )

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

    def __init__(self, kafka: KafkaSettings, *, skip_markers: bool = True) -> None:
        self.kafka = kafka
        self.skip_markers = skip_markers
        self._stack = AsyncExitStack()
        self._admin: Any = None
        self._consumer: Any = None
        self._prober: Any = None
        self._probe_lock = asyncio.Lock()

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
            if self.skip_markers:
                self._prober = await self._stack.enter_async_context(
                    connected(
                        AIOKafkaConsumer(
                            **options,
                            group_id=None,
                            enable_auto_commit=False,
                            isolation_level="read_committed",
                        ),
                        self.kafka,
                    )
                )
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
        assert self._consumer is not None, "use LagSampler as an async context manager"
        # All-topics metadata: naming a missing topic would create it where brokers auto-create.
        cluster = await self._consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(topic)
        if not partitions:
            raise MissingTopicError(
                f"topic {topic} does not exist: run `expediter topics apply` (with --prefix "
                "when EXPEDITER_TOPIC_PREFIX is set)"
            )
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        latest, committed = await asyncio.gather(
            self._consumer.end_offsets(tps),
            self._committed_offsets(group, tps),
        )
        sample = LagSample(
            topic=topic, group=group, at=time.time(),
            latest=tuple(int(latest[tp]) for tp in tps),
            committed=tuple(_committed(committed.get(tp)) for tp in tps),
        )  # fmt: skip
        if self._prober is None:
            return sample
        markers = await self._markers_only(tps, sample)
        return replace(sample, markers_only=tuple(tp in markers for tp in tps))

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

    async def _markers_only(self, tps: list[TopicPartition], sample: LagSample) -> set[Any]:
        gaps = {
            tp: (committed, latest)
            for tp, latest, committed in zip(tps, sample.latest, sample.committed, strict=True)
            if committed is not None and 0 < latest - committed <= MARKER_PROBE_GAP
        }
        if not gaps:
            return set()
        async with self._probe_lock:  # one assignment at a time on the shared probe consumer
            prober = self._prober
            prober.assign(list(gaps))
            for tp, (committed, _) in gaps.items():
                prober.seek(tp, committed)
            # Fetch until each partition shows a record (real lag) or its position reaches the
            # latest offset (markers only); a partition still unsure at the deadline counts as
            # lag, as KEDA would count it.
            found: set[Any] = set()
            lagging: set[Any] = set()
            deadline = time.monotonic() + _PROBE_SECONDS
            while time.monotonic() < deadline and len(found) + len(lagging) < len(gaps):
                batches = await prober.getmany(*gaps, timeout_ms=100)
                for tp, (_, latest) in gaps.items():
                    if tp in found or tp in lagging:
                        continue
                    if batches.get(tp):
                        lagging.add(tp)
                    elif await prober.position(tp) >= latest:
                        found.add(tp)
            # Left assigned: with aiokafka 0.12 an unassign here can hang the consumer's stop.
        return found

    async def sample_all(self, pairs: Sequence[tuple[str, str]]) -> list[LagSample]:
        """:meth:`sample` for each (topic, group), concurrently, in order."""
        return list(await asyncio.gather(*(self.sample(t, g) for t, g in pairs)))


def _committed(entry: Any) -> int | None:
    # The broker answers -1 for a partition the group never committed on.
    if entry is None or entry.offset is None or entry.offset < 0:
        return None
    return int(entry.offset)
