"""What the benches share: the last-line JSON output, a typical task, percentiles, a
read_committed count of a topic's records, the raw echo a worker is measured against, and
scratch topics for one measurement.

Imported by the bench_*.py scripts (run as ``python bench/<name>.py``, so bench/ is on the path).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from expediter.events import Producer, TaskEvent
from expediter.messaging import TopicNames, client_options, connected
from expediter.settings import KafkaSettings


def emit(document: dict[str, Any]) -> None:
    """One JSON line on stdout; a bench's last one carries its ``ratio``."""
    print(json.dumps(document), flush=True)


def task_event(n: int) -> TaskEvent:
    """A typical ~300-byte task, with 64 workflows interleaved."""
    return TaskEvent(
        producer=Producer(name="bench", version="0"), workflow_id=f"wf-{n % 64:04d}",
        step_id=f"s{n}", capability="noop",
        input={"field_id": f"field-{n % 1000}", "depth_cm": 30, "crop": "wheat"},
    )  # fmt: skip


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``samples``."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def count_until(settings: KafkaSettings, topic: str, count: int) -> float:
    """Read ``topic`` (read_committed) until ``count`` records; the monotonic time of the last."""
    consumer = AIOKafkaConsumer(topic, **client_options(settings), auto_offset_reset="earliest",
                                isolation_level="read_committed")  # fmt: skip
    seen = 0
    async with connected(consumer, settings):
        while seen < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            seen += sum(len(b) for b in batches.values())
    return time.monotonic()


async def raw_echo(
    consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, topic: str, count: int
) -> None:
    """The raw baseline of a worker: ``count`` records from ``consumer`` produced again to
    ``topic``, each fetch flushed and its offsets committed (at-least-once, no transaction)."""
    done = 0
    while done < count:
        batches = await consumer.getmany(timeout_ms=200, max_records=5000)
        for records in batches.values():
            for r in records:
                await producer.send(topic, r.value, key=r.key, headers=list(r.headers))
            done += len(records)
        if batches:
            await producer.flush()
            await consumer.commit()


@contextlib.asynccontextmanager
async def scratch_topics(
    settings: KafkaSettings, topics: Iterable[NewTopic]
) -> AsyncIterator[None]:
    """``topics`` for one measurement, deleted after it: a long-lived bench broker (its state
    stays in .expediter/) would otherwise gain partitions with every run."""
    created = list(topics)
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        await admin.create_topics(created)
        try:
            yield
        finally:
            await admin.delete_topics([topic.name for topic in created])


def agent_topics(names: TopicNames, capability: str, partitions: int) -> list[NewTopic]:
    """What a worker of ``capability`` needs: its tasks, the results, its DLQ (one partition)
    and the registry (one partition, compacted)."""
    return [
        NewTopic(names.tasks(capability), partitions, 1),
        NewTopic(names.results, partitions, 1),
        NewTopic(names.dlq(capability), 1, 1),
        NewTopic(names.registry, 1, 1, topic_configs={"cleanup.policy": "compact"}),
    ]
