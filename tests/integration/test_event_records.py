"""Events through a real broker: keyed by workflow id, trace context in headers, one decode."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from expediter.dev import Broker
from expediter.events import (
    EVENT_TYPE_HEADER,
    Producer,
    TaskEvent,
    TraceParent,
    continue_trace,
    decode,
    to_record,
    trace_from_headers,
)
from expediter.messaging import client_options, connected


async def test_tasks_of_one_workflow_share_a_partition_and_a_trace(
    kafka: Broker, topic_name: str
) -> None:
    options = client_options(kafka.settings)
    async with connected(AIOKafkaAdminClient(**options), kafka.settings) as admin:
        await admin.create_topics([NewTopic(topic_name, 6, 1)])
    producer_info = Producer(name="test", version="0")
    traces = {wf: TraceParent.new() for wf in ("wf-a", "wf-b", "wf-c")}
    sent = []
    async with connected(AIOKafkaProducer(**options), kafka.settings) as producer:
        for step in range(4):
            for wf, trace in traces.items():
                event = TaskEvent(
                    producer=producer_info, workflow_id=wf, step_id=f"s{step}",
                    capability="perception", input={"n": step},
                )  # fmt: skip
                record = to_record(event, trace=trace.child())
                await producer.send(
                    topic_name, record.value, key=record.key, headers=record.headers
                )
                sent.append(event)
        await producer.flush()

    consumer = AIOKafkaConsumer(topic_name, **options, auto_offset_reset="earliest")
    received: dict[str, list[tuple[int, TaskEvent]]] = {wf: [] for wf in traces}
    async with connected(consumer, kafka.settings), asyncio.timeout(30):
        async for message in consumer:
            event = decode(message.value, TaskEvent)
            assert message.key == event.workflow_id.encode()
            assert dict(message.headers)[EVENT_TYPE_HEADER] == b"task"
            trace = trace_from_headers(message.headers)
            assert trace is not None
            assert trace.trace_id == traces[event.workflow_id].trace_id
            assert continue_trace(message.headers).trace_id == trace.trace_id
            received[event.workflow_id].append((message.partition, event))
            if sum(map(len, received.values())) == len(sent):
                break
    for wf, items in received.items():
        assert len({partition for partition, _ in items}) == 1, f"{wf} spread over partitions"
        assert [e.step_id for _, e in items] == ["s0", "s1", "s2", "s3"], "order within a key"
    assert sorted(e.event_id for items in received.values() for _, e in items) == sorted(
        e.event_id for e in sent
    )
