"""The baselines of a hop: raw one-way, and the floor of an exactly-once hop.

``raw_one_way``: a record's produce-to-consume latency on a bare topic, a client's producer
(acks=all, idempotent) and a plain consumer.

``exactly_once_echo``: what Kafka's transactions cost with nothing else.
A raw aiokafka echo with the guarantees the worker and the orchestrator keep, and no more: a
read_committed consumer in a group, each fetched batch produced again in one transaction with
its offsets (``send_offsets_to_transaction``), the output read back read_committed. A record's
latency is from its send (a plain, idempotent producer, as a client's) until the echo of it is
read: one plain hop and one transactional hop. So ``echo p50 - raw one-way p50`` is what one
transactional hop costs at the least, and a path of one plain and N transactional hops cannot
go below ``raw + N x (echo - raw)``.

Imported by bench_worker.py and bench_orchestrator.py (run as ``python bench/<name>.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from common import scratch_topics

from expediter.messaging import client_options, connected
from expediter.settings import KafkaSettings

RETRY_BACKOFF_MS = 10
"""The workers' and the orchestrator's producers retry after 10 ms (aiokafka's default: 100):
a retriable answer, such as the previous transaction's markers still being written, is gone
within milliseconds. The floor uses the same."""


async def raw_one_way(
    settings: KafkaSettings, *, partitions: int, rate: float, count: int, timeout: float = 60.0
) -> list[float]:
    """One-way produce-to-consume latencies (ms) on a bare topic, ``rate`` records a second."""
    topic = f"raw{uuid.uuid4().hex[:8]}"
    options = client_options(settings)
    reader = AIOKafkaConsumer(**options, auto_offset_reset="earliest", enable_auto_commit=False)
    async with _scratch(settings, [topic], partitions), connected(reader, settings):
        reader.assign([TopicPartition(topic, p) for p in range(partitions)])
        return await _timed(settings, topic, reader, partitions=partitions, rate=rate,
                            count=count, timeout=timeout)  # fmt: skip


async def exactly_once_echo(
    settings: KafkaSettings, *, partitions: int, rate: float, count: int, timeout: float = 60.0
) -> list[float]:
    """Send ``count`` ~300-byte records at ``rate`` a second through a transactional echo; the
    latency of each (ms), from its send until its echo was read, read_committed."""
    prefix = f"floor{uuid.uuid4().hex[:6]}."
    source, sink, group = f"{prefix}in", f"{prefix}out", f"{prefix}echo"
    options = client_options(settings)
    consumer = AIOKafkaConsumer(
        source, **options, group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False, isolation_level="read_committed",
    )  # fmt: skip
    echo = AIOKafkaProducer(
        **options, transactional_id=f"{group}-0", retry_backoff_ms=RETRY_BACKOFF_MS
    )
    reader = AIOKafkaConsumer(sink, **options, auto_offset_reset="earliest",
                              isolation_level="read_committed")  # fmt: skip

    async def echoing() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            if not batches:
                continue
            async with echo.transaction():
                for records in batches.values():
                    for r in records:
                        await echo.send(sink, r.value, key=r.key)
                offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
                await echo.send_offsets_to_transaction(offsets, group)

    async with (_scratch(settings, [source, sink], partitions), connected(consumer, settings),
                connected(echo, settings), connected(reader, settings)):  # fmt: skip
        await consumer.getmany(timeout_ms=0)  # joined before the first record, as a worker is
        while not consumer.assignment():
            await asyncio.sleep(0.005)
        return await _timed(settings, source, reader, partitions=partitions, rate=rate,
                            count=count, timeout=timeout, beside=echoing())  # fmt: skip


def _scratch(
    settings: KafkaSettings, topics: list[str], partitions: int
) -> AbstractAsyncContextManager[None]:
    return scratch_topics(settings, [NewTopic(t, partitions, 1) for t in topics])


async def _timed(
    settings: KafkaSettings,
    topic: str,
    reader: AIOKafkaConsumer,
    *,
    partitions: int,
    rate: float,
    count: int,
    timeout: float,
    beside: Coroutine[Any, Any, None] | None = None,
) -> list[float]:
    """Send records to ``topic`` (a client's producer: acks=all, idempotent) and time each until
    ``reader`` reads it, or what ``beside`` (run meanwhile) made of it: both carry its first 16
    bytes. One record to each partition first, not timed: leaders, connections, fetches and a
    transaction's first partitions are a start-up cost, not a hop's."""
    received: dict[bytes, float] = {}

    async def reading() -> None:
        while True:
            for records in (await reader.getmany(timeout_ms=100)).values():
                now = time.monotonic()
                for r in records:
                    received[r.value[:16]] = now

    async def arrived(idents: set[bytes]) -> None:
        deadline = time.monotonic() + timeout
        while not idents <= received.keys():
            for loop in loops:
                if loop.done():
                    loop.result()  # its error, rather than a timeout
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {len(idents - received.keys())} records never came")
            await asyncio.sleep(0.005)

    client = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    sent: dict[bytes, float] = {}
    async with connected(client, settings):
        loops = [asyncio.create_task(reading())]
        if beside is not None:
            loops.append(asyncio.create_task(beside))
        try:
            warm = {uuid.uuid4().bytes: p for p in range(partitions)}
            for ident, p in warm.items():
                await client.send_and_wait(topic, ident + b"warm-up", partition=p)
            await arrived(set(warm))
            started = time.monotonic()
            for n in range(count):
                ident = uuid.uuid4().bytes
                sent[ident] = time.monotonic()
                await client.send_and_wait(topic, ident + b"x" * 284, key=b"wf-%d" % (n % 64))
                await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))
            await arrived(set(sent))
        finally:
            for loop in loops:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
    return [(received[k] - sent[k]) * 1000 for k in sent]
