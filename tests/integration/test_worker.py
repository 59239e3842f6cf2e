"""The worker in-process against a real broker: results, order, poison, retries, long tasks."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from expediter import load_agent
from expediter.dev import Broker
from expediter.events import (
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    DLQ_TOPIC_HEADER,
    AgentCard,
    DeadLetter,
    ResultEvent,
    TraceParent,
    decode,
    encode,
    to_record,
)
from expediter.messaging import TopicNames, client_options, connected
from expediter.reasoning import RuleEngine
from expediter.settings import WorkerSettings
from expediter.worker.working import Worker
from tests.support import create_topics, produce, read, settle, task

PROBE = Path(__file__).resolve().parents[1] / "agents" / "probe.py"


@pytest_asyncio.fixture
async def names(kafka: Broker) -> TopicNames:
    names = TopicNames(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe")
    return names


class Running:
    def __init__(self, worker: Worker, task: asyncio.Task[None]) -> None:
        self.worker = worker
        self.task = task


async def start_worker(kafka: Broker, names: TopicNames, **overrides: Any) -> Running:
    settings = WorkerSettings(
        topic_prefix=names.prefix, instance=f"w-{uuid.uuid4().hex[:6]}", http_port=0,
        retry_backoff_seconds=0.05, **overrides,
    )  # fmt: skip
    agent = load_agent(PROBE)
    worker = Worker(agent, RuleEngine(), kafka=kafka.settings, settings=settings)
    running = Running(worker, asyncio.create_task(worker.run()))
    async with asyncio.timeout(60):
        while not worker.health.warm:
            if running.task.done():
                running.task.result()
            await asyncio.sleep(0.05)
    return running


@pytest_asyncio.fixture
async def worker(kafka: Broker, names: TopicNames) -> AsyncIterator[Running]:
    running = await start_worker(kafka, names)
    yield running
    running.worker.request_stop()
    await asyncio.wait_for(running.task, 60)


def results_of(records: list[Any]) -> list[ResultEvent]:
    return [decode(r.value, ResultEvent) for r in records]


def calls() -> Any:
    return sys.modules["expediter_agents.probe"].CALLS


async def test_each_task_gets_one_result_in_key_order(
    kafka: Broker, names: TopicNames, worker: Running
) -> None:
    events = [task(n, f"wf-{n % 5}", sleep=0.01 * (n % 3)) for n in range(40)]
    await produce(kafka.settings, names.tasks("probe"), events)
    records = await read(kafka.settings, names.results, until=lambda r: len(r) >= 40)
    await settle()
    results = results_of(records)
    assert sorted(r.task_id for r in results) == sorted(e.event_id for e in events)
    assert all(r.status == "succeeded" for r in results)
    by_task = {e.event_id: e for e in events}
    for record, result in zip(records, results, strict=True):
        assert record.key == result.workflow_id.encode()
        assert result.output == {"n": by_task[result.task_id].input["n"], "attempt": 1,
                                 "pid": result.output["pid"]}  # fmt: skip
    for wf in {e.workflow_id for e in events}:
        ns = [r.output["n"] for r in results if r.workflow_id == wf]  # type: ignore[index]
        assert ns == sorted(ns), f"{wf}: results out of order"


async def test_batches_fetched_while_one_runs_keep_key_order(
    kafka: Broker, names: TopicNames
) -> None:
    """Tiny batches: a partition's next batch arrives while one runs and must wait its turn."""
    running = await start_worker(kafka, names, max_batch_records=2)
    try:
        events = [task(n, f"wf-{n % 6}", sleep=0.02 * (n % 2)) for n in range(60)]
        await produce(kafka.settings, names.tasks("probe"), events)
        records = await read(kafka.settings, names.results, until=lambda r: len(r) >= 60)
        await settle()
    finally:
        running.worker.request_stop()
        await asyncio.wait_for(running.task, 60)
    results = results_of(records)
    assert sorted(r.task_id for r in results) == sorted(e.event_id for e in events)
    for wf in {e.workflow_id for e in events}:
        ns = [r.output["n"] for r in results if r.workflow_id == wf]  # type: ignore[index]
        assert ns == sorted(ns), f"{wf}: results out of order"


