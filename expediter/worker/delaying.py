"""Non-blocking retries: delay tiers, so that a task waiting out a long backoff does not hold
its partition (Uber's retry topics, Spring Kafka's non-blocking retries).

The catalog creates ``retry.<capability>.<N>s`` per capability (10 s and 60 s). A task's
retriable failure is first retried in place, with a short backoff, up to
``EXPEDITER_MAX_ATTEMPTS`` tries (a blip costs milliseconds). If it still fails, the task does
not sleep in its partition: :meth:`RetryTiers.move` gives the record to publish to the next
tier, with the time it is due in a header, and the worker publishes it in the same transaction
as the source offset, like a result (:mod:`expediter.worker.committing`): the task is either
still in the source partition or already in the tier, never lost and never in both. From
``tasks.<c>`` it goes to the first tier, from a tier to the next; after the last tier, or when
the task's deadline comes before the tier's delay ends (the orchestrator would have stopped
waiting), it is exhausted: a failure result and a dead letter, as before.

The worker reads the tier topics in its own group, beside the task topic. A tier record runs
once it is due (:meth:`Delays.until_due`): the wait holds only that tier partition, whose
records all wait the same delay and so come due in order, while every other partition goes on.
A stop or a revocation ends the wait without running the record; it is not committed, and runs
from the tier again after the restart or on the partition's new owner, at its due time.

Key order: a tier takes one task out of its partition's order, so tasks behind it, of other
workflows, run first; that is the point. Within one workflow nothing is reordered: the
orchestrator dispatches a workflow's next step only once the step before it has a result, so a
workflow has at most one task per capability in flight (a parallel group's steps are
independent by design). A task published straight to ``tasks.<c>`` (``submit <capability>``),
with no orchestrator between, can be overtaken by a later task of the same key while it waits
in a tier.

Called by :mod:`expediter.worker.processing` (the move) and :mod:`expediter.worker.working`
(the wait, the subscription).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition

from expediter.events import OutgoingRecord, TaskEvent, TraceParent, to_record
from expediter.messaging import TopicNames

__all__ = [
    "RETRY_DUE_HEADER",
    "RETRY_TRIES_HEADER",
    "Delays",
    "RetryTiers",
    "Tier",
    "due_at",
    "prior_tries",
]

RETRY_DUE_HEADER = "expediter-retry-due"
"""On a tier record: when it may run again, in milliseconds since the epoch."""
RETRY_TRIES_HEADER = "expediter-retry-tries"
"""On a tier record: the tries used before it (the result's ``tries`` counts them all)."""
RETRY_ORIGIN_HEADER = "expediter-retry-origin"
"""On a tier record: ``<topic>/<partition>/<offset>`` of the record it was moved from."""


@dataclass(frozen=True)
class Tier:
    topic: str
    seconds: int


def _header(record: ConsumerRecord[bytes, bytes], name: str) -> int | None:
    for key, value in record.headers or ():
        if key == name:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def prior_tries(record: ConsumerRecord[bytes, bytes]) -> int:
    """Tries a task had before this delivery: 0 on its task topic."""
    return max(_header(record, RETRY_TRIES_HEADER) or 0, 0)


def due_at(record: ConsumerRecord[bytes, bytes]) -> float | None:
    """When a tier record is due (seconds since the epoch); None for a record without one."""
    due = _header(record, RETRY_DUE_HEADER)
    return None if due is None else due / 1000


class RetryTiers:
    """The tiers of one capability, shortest delay first; see the module docstring."""

    def __init__(self, names: TopicNames, capability: str, seconds: list[int]) -> None:
        self.tasks_topic = names.tasks(capability)
        self.tiers = [
            Tier(f"{names.prefix}retry.{capability}.{n}s", n) for n in sorted(set(seconds))
        ]
        self.topics = {tier.topic for tier in self.tiers}

    def next_after(self, topic: str) -> Tier | None:
        """The tier a task failing on ``topic`` moves to; None after the last."""
        if topic == self.tasks_topic:
            return self.tiers[0] if self.tiers else None
        for n, tier in enumerate(self.tiers[:-1]):
            if tier.topic == topic:
                return self.tiers[n + 1]
        return None

    def move(
        self,
        record: ConsumerRecord[bytes, bytes],
        task: TaskEvent[Any],
        trace: TraceParent,
        tries: int,
        now: datetime | None = None,
    ) -> tuple[str, OutgoingRecord] | None:
        """The tier record for ``task`` after ``tries`` tries, or None when it is exhausted
        (no tier left, or its deadline ends before the tier's delay)."""
        tier = self.next_after(record.topic)
        if tier is None:
            return None
        now = now or datetime.now(UTC)
        due = now + timedelta(seconds=tier.seconds)
        if task.deadline is not None and task.deadline <= due:
            return None
        moved = to_record(task, trace=trace)
        origin = f"{record.topic}/{record.partition}/{record.offset}"
        headers = [(name, value) for name, value in moved.headers]
        headers += [
            (RETRY_DUE_HEADER, str(int(due.timestamp() * 1000)).encode()),
            (RETRY_TRIES_HEADER, str(tries).encode()),
            (RETRY_ORIGIN_HEADER, origin.encode()),
        ]
        return tier.topic, OutgoingRecord(key=moved.key, value=moved.value, headers=headers)

    async def present(self, producer: AIOKafkaProducer, log: logging.Logger) -> bool:
        """True if every tier topic exists; otherwise say which are missing, once, at start."""
        cluster = await producer.client.fetch_all_metadata()
        missing = sorted(self.topics - set(cluster.topics()))
        if missing:
            log.warning(
                "retry tiers off: %s missing; a task whose in-place tries are used up fails "
                "at once (`expediter topics apply` creates them; EXPEDITER_RETRY_TIERS='[]' "
                "turns tiers off without this warning)",
                ", ".join(missing),
            )
        return not missing


class Delays:
    """Waits for tier records to come due, per partition, without holding any other.

    A wait ends early (returning False) when the worker stops or the partition is revoked: the
    record then is not run, not committed, and runs again from the tier where it is read next.
    """

    def __init__(self, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        self._wakers: dict[TopicPartition, asyncio.Event] = {}

    async def until_due(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Wait until ``record`` is due; True to run it now, False to leave it."""
        due = due_at(record)
        if due is None:
            return True
        waker = self._wakers.setdefault(tp, asyncio.Event())
        while True:
            if self._stopping.is_set() or waker.is_set():
                return False
            left = due - time.time()
            if left <= 0:
                return True
            stop = asyncio.ensure_future(self._stopping.wait())
            woken = asyncio.ensure_future(waker.wait())
            try:
                await asyncio.wait([stop, woken], timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                woken.cancel()

    def release(self, partitions: set[TopicPartition]) -> None:
        """``partitions`` are being revoked: end their waits now (the new owner runs them)."""
        for tp in partitions:
            waker = self._wakers.pop(tp, None)
            if waker is not None:
                waker.set()
