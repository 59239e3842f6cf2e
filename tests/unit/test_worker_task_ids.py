"""A task record without an ``event_id`` (a producer that is not Python) keeps one id.

Decoding alone would give it a new random id each time, so a redelivered task would look new:
de-duplication and the tool ledger's idempotency would break. The id comes from where the
record lies instead.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from aiokafka.structs import ConsumerRecord

from expediter import load_agent
from expediter.events import Producer, ResultEvent, decode
from expediter.messaging import TopicNames
from expediter.reasoning import RuleEngine
from expediter.settings import WorkerSettings
from expediter.worker.processing import TaskRunner, ToolCallerFactory
from tests.integration.test_worker import PROBE

WITHOUT_ID: dict[str, Any] = {
    "type": "task", "schema_version": "1.0", "created_at": "2026-01-01T00:00:00Z",
    "producer": {"name": "kcat", "version": "1"}, "workflow_id": "wf-1", "step_id": "s",
    "capability": "probe", "attempt": 1, "input": {"n": 1},
}  # fmt: skip


def consumed(document: dict[str, Any], offset: int) -> ConsumerRecord[bytes, bytes]:
    value = json.dumps(document).encode()
    return ConsumerRecord(
        topic="tasks.probe", partition=2, offset=offset, timestamp=0, timestamp_type=0,
        key=b"wf-1", value=value, checksum=None, serialized_key_size=4,
        serialized_value_size=len(value), headers=[],
    )  # fmt: skip


def runner() -> TaskRunner:
    return TaskRunner(
        load_agent(PROBE), RuleEngine(), WorkerSettings(), TopicNames(""),
        Producer(name="probe", version="1"), ToolCallerFactory(), logging.getLogger("test"),
    )  # fmt: skip


async def task_id_of(record: ConsumerRecord[bytes, bytes]) -> uuid.UUID:
    outcome = await runner().run(record)
    (published,) = [r for topic, r in outcome.publish if topic == "results"]
    return decode(published.value, ResultEvent).task_id


async def test_two_decodes_of_a_record_without_an_id_give_the_same_task_id() -> None:
    first = await task_id_of(consumed(WITHOUT_ID, offset=41))
    again = await task_id_of(consumed(WITHOUT_ID, offset=41))
    assert first == again
    assert await task_id_of(consumed(WITHOUT_ID, offset=42)) != first, "another record"


async def test_an_id_the_producer_set_is_kept() -> None:
    given = uuid.uuid4()
    record = consumed({**WITHOUT_ID, "event_id": str(given)}, offset=41)
    assert await task_id_of(record) == given
