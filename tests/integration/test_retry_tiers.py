"""Retry tiers on a real broker: a failing task leaves its partition for a delay tier and comes
back; tasks of other workflows behind it in the same partition are not held; and a worker
stopped while a task waits in a tier loses nothing (the next worker runs it once)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from expediter import load_agent
from expediter.dev import Broker
from expediter.events import ResultEvent, decode
from expediter.messaging import TopicNames, client_options, connected
from expediter.reasoning import RuleEngine
from expediter.settings import WorkerSettings
from expediter.worker.delaying import RETRY_DUE_HEADER, RETRY_TRIES_HEADER
from expediter.worker.working import Worker
from tests.support import create_topics, produce, read, settle, task

PROBE = Path(__file__).resolve().parents[1] / "agents" / "probe.py"


@pytest_asyncio.fixture
async def names(kafka: Broker) -> TopicNames:
    """One partition everywhere: every task shares it, as in the head-of-line case."""
    names = TopicNames(prefix=f"rt{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe", partitions=1)
    admin = AIOKafkaAdminClient(**client_options(kafka.settings))
    async with connected(admin, kafka.settings):
        tiers = [f"{names.prefix}retry.probe.{n}s" for n in (2, 4)]
        await admin.create_topics([NewTopic(tier, 1, 1) for tier in tiers])
        # The worker looks for its tiers once, at start: wait until the broker lists them.
        for _ in range(300):
            if set(tiers) <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
    return names


async def start(
    kafka: Broker, names: TopicNames, **overrides: Any
) -> tuple[Worker, asyncio.Task[None]]:
    settings = WorkerSettings(
        topic_prefix=names.prefix, instance=f"w-{uuid.uuid4().hex[:6]}", http_port=0,
        **{"max_attempts": 1, "retry_tiers": [2, 4], **overrides},
    )  # fmt: skip
    worker = Worker(load_agent(PROBE), RuleEngine(), kafka=kafka.settings, settings=settings)
    running = asyncio.create_task(worker.run())
    async with asyncio.timeout(60):
        while not worker.health.warm:
            if running.done():
                running.result()
            await asyncio.sleep(0.05)
    return worker, running


async def stop(worker: Worker, running: asyncio.Task[None]) -> None:
    worker.request_stop()
    await asyncio.wait_for(running, 60)


@pytest_asyncio.fixture
async def worker(kafka: Broker, names: TopicNames) -> AsyncIterator[Worker]:
    worker, running = await start(kafka, names)
    yield worker
    await stop(worker, running)


async def test_a_retrying_task_goes_to_the_tier_and_back_without_holding_others(
    kafka: Broker, names: TopicNames, worker: Worker
) -> None:
    assert worker.tiers is not None, "the tier topics exist, so tiers are on"
    flaky = task(0, "wf-flaky", mode="retriable", fail_attempts=1)  # fails its first try
    others = [task(n, f"wf-other-{n}") for n in range(1, 9)]
    await produce(kafka.settings, names.tasks("probe"), [flaky, *others])
    records = await read(kafka.settings, names.results, until=lambda r: len(r) >= 9)
    await settle()
    results = [decode(r.value, ResultEvent) for r in records]
    assert len(results) == 9, "one result per task, none twice"
    assert [r.task_id for r in results][-1] == flaky.event_id, (
        "the other workflows' tasks behind it in the partition finished first"
    )
    came_back = results[-1]
    assert came_back.status == "succeeded"
    assert (came_back.attempt, came_back.tries) == (1, 2), "the tier's try counts on"
    (moved,) = await read(
        kafka.settings, f"{names.prefix}retry.probe.2s", until=lambda r: len(r) >= 1
    )
    headers = dict(moved.headers)
    assert headers[RETRY_TRIES_HEADER] == b"1"
    assert int(headers[RETRY_DUE_HEADER]) >= moved.timestamp + 2000 - 50
    assert moved.key == b"wf-flaky"


async def test_after_the_last_tier_a_task_is_exhausted_and_dead_lettered(
    kafka: Broker, names: TopicNames, worker: Worker
) -> None:
    doomed = task(0, "wf-doomed", mode="retriable", fail_attempts=99)
    await produce(kafka.settings, names.tasks("probe"), [doomed])
    (record,) = await read(kafka.settings, names.results, until=lambda r: len(r) >= 1, timeout=60)
    result = decode(record.value, ResultEvent)
    assert result.status == "failed"
    assert result.tries == 3, "the first try, then one in each of the two tiers"
    letters = await read(kafka.settings, names.dlq("probe"), until=lambda r: len(r) >= 1)
    assert dict(letters[0].headers)["expediter-dlq-reason"] == b"exhausted"


async def test_a_task_whose_deadline_ends_before_the_tier_is_exhausted_at_once(
    kafka: Broker, names: TopicNames, worker: Worker
) -> None:
    soon = task(0, "wf-soon", mode="retriable", fail_attempts=99).model_copy(
        update={"deadline": datetime.now(UTC) + timedelta(seconds=1.5)}
    )
    await produce(kafka.settings, names.tasks("probe"), [soon])
    (record,) = await read(kafka.settings, names.results, until=lambda r: len(r) >= 1)
    assert decode(record.value, ResultEvent).tries == 1
    with pytest.raises(AssertionError, match="condition not met"):
        await read(kafka.settings, f"{names.prefix}retry.probe.2s", until=lambda r: len(r) >= 1,
                   timeout=2)  # fmt: skip


async def test_a_worker_stopped_mid_delay_loses_nothing(kafka: Broker, names: TopicNames) -> None:
    first, running = await start(kafka, names, retry_tiers=[4])
    flaky = task(0, "wf-restart", mode="retriable", fail_attempts=1)
    await produce(kafka.settings, names.tasks("probe"), [flaky])
    await read(kafka.settings, f"{names.prefix}retry.probe.4s", until=lambda r: len(r) >= 1)
    await asyncio.sleep(0.5)  # fetched from the tier, waiting to come due
    await stop(first, running)  # the wait ends at once; the tier record is left uncommitted
    second, running = await start(kafka, names, retry_tiers=[4])
    try:
        records = await read(kafka.settings, names.results, until=lambda r: len(r) >= 1)
        await settle(2)
        records = await read(kafka.settings, names.results, until=lambda r: len(r) >= 1)
    finally:
        await stop(second, running)
    (result,) = [decode(r.value, ResultEvent) for r in records]
    assert (result.task_id, result.status, result.tries) == (flaky.event_id, "succeeded", 2)
