"""Pending work of one capability, read from Kafka: the task topic's tail and the results.

:class:`WorkTail` reads ``tasks.<capability>`` once, record by record, from the group's committed
offsets on, and indexes each record's expected tokens (the producer's header, or the estimator's
guess) in :class:`~expediter.scaling.summing.PendingWork`. It also reads ``results`` from its end
on, and for each result of its capability calibrates the estimator (tokens per byte) and the
throughput meter (tokens per second). :meth:`WorkTail.read` then asks the broker for the group's
committed offsets and the high watermarks (two requests, whatever the backlog) and answers
with one subtraction per partition. Nothing pending is read twice.

A topic's partition count is read at start; partitions added later are picked up by a restart
of ``expediter scaler`` (a task topic's partitions change rarely, and KEDA then reads lag anyway).

Who calls it: :class:`expediter.scaler.serving.ExternalScaler`, one tail per capability, started
at the first request that names it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from contextlib import AsyncExitStack
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from expediter.messaging import TopicNames, client_options, connected
from expediter.scaling.estimating import TokenEstimator
from expediter.scaling.measuring import ThroughputMeter
from expediter.scaling.summing import PendingWork, WorkReading
from expediter.settings import KafkaSettings
from expediter.supervising.sampling import LagSampler

__all__ = ["WorkTail"]

log = logging.getLogger(__name__)


class WorkTail:
    """The pending tokens of ``capability``'s consumer group, kept up to date in the background."""

    def __init__(
        self,
        kafka: KafkaSettings,
        capability: str,
        *,
        names: TopicNames | None = None,
        estimator: TokenEstimator | None = None,
        catch_up_seconds: float = 2.0,
    ) -> None:
        self.kafka = kafka
        self.capability = capability
        self.names = names or TopicNames()
        self.topic = self.names.tasks(capability)
        self.group = self.names.group(capability)
        self.estimator = estimator or TokenEstimator()
        self.throughput = ThroughputMeter()
        self.work: PendingWork | None = None
        self._stack = AsyncExitStack()
        self._sampler: LagSampler | None = None
        self._consumer: Any = None
        self._reader: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()
        """Set once the tail has read up to the high watermarks seen at start."""
        self.catch_up_seconds = catch_up_seconds
        self._advanced = asyncio.Event()

    async def start(self) -> None:
        """Connect, read the group's committed offsets and start reading from them."""
        try:
            self._sampler = await self._stack.enter_async_context(LagSampler(self.kafka))
            sample = await self._sampler.sample(self.topic, self.group)
            self.work = PendingWork(sample.partitions)
            consumer = AIOKafkaConsumer(
                **client_options(self.kafka), group_id=None, enable_auto_commit=False,
                isolation_level="read_uncommitted",
            )  # fmt: skip
            self._consumer = await self._stack.enter_async_context(connected(consumer, self.kafka))
            tasks = [TopicPartition(self.topic, p) for p in range(sample.partitions)]
            results = [
                TopicPartition(self.names.results, p)
                for p in sorted(self._consumer.partitions_for_topic(self.names.results) or [])
            ]
            self._consumer.assign(tasks + results)
            for tp, committed in zip(tasks, sample.committed, strict=True):
                if committed is None:
                    await self._consumer.seek_to_beginning(tp)
                    start = await self._consumer.position(tp)
                else:
                    self._consumer.seek(tp, committed)
                    start = committed
                self.work.start_at(tp.partition, start)
            if results:
                await self._consumer.seek_to_end(*results)
            self._targets = dict(zip(range(sample.partitions), sample.latest, strict=True))
            self._reader = asyncio.create_task(self._read(), name=f"work-tail-{self.capability}")
        except BaseException:
            await self._stack.aclose()
            raise

    async def stop(self) -> None:
        """Stop reading and close the clients; idempotent."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self._stack.aclose()

    async def read(self) -> WorkReading:
        """Pending work now: the committed offsets and high watermarks from the broker, the
        sums from the index (records not read yet count at the mean estimate)."""
        assert self._sampler is not None, "start() first"
        assert self.work is not None
        sample = await self._sampler.sample(self.topic, self.group)
        committed = dict(enumerate(sample.committed))
        latest = dict(enumerate(sample.latest))
        await self._catch_up(latest)
        # Before the tail read anything, records not read yet count at the estimator's guess for
        # a 512-byte task rather than zero, so a backlog the tail has not reached still scales.
        mean = self.work.mean or float(self.estimator.guess(512))
        reading = self.work.read(committed, latest, mean=mean)
        return reading

    async def _catch_up(self, latest: dict[int, int]) -> None:
        # Records produced just before a poll are usually read within milliseconds; waiting a
        # little for them answers with their real estimates rather than the mean's guess.
        assert self.work is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.catch_up_seconds
        while any(self.work.partitions[p].end < end for p, end in latest.items()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._advanced.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._advanced.wait(), remaining)

    async def _read(self) -> None:
        assert self.work is not None
        tasks = [TopicPartition(self.topic, p) for p in range(len(self.work.partitions))]
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=5000)
            for tp, records in batches.items():
                if tp.topic == self.topic:
                    for record in records:
                        estimate = self.estimator.estimate(
                            len(record.value or b""), record.headers or ()
                        )
                        self.work.add(tp.partition, record.offset, estimate.tokens)
                else:
                    for record in records:
                        self._calibrate(record.value)
            for tp in tasks:
                # Past transaction markers the position moves with no record: no work there.
                self.work.partitions[tp.partition].advance(await self._consumer.position(tp))
            self._advanced.set()
            if not self.caught_up.is_set() and all(
                self.work.partitions[p].end >= end for p, end in self._targets.items()
            ):
                self.caught_up.set()

    def _calibrate(self, value: bytes | None) -> None:
        # Only a few fields are needed, and results of other capabilities share the topic:
        # plain JSON, not the model, keeps this cheap.
        try:
            event = json.loads(value or b"")
        except ValueError:
            return
        if not isinstance(event, dict) or event.get("capability") != self.capability:
            return
        if event.get("type") != "result" or event.get("status") != "succeeded":
            return
        usage = event.get("usage") or {}
        tokens = int(usage.get("prompt_tokens", 0)) + int(usage.get("completion_tokens", 0))
        size = event.get("input_bytes")
        if isinstance(size, int) and event.get("estimate_source") == "estimator":
            # Only tasks without a producer's number teach the size-based guess.
            self.estimator.observe(size, tokens)
        self.throughput.observe(tokens, int(event.get("duration_ms") or 0) / 1000)