async def test_trace_context_continues_into_results(
    kafka: Broker, names: TopicNames, worker: Running
) -> None:
    parent = TraceParent.new()
    record = to_record(task(1, "wf-trace"), trace=parent)
    from aiokafka import AIOKafkaProducer

    from expediter.messaging import client_options, connected

    async with connected(AIOKafkaProducer(**client_options(kafka.settings)), kafka.settings) as p:
        await p.send_and_wait(
            names.tasks("probe"), record.value, key=record.key, headers=record.headers
        )
    (result,) = await read(kafka.settings, names.results, until=lambda r: len(r) >= 1)
    traceparent = dict(result.headers)["traceparent"].decode()
    child = TraceParent.parse(traceparent)
    assert child is not None
    assert child.trace_id == parent.trace_id
    assert child.span_id != parent.span_id


async def test_poison_records_reach_the_dlq_and_the_worker_goes_on(
    kafka: Broker, names: TopicNames, kafka_worker_small: Running
) -> None:
    good = [task(n, "wf-good") for n in range(5)]
    v2 = json.loads(encode(task(99, "wf-v2")))
    v2["schema_version"] = "2.0"
    wrong_input = task(98, "wf-bad-input")
    wrong_input_bytes = encode(wrong_input).replace(b'"n":98', b'"n":"ninety-eight"')
    poison = [
        (b"wf-x", b"\x00\xffnot json"),
        (b"wf-x", b'{"type": "task"}'),
        (b"wf-v2", json.dumps(v2).encode()),
        (b"wf-big", b"{" + b" " * 5000 + b"}"),
        (b"wf-bad-input", wrong_input_bytes),
        (None, b""),
    ]
    await produce(kafka.settings, names.tasks("probe"), good, raw=poison)
    letters = await read(kafka.settings, names.dlq("probe"), until=lambda r: len(r) >= len(poison))
    reasons = sorted(dict(r.headers)[DLQ_REASON_HEADER].decode() for r in letters)
    assert reasons == sorted(
        ["undecodable", "invalid", "unsupported-version", "oversized", "invalid", "undecodable"]
    )
    for record in letters:
        headers = dict(record.headers)
        letter = decode(record.value, DeadLetter)
        assert headers[DLQ_TOPIC_HEADER].decode() == names.tasks("probe") == letter.source_topic
        assert int(headers[DLQ_PARTITION_HEADER]) == letter.source_partition
        assert int(headers[DLQ_OFFSET_HEADER]) == letter.source_offset
    # The good tasks, and a failure result for the task whose envelope was readable.
    results = results_of(
        await read(kafka.settings, names.results, until=lambda r: len(r) >= len(good) + 1)
    )
    failed = [r for r in results if r.status == "failed"]
    assert [r.task_id for r in failed] == [wrong_input.event_id]
    assert failed[0].error is not None
    assert failed[0].error.code == "invalid-input"
    # Still alive and consuming.
    later = task(7, "wf-later")
    await produce(kafka.settings, names.tasks("probe"), [later])
    results = results_of(
        await read(kafka.settings, names.results, until=lambda r: len(r) >= len(good) + 2)
    )
    assert later.event_id in {r.task_id for r in results}
    assert kafka_worker_small.worker.health.is_ready()


@pytest_asyncio.fixture
async def kafka_worker_small(kafka: Broker, names: TopicNames) -> AsyncIterator[Running]:
    running = await start_worker(kafka, names, max_record_bytes=2048)
    yield running
    running.worker.request_stop()
    await asyncio.wait_for(running.task, 60)


async def test_retries_then_permanent_and_exhausted_failures(
    kafka: Broker, names: TopicNames, worker: Running
) -> None:
    flaky = task(1, "wf-flaky", mode="retriable", fail_attempts=2)  # succeeds on its third try
    permanent = task(2, "wf-perm", mode="permanent")
    exhausted = task(3, "wf-exh", mode="retriable", fail_attempts=99)
    await produce(kafka.settings, names.tasks("probe"), [flaky, permanent, exhausted])
    results = {
        r.task_id: r
        for r in results_of(await read(kafka.settings, names.results, until=lambda r: len(r) >= 3))
    }
    assert results[flaky.event_id].status == "succeeded"
    # The dispatched attempt stays the result's identity; the tries in place are counted apart.
    assert (results[flaky.event_id].attempt, results[flaky.event_id].tries) == (1, 3)
    assert calls()[flaky.event_id] == 3
    perm = results[permanent.event_id]
    assert perm.status == "failed"
    assert perm.error is not None
    assert (perm.error.code, perm.error.retriable, perm.attempt) == ("bad-field", False, 1)
    assert calls()[permanent.event_id] == 1
    exh = results[exhausted.event_id]
    assert exh.status == "failed"
    assert exh.error is not None
    assert (exh.error.code, exh.attempt, exh.tries) == ("flaky", 1, 3)
    letters = await read(kafka.settings, names.dlq("probe"), until=lambda r: len(r) >= 2)
    by_reason = {decode(r.value, DeadLetter).reason: decode(r.value, DeadLetter) for r in letters}
    assert set(by_reason) == {"permanent", "exhausted"}
    assert by_reason["exhausted"].workflow_id == "wf-exh"


