"""A worker's transaction commits only what the broker took: a failed delivery aborts it.

The broker is made to refuse every result (the results topic's ``max.message.bytes`` below a
result's size), which fails the result batches the way a partition without a leader does: only
through their delivery futures. Nothing may commit meanwhile, and once the broker takes results
again, every task gets exactly one.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from expediter.dev import Broker
from expediter.events import ResultEvent, decode
from expediter.messaging import TopicNames, client_options, connected
from expediter.settings import KafkaSettings
from tests.integration.test_worker import start_worker
from tests.support import create_topics, produce, read, settle, task


@pytest_asyncio.fixture
async def names(kafka: Broker) -> TopicNames:
    names = TopicNames(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe")
    return names


async def _limit_message_bytes(settings: KafkaSettings, topic: str, limit: int) -> None:
    resource = ConfigResource(
        ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(limit)}
    )
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        await admin.alter_configs([resource])


async def _committed(settings: KafkaSettings, names: TopicNames) -> int:
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        offsets = await admin.list_consumer_group_offsets(names.group("probe"))
    return sum(
        meta.offset for tp, meta in offsets.items()
        if tp.topic == names.tasks("probe") and meta.offset > 0
    )  # fmt: skip


async def _readiness(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as response:
        return response.status, str((await response.json())["reason"])


async def _until_ready(url: str) -> None:
    deadline = time.monotonic() + 15
    while (readiness := await _readiness(url))[0] != 200:
        assert time.monotonic() < deadline, f"not ready: {readiness[1]}"
        await asyncio.sleep(0.1)


async def test_a_result_the_broker_refuses_aborts_the_transaction_and_runs_again(
    kafka: Broker, names: TopicNames
) -> None:
    await _limit_message_bytes(kafka.settings, names.results, 200)  # a result is ~600 bytes
    running = await start_worker(kafka, names)
    worker = running.worker
    try:
        await _until_ready(worker.server.url)
        events = [task(n, f"wf-{n}") for n in range(6)]
        await produce(kafka.settings, names.tasks("probe"), events)
        deadline = time.monotonic() + 30
        while True:
            status, reason = await _readiness(worker.server.url)
            if status == 503:
                break
            assert time.monotonic() < deadline, f"still ready after refused results: {reason}"
            await asyncio.sleep(0.1)
        assert "commits failing" in reason
        assert worker.rewinds >= 1
        await settle(1.0)
        assert await _committed(kafka.settings, names) == 0, "offsets committed without results"

        await _limit_message_bytes(kafka.settings, names.results, 1_000_000)
        records = await read(kafka.settings, names.results, until=lambda r: len(r) >= 6)
        await settle(2.0)
        records = await read(kafka.settings, names.results, until=lambda r: len(r) >= 6)
        ids = sorted(decode(r.value, ResultEvent).task_id for r in records)
        assert ids == sorted(e.event_id for e in events), "a task lost or answered twice"
        assert await _committed(kafka.settings, names) == 6
        await _until_ready(worker.server.url)
    finally:
        worker.request_stop()
        await asyncio.wait_for(running.task, 60)
