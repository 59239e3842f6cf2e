"""Many small batches on few partitions: every partition the worker pauses resumes.

The worker pauses a partition while one batch of it runs and the next waits. A batch whose
predecessor ended before it began once skipped the resume, and its partition stayed paused for
good: its tasks were never answered. Tiny batches of instant tasks hit that often.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import cast

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition

from expediter import load_agent
from expediter.dev import Broker
from expediter.events import ResultEvent, decode
from expediter.messaging import TopicNames, client_options, connected
from expediter.reasoning import RuleEngine
from expediter.settings import WorkerSettings
from expediter.worker.processing import TaskRunner
from expediter.worker.working import Worker
from tests.integration.test_worker import PROBE, start_worker
from tests.support import create_topics, produce, read, settle, task

TASKS = 3000


@pytest_asyncio.fixture
async def names(kafka: Broker) -> TopicNames:
    names = TopicNames(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe", partitions=2)
    return names


@pytest.mark.slow
async def test_many_small_batches_on_few_partitions_answer_every_task(
    kafka: Broker, names: TopicNames
) -> None:
    running = await start_worker(kafka, names, max_batch_records=3)
    try:
        events = [task(n, f"wf-{n % 50}") for n in range(TASKS)]
        await produce(kafka.settings, names.tasks("probe"), events)
        records = await read(
            kafka.settings, names.results, until=lambda r: len(r) >= TASKS, timeout=180
        )
        await settle(2.0)
        records = await read(kafka.settings, names.results, until=lambda r: len(r) >= TASKS)
    finally:
        running.worker.request_stop()
        await asyncio.wait_for(running.task, 60)
    ids = [decode(r.value, ResultEvent).task_id for r in records]
    assert len(ids) == len(set(ids)), "a task answered twice"
    assert set(ids) == {e.event_id for e in events}, "a task never answered"


async def test_a_batch_whose_predecessor_ended_before_it_began_resumes_its_partition(
    kafka: Broker, names: TopicNames
) -> None:
    """The race itself, made certain: the poll loop paused the partition because the previous
    batch was running, and that batch ended before the next one's task began."""
    settings = WorkerSettings(topic_prefix=names.prefix, instance="w-race", http_port=0)
    worker = Worker(load_agent(PROBE), RuleEngine(), kafka=kafka.settings, settings=settings)
    tp = TopicPartition(names.tasks("probe"), 0)
    consumer = AIOKafkaConsumer(**client_options(kafka.settings))
    loop = asyncio.get_running_loop()
    async with connected(consumer, kafka.settings):
        consumer.assign([tp])
        await asyncio.sleep(0.1)  # let the consumer's own tasks start (stop awaits them)
        consumer.pause(tp)
        previous: asyncio.Future[None] = loop.create_future()
        previous.set_result(None)
        ran: asyncio.Future[None] = loop.create_future()
        # No records: the batch only has to take its turn (no runner is needed for that).
        await worker._batch(tp, [], consumer, cast(TaskRunner, None), previous, ran, 0)
        assert ran.done()
        assert tp not in consumer.paused(), "the partition stays paused for good"
