"""Poison on a worker's task topic: the worker dead-letters it and keeps serving the rest.

Counted by task id: every good task answered once, every poison record dead-lettered once.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import pytest
import pytest_asyncio

from expediter.dev import Broker
from expediter.events import DeadLetter, ResultEvent, decode
from expediter.messaging import TopicNames
from tests.integration.test_worker import start_worker
from tests.support import create_topics, produce, read, settle, task

pytestmark = [pytest.mark.chaos]


@pytest_asyncio.fixture
async def names(kafka: Broker) -> TopicNames:
    names = TopicNames(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe")
    return names


async def test_a_record_just_under_the_limit_is_dead_lettered_truncated_and_nothing_stalls(
    kafka: Broker, names: TopicNames
) -> None:
    # 800,000 bytes: under the 1 MB limit, but whole and base64-encoded in a dead letter it
    # would be over it, fail the transaction and stall every partition.
    running = await start_worker(kafka, names)
    try:
        before = [task(n, f"wf-{n}") for n in range(10)]
        after = [task(n, f"wf-{n}") for n in range(10, 20)]
        topic = names.tasks("probe")
        await produce(kafka.settings, topic, before)
        await produce(kafka.settings, topic, [], raw=[(b"wf-3", b"x" * 800_000)])
        await produce(kafka.settings, topic, after)
        results = await read(kafka.settings, names.results, until=lambda r: len(r) >= 20)
        letters = await read(kafka.settings, names.dlq("probe"), until=lambda r: len(r) >= 1)
        await settle(2.0)
        results = await read(kafka.settings, names.results, until=lambda r: len(r) >= 20)
        letters = await read(kafka.settings, names.dlq("probe"), until=lambda r: len(r) >= 1)
        assert not running.task.done(), "the worker stopped"
        assert running.worker.rewinds == 0, "a transaction failed"
    finally:
        running.worker.request_stop()
        await asyncio.wait_for(running.task, 60)
    ids = sorted(decode(r.value, ResultEvent).task_id for r in results)
    assert ids == sorted(e.event_id for e in before + after), "a task lost or answered twice"
    assert len(letters) == 1
    letter = decode(letters[0].value, DeadLetter)
    assert letter.reason == "undecodable"
    assert letter.truncated
    assert letter.original_value_bytes == 800_000
    assert letter.source_topic == topic
    assert len(letters[0].value) < 512 * 1024, "the dead letter keeps a bounded prefix"


async def test_a_task_for_another_capability_is_dead_lettered_and_fails_its_step(
    kafka: Broker, names: TopicNames
) -> None:
    running = await start_worker(kafka, names)
    try:
        good = [task(n, f"wf-{n}") for n in range(5)]
        foreign = task(99, "wf-foreign", capability="pest-detection")
        await produce(kafka.settings, names.tasks("probe"), [*good[:2], foreign, *good[2:]])
        results = await read(kafka.settings, names.results, until=lambda r: len(r) >= 6)
        letters = await read(kafka.settings, names.dlq("probe"), until=lambda r: len(r) >= 1)
        await settle(2.0)
        results = await read(kafka.settings, names.results, until=lambda r: len(r) >= 6)
        letters = await read(kafka.settings, names.dlq("probe"), until=lambda r: len(r) >= 1)
        assert not running.task.done(), "the worker stopped"
    finally:
        running.worker.request_stop()
        await asyncio.wait_for(running.task, 60)
    by_task = {decode(r.value, ResultEvent).task_id: decode(r.value, ResultEvent) for r in results}
    assert len(results) == 6, "a task answered twice"
    assert set(by_task) == {e.event_id for e in [*good, foreign]}
    assert all(by_task[e.event_id].status == "succeeded" for e in good)
    failed = by_task[foreign.event_id]
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "wrong-capability"
    assert failed.output is None, "no soil output under a pest-detection capability"
    assert sys.modules["expediter_agents.probe"].CALLS[foreign.event_id] == 0
    assert len(letters) == 1
    letter = decode(letters[0].value, DeadLetter)
    assert (letter.reason, letter.workflow_id) == ("wrong-capability", "wf-foreign")
    assert "tasks.pest-detection" in letter.detail
