"""Clients of approvals: the open requests, one request, and a person's decision sent and
confirmed.

- :func:`open_requests` reads the compacted ``approvals.requests`` whole (read_committed): each
  key's last record is its request, and a tombstone means resolved, so what is left is open.
  The topic holds the open requests plus what compaction has not dropped yet, never history.
- :func:`find_request` reads only the partition its request id hashes to.
- :func:`send_decision` notes the end of the workflow's partition of ``workflows.events``,
  publishes the decision on ``approvals.decisions`` (keyed by workflow id), then reads that
  partition from the noted offset until the orchestrator says what it did with it (decided,
  parked, or ignored and why): request-reply over Kafka, as ``submit --wait`` does.

Called by ``expediter approvals`` (expediter.cli.approvals) and the tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from expediter.errors import BrokerError, ConfigurationError
from expediter.events import (
    ApprovalDecision,
    ApprovalRequest,
    Producer,
    WorkflowEvent,
    decode,
    to_record,
)
from expediter.messaging import TopicNames, client_options, connected
from expediter.settings import KafkaSettings

__all__ = ["CLIENT", "OUTCOMES", "find_request", "open_requests", "send_decision"]

CLIENT = Producer(name="expediter-approvals", version="1")
OUTCOMES = ("approval-decided", "decision-parked", "decision-ignored")
"""What the orchestrator records about a decision it handled."""


def _partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives ``key``."""
    return int((murmur2(key) & 0x7FFFFFFF) % partitions)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    # All topics' metadata: naming a missing topic would create it where brokers auto-create.
    cluster = await consumer._client.fetch_all_metadata()
    found = cluster.partitions_for_topic(topic)
    if not found:
        raise ConfigurationError(f"topic {topic} is missing: run `expediter topics apply`")
    return [TopicPartition(topic, p) for p in sorted(found)]


async def _read_all(
    consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition]
) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every committed record of ``tps`` now, in offset order per partition."""
    tps = list(tps)
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    records: list[tuple[bytes | None, bytes | None]] = []
    idle = 0
    # The last offsets may be transaction markers, which no record reaches: stop when every
    # position is at its end, or when nothing more comes.
    while idle < 3 and any([await consumer.position(tp) < ends[tp] for tp in tps]):
        batches = await consumer.getmany(*tps, timeout_ms=300)
        idle = 0 if any(batches.values()) else idle + 1
        for batch in batches.values():
            records.extend((r.key, r.value) for r in batch)
    return records


def _fold(records: Iterable[tuple[bytes | None, bytes | None]]) -> dict[str, ApprovalRequest]:
    open_: dict[str, ApprovalRequest] = {}
    for key, value in records:
        if key is None:
            continue
        if value is None:
            open_.pop(key.decode(), None)  # resolved
        else:
            open_[key.decode()] = decode(value, ApprovalRequest)
    return open_


async def open_requests(kafka: KafkaSettings, names: TopicNames) -> list[ApprovalRequest]:
    """Every open request, soonest deadline first."""
    consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False,
                                isolation_level="read_committed")  # fmt: skip
    async with connected(consumer, kafka):
        tps = await _partitions(consumer, names.approval_requests)
        found = _fold(await _read_all(consumer, tps))
    return sorted(found.values(), key=lambda r: (r.deadline, r.request_id))


async def find_request(
    kafka: KafkaSettings, names: TopicNames, request_id: str
) -> ApprovalRequest | None:
    """The open request ``request_id``, or None (resolved, or never made)."""
    key = request_id.encode()
    consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False,
                                isolation_level="read_committed")  # fmt: skip
    async with connected(consumer, kafka):
        tps = await _partitions(consumer, names.approval_requests)
        tp = tps[_partition(key, len(tps))]
        records = [(k, v) for k, v in await _read_all(consumer, [tp]) if k == key]
    return _fold(records).get(request_id)


async def send_decision(
    kafka: KafkaSettings, names: TopicNames, decision: ApprovalDecision, *, wait: float
) -> WorkflowEvent | None:
    """Publish ``decision``; with ``wait`` > 0, the orchestrator's record of what it did with
    it, or None when none came within ``wait`` seconds (the decision stays on the topic and is
    handled once the orchestrator runs)."""
    key = decision.workflow_id.encode()
    producer = AIOKafkaProducer(**client_options(kafka), acks="all", enable_idempotence=True)
    consumer = AIOKafkaConsumer(**client_options(kafka), enable_auto_commit=False,
                                isolation_level="read_committed")  # fmt: skip
    async with connected(consumer, kafka), connected(producer, kafka):
        await _partitions(consumer, names.approval_decisions)
        tps = await _partitions(consumer, names.workflow_events)
        tp = tps[_partition(key, len(tps))]
        consumer.assign([tp])
        start = (await consumer.end_offsets([tp]))[tp]
        record = to_record(decision)
        try:
            await producer.send_and_wait(
                names.approval_decisions, record.value, key=record.key, headers=record.headers
            )
        except KafkaError as exc:
            raise BrokerError(f"sending the decision failed: {exc!r}; nothing was sent") from exc
        if wait <= 0:
            return None
        consumer.seek(tp, start)
        wanted = str(decision.event_id)
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            batch = await consumer.getmany(tp, timeout_ms=int(min(left, 0.5) * 1000))
            for r in batch.get(tp, []):
                if r.key != key or r.value is None:
                    continue
                event = decode(r.value, WorkflowEvent)
                if event.status in OUTCOMES and event.detail.get("decision_id") == wanted:
                    return event
            await asyncio.sleep(0)
    return None
