"""The session broker is real Apache Kafka, and the basic Kafka paths work against it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from expediter.dev import Broker
from expediter.messaging import api_versions, client_options, connected


async def test_the_broker_answers_api_versions(kafka: Broker) -> None:
    host, _, port = kafka.bootstrap.split(",")[0].rpartition(":")
    reply = await api_versions(host, int(port))
    assert reply.ok
    # Produce (0), Fetch (1), Metadata (3) and the group APIs are what the runtime needs.
    for key in (0, 1, 3, 8, 9, 10, 11, 18):
        assert key in reply.apis


async def test_local_broker_binds_loopback_only(kafka: Broker) -> None:
    if kafka.kind == "local":
        assert kafka.bootstrap.startswith("127.0.0.1:")
        assert kafka.sasl_bootstrap is not None
        assert kafka.sasl_bootstrap.startswith("127.0.0.1:")


async def test_produce_consume_round_trip(kafka: Broker, topic_name: str) -> None:
    options = client_options(kafka.settings)
    async with connected(AIOKafkaAdminClient(**options), kafka.settings) as admin:
        await admin.create_topics([NewTopic(topic_name, 2, 1)])
    sent = {f"wf-{i}".encode(): f"task-{i}".encode() for i in range(20)}
    async with connected(AIOKafkaProducer(**options, acks="all"), kafka.settings) as producer:
        for key, value in sent.items():
            await producer.send(topic_name, value, key=key, headers=[("traceparent", b"00-x")])
        await producer.flush()
    consumer = AIOKafkaConsumer(topic_name, **options, auto_offset_reset="earliest")
    received: dict[bytes, bytes] = {}
    async with connected(consumer, kafka.settings), asyncio.timeout(30):
        while len(received) < len(sent):
            async for record in consumer:
                assert record.key is not None
                assert record.value is not None
                assert dict(record.headers)["traceparent"] == b"00-x"
                received[record.key] = record.value
                break
    assert received == sent


async def test_topic_created_with_compaction(kafka: Broker, topic_name: str) -> None:
    options = client_options(kafka.settings)
    async with connected(AIOKafkaAdminClient(**options), kafka.settings) as admin:
        await admin.create_topics(
            [NewTopic(topic_name, 3, 1, topic_configs={"cleanup.policy": "compact"})]
        )
        described = await _described_once_led(admin, topic_name)
        assert len(described["partitions"]) == 3
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name)]
        )
        configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
        assert configs["cleanup.policy"] == "compact"


async def _described_once_led(admin: AIOKafkaAdminClient, topic: str) -> dict[str, Any]:
    # CreateTopics answers once the controller has the topic; the broker's metadata cache, which
    # DescribeTopics reads, may lag it for a moment and list no partitions yet.
    async with asyncio.timeout(30):
        while True:
            (described,) = await admin.describe_topics([topic])
            partitions = described["partitions"]
            if partitions and all(p["leader"] >= 0 for p in partitions):
                return dict(described)
            await asyncio.sleep(0.1)


async def test_group_offsets_committed_and_read_back(kafka: Broker, topic_name: str) -> None:
    options = client_options(kafka.settings)
    async with connected(AIOKafkaAdminClient(**options), kafka.settings) as admin:
        await admin.create_topics([NewTopic(topic_name, 1, 1)])
    async with connected(AIOKafkaProducer(**options), kafka.settings) as producer:
        for i in range(5):
            await producer.send(topic_name, b"%d" % i, key=b"k")
        await producer.flush()
    group = f"agents.{topic_name}"
    tp = TopicPartition(topic_name, 0)
    consumer = AIOKafkaConsumer(
        topic_name, **options, group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )  # fmt: skip
    async with connected(consumer, kafka.settings), asyncio.timeout(30):
        taken = 0
        while taken < 3:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=3 - taken)
            taken += len(batch.get(tp, []))
        await consumer.commit({tp: 3})
    # A new member of the group, and the admin API, both see the committed offset.
    again = AIOKafkaConsumer(**options, group_id=group, enable_auto_commit=False)
    async with connected(again, kafka.settings):
        assert await again.committed(tp) == 3
    async with connected(AIOKafkaAdminClient(**options), kafka.settings) as admin:
        offsets = await admin.list_consumer_group_offsets(group)
        assert offsets[tp].offset == 3
