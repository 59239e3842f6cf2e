"""Clients of the orchestrator: submit workflows (or single tasks) and read their state.

``--wait`` is request-reply over Kafka, with no polling of the orchestrator: before sending,
the client notes the end offset of the completion topic's partition that the workflow id hashes
to (:mod:`expediter.messaging.topology`), then reads that one partition from there until its
workflow's record arrives. ``status`` reads the table's changelog (the current state, or the
last one before the tombstone of a workflow that left the table; without either, the state is
told again from the history: :mod:`expediter.orchestrator.recounting`) and ``workflows.events``
(the history) the same way, with the by-key reader the history tools use
(:mod:`expediter.messaging.partitionreading`). Called by ``expediter submit`` and ``expediter
status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from expediter.authoring.state import WorkflowState
from expediter.errors import ConfigurationError, ExpediterError
from expediter.events import (
    Producer,
    ResultEvent,
    TaskEvent,
    WorkflowCommand,
    WorkflowEvent,
    decode,
    to_record,
)
from expediter.messaging import TopicNames, client_options, connected
from expediter.messaging.partitionreading import PartitionReader
from expediter.messaging.topology import TopicMetadata, partition_for_key
from expediter.orchestrator.recounting import state_from_history
from expediter.settings import KafkaSettings

__all__ = ["Submission", "Submitter", "new_workflow_id", "read_status"]

CLIENT = Producer(name="expediter-cli", version="1")


class WaitTimeout(ExpediterError):
    """--wait ran out of time; the work goes on without the client."""

    retriable = True


def new_workflow_id() -> str:
    return f"wf-{uuid.uuid4().hex[:16]}"


@dataclass
class Submission:
    workflow_id: str
    target: str
    task_id: uuid.UUID | None = None
    outcome: dict[str, Any] | None = None
    seconds: float | None = None


class Submitter:
    """Publishes requests and, with :meth:`wait`, reads the replies; an async context manager."""

    def __init__(self, kafka: KafkaSettings, names: TopicNames, workflows: set[str]) -> None:
        self.kafka = kafka
        self.names = names
        self.workflows = workflows
        self._producer = AIOKafkaProducer(
            **client_options(kafka), acks="all", enable_idempotence=True
        )
        self._reply_consumer = AIOKafkaConsumer(
            **client_options(kafka), isolation_level="read_committed", enable_auto_commit=False
        )
        self._stack = AsyncExitStack()
        self._started: dict[uuid.UUID | str, float] = {}
        self._from: dict[TopicPartition, int] = {}
        # Read once per topic, not per request: it is the metadata of every topic.
        self._metadata = TopicMetadata(self._producer.client)

    async def __aenter__(self) -> Submitter:
        try:
            await self._stack.enter_async_context(connected(self._producer, self.kafka))
            await self._stack.enter_async_context(connected(self._reply_consumer, self.kafka))
        except BaseException:
            # Both clients exist from __init__; one never started still warns "Unclosed" at
            # exit, after the error that matters.
            await self._stack.aclose()
            await self._reply_consumer.stop()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            await self._stack.aclose()
            return
        # Already failing (the broker went away mid-run): stopping the clients may fail too
        # (aiokafka's producer cancels its sender), and must not hide the error that matters.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await self._stack.aclose()

    async def _reply_topic(self, target: str) -> str:
        return self.names.completed if target in self.workflows else self.names.results

    async def _mark(self, topic: str, key: bytes) -> None:
        tp = TopicPartition(topic, partition_for_key(key, await self._metadata.require(topic)))
        if tp not in self._from:
            # Assigned first: the consumer fetches metadata only for topics it is assigned.
            self._reply_consumer.assign([*self._from, tp])
            self._from[tp] = (await self._reply_consumer.end_offsets([tp]))[tp]

    async def _check_task_topic(self, target: str, topic: str) -> None:
        # Up front: a send to a missing topic would wait out the metadata timeout and end in
        # aiokafka's UnknownTopicOrPartitionError.
        if await self._metadata.partitions(topic) is None:
            known = ", ".join(sorted(self.workflows)) or "none found"
            raise ConfigurationError(
                f"{target!r} is neither a workflow (known: {known}; pass --workflows DIR for "
                f"another folder) nor a capability with a task topic ({topic} is missing: "
                "check the name, or run `expediter topics apply`)"
            )

    async def submit(
        self, target: str, given: dict[str, Any], workflow_id: str | None = None
    ) -> Submission:
        """Publishes one request; ``workflow_id`` (new if None) lets a caller name the request
        whose send failed, which may or may not have reached the broker."""
        workflow_id = workflow_id or new_workflow_id()
        key = workflow_id.encode()
        if target in self.workflows:
            await self._mark(self.names.completed, key)
            event: Any = WorkflowCommand(
                producer=CLIENT,
                action="start",
                workflow_id=workflow_id,
                workflow=target,
                input=given,
            )
            topic = self.names.commands
            submission = Submission(workflow_id, target)
        else:
            await self._mark(self.names.results, key)
            event = TaskEvent(
                producer=CLIENT,
                workflow_id=workflow_id,
                step_id="submit",
                capability=target,
                input=given,
            )
            topic = self.names.tasks(target)
            await self._check_task_topic(target, topic)
            submission = Submission(workflow_id, target, task_id=event.event_id)
        record = to_record(event)
        self._started[workflow_id] = time.monotonic()
        await self._producer.send_and_wait(
            topic, record.value, key=record.key, headers=record.headers
        )
        return submission

    async def wait(
        self,
        submissions: list[Submission],
        *,
        timeout: float,
        progress: Callable[[Submission], None] | None = None,
    ) -> None:
        """Fill in each submission's outcome from the reply topics, or raise WaitTimeout."""
        pending = {s.workflow_id: s for s in submissions}
        self._reply_consumer.assign(list(self._from))
        for tp, offset in self._from.items():
            self._reply_consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(
                    f"{len(pending)} of {len(submissions)} not finished within {timeout:g}s "
                    f"(e.g. {next(iter(pending))}); `expediter status <id>` shows where they are"
                )
            batches = await self._reply_consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for records in batches.values():
                for record in records:
                    key = (record.key or b"").decode()
                    submission = pending.get(key)
                    if submission is None:
                        continue
                    outcome = self._outcome(submission, record.value)
                    if outcome is None:
                        continue
                    submission.outcome = outcome
                    submission.seconds = time.monotonic() - self._started[key]
                    del pending[key]
                    if progress:
                        progress(submission)

    def _outcome(self, submission: Submission, value: bytes | None) -> dict[str, Any] | None:
        if submission.task_id is None:
            event = decode(value, WorkflowEvent)
            return {"status": event.status, **event.detail}
        result = decode(value, ResultEvent)
        if result.task_id != submission.task_id:
            return None
        return result.model_dump(mode="json", include={"status", "output", "error", "attempt"})


async def read_status(
    kafka: KafkaSettings, names: TopicNames, workflow_id: str
) -> tuple[WorkflowState | None, list[WorkflowEvent]]:
    """The workflow's state (its last one in the table's changelog, also once it has left the
    table; told again from its history once compaction dropped that) and its history."""
    key = workflow_id.encode()
    async with PartitionReader(kafka) as reader:
        # The changelog record sits in the partition of the record that caused it (the raw
        # key's), under the table's JSON-encoded key.
        changes = await reader.read_key(
            names.changelog, key, match=json.dumps(workflow_id).encode()
        )
        events = await reader.read_key(names.workflow_events, key)
    history = [decode(r.value, WorkflowEvent) for r in events if r.value is not None]
    # A finished workflow leaves the table after its retention: a tombstone follows its last
    # state, which stays readable until compaction drops it; then the history tells it.
    last = next((r.value for r in reversed(changes) if r.value is not None), None)
    if last is not None:
        return WorkflowState.model_validate_json(last), history
    return state_from_history(history), history
