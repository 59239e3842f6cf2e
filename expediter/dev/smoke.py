"""The smoke flow that ``make demo`` runs until the full field-analysis demo exists.

It creates a task topic, produces N task records keyed by workflow id, consumes them back with a
consumer group, commits, and reports the counts. Called by ``expediter demo``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from expediter.errors import BrokerError
from expediter.messaging import client_options, connected
from expediter.settings import KafkaSettings

__all__ = ["SmokeReport", "run_smoke"]

Progress = Callable[[str, int], None]
"""Called with ("produced" | "consumed", how many more) as the flow advances."""


@dataclass
class SmokeReport:
    topic: str
    partitions: int
    produced: int = 0
    consumed: int = 0
    per_partition: dict[int, int] = field(default_factory=dict)
    committed: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.produced == self.consumed == self.committed


async def run_smoke(
    settings: KafkaSettings,
    *,
    count: int = 1000,
    partitions: int = 3,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> SmokeReport:
    """Create a fresh topic, push ``count`` tasks through it, and count what came back."""
    started = time.monotonic()
    report = SmokeReport(topic=f"smoke.tasks.{uuid.uuid4().hex[:8]}", partitions=partitions)
    note = progress or (lambda _what, _n: None)
    options = client_options(settings)

    async with connected(AIOKafkaAdminClient(**options), settings) as admin:
        await admin.create_topics([NewTopic(report.topic, partitions, 1)])

    async with connected(AIOKafkaProducer(**options, acks="all"), settings) as producer:
        for i in range(count):
            task = {"task_id": i, "capability": "smoke", "input": {"n": i}}
            await producer.send(
                report.topic, json.dumps(task).encode(), key=f"wf-{i % 50}".encode()
            )
            report.produced += 1
            note("produced", 1)
        await producer.flush()

    group = f"agents.smoke.{report.topic}"
    consumer = AIOKafkaConsumer(
        report.topic,
        **options,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen: Counter[int] = Counter()
    async with connected(consumer, settings):
        deadline = time.monotonic() + timeout
        while report.consumed < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                seen[tp.partition] += len(records)
                report.consumed += len(records)
                note("consumed", len(records))
            if batches:
                await consumer.commit()
        for tp in consumer.assignment():
            report.committed += await consumer.committed(tp) or 0
    if report.consumed < count:
        raise BrokerError(
            f"consumed {report.consumed} of {count} records from {report.topic} "
            f"within {timeout:.0f}s"
        )
    report.per_partition = dict(sorted(seen.items()))
    report.seconds = round(time.monotonic() - started, 3)
    return report