async def test_a_task_twice_as_long_as_max_poll_interval_keeps_membership(
    kafka: Broker, names: TopicNames
) -> None:
    running = await start_worker(kafka, names, max_poll_interval_ms=3000, session_timeout_ms=6000)
    try:
        slow = task(1, "wf-slow", sleep=6.5)
        await produce(kafka.settings, names.tasks("probe"), [slow])
        (record,) = await read(kafka.settings, names.results, until=lambda r: len(r) >= 1)
        await settle(2.0)
        assert decode(record.value, ResultEvent).task_id == slow.event_id
        assert calls()[slow.event_id] == 1, "the task was redelivered"
        assert running.worker.assignments == 1, "the worker lost its partitions"
    finally:
        running.worker.request_stop()
        await asyncio.wait_for(running.task, 60)
    # And nothing more arrived after the stop: no redelivery to a new member either.
    records = await read(kafka.settings, names.results, until=lambda r: len(r) >= 1)
    assert len(records) == 1


async def test_card_registered_then_tombstoned_and_metrics_served(
    kafka: Broker, names: TopicNames
) -> None:
    running = await start_worker(kafka, names)
    worker = running.worker
    assert list(worker.phases) == [
        "engine", "grammar", "http", "producer", "topics", "registry", "join",
    ]  # fmt: skip
    await produce(kafka.settings, names.tasks("probe"), [task(n, "wf-m") for n in range(3)])
    await read(kafka.settings, names.results, until=lambda r: len(r) >= 3)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{worker.server.url}/readyz") as response:
            assert response.status == 200
        async with http.get(f"{worker.server.url}/metrics") as response:
            text = await response.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    key = ("expediter_tasks_processed_total", (("capability", "probe"), ("outcome", "succeeded")))
    assert samples[key] == 3
    worker.request_stop()
    await asyncio.wait_for(running.task, 60)
    cards = await read(kafka.settings, names.registry, until=lambda r: len(r) >= 2)
    card = decode(cards[0].value, AgentCard)
    assert cards[0].key == f"probe/{worker.instance}".encode()
    assert card.instance == worker.instance
    assert card.input_schema["title"] == "ProbeInput"
    assert cards[1].key == cards[0].key
    assert cards[1].value is None, "a clean stop writes a tombstone"


async def test_the_group_commits_past_transaction_markers_so_lag_reaches_zero(
    kafka: Broker, names: TopicNames, worker: Running
) -> None:
    # Tasks produced in transactions, as the orchestrator does: each transaction ends with a
    # marker no record reaches. KEDA counts lag from offsets, so the group must pass them.
    topic = names.tasks("probe")
    producer = AIOKafkaProducer(**client_options(kafka.settings), transactional_id="t-markers")
    async with connected(producer, kafka.settings):
        for n in range(0, 30, 3):
            async with producer.transaction():
                for event in [task(m, f"wf-{m}") for m in range(n, n + 3)]:
                    record = to_record(event)
                    await producer.send(topic, record.value, key=record.key,
                                        headers=record.headers)  # fmt: skip
    await read(kafka.settings, names.results, until=lambda r: len(r) >= 30)
    admin = AIOKafkaAdminClient(**client_options(kafka.settings))
    consumer = AIOKafkaConsumer(**client_options(kafka.settings))
    async with connected(admin, kafka.settings), connected(consumer, kafka.settings):
        tps = [TopicPartition(topic, p) for p in range(3)]  # create_topics' partitions
        ends = await consumer.end_offsets(tps)
        lag = -1
        async with asyncio.timeout(30):
            while lag != 0:
                committed = await admin.list_consumer_group_offsets(names.group("probe"))
                lag = sum(ends[tp] - (committed[tp].offset if tp in committed else 0)
                          for tp in tps)  # fmt: skip
                await asyncio.sleep(0.5)
    assert sum(ends.values()) > 30, "the markers took offsets of their own"
