"""Where a round trip's time goes, read from the records themselves.

Every record carries a W3C ``traceparent`` (expediter/events/tracing.py); a workflow's records
(its start command, its tasks, their results, its completion) all keep the trace id of its start
command, and a result keeps its task's. Each record also has a Kafka timestamp, set when its
producer sent it. A :class:`Tap` reads the topics (read_committed, as the runtime's readers do)
and notes when each record became visible, so for every record on a workflow's path:

- ``X.created - P.seen``: the consumer of the record before (P) fetched it and did its work
  until it sent X (the orchestrator stepping, or a worker running its handler);
- ``X.seen - X.created``: X's producer committed its transaction, the markers were written and a
  reader's fetch returned it (the commit wait, where a fixed commit interval shows).

:func:`critical_path` walks back from the completion: a result follows its task (``task_id``), a
task or the completion follows the result that unblocked it (the last one to become visible
before it was sent), and the first tasks follow the start command. Its length is the number of
Kafka hops on the workflow's critical path. Clocks: timestamps and reads are this machine's
wall clock (one machine in the benches), with the timestamps' millisecond resolution.

Imported by bench_orchestrator.py and bench_worker.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from expediter.events import trace_from_headers
from expediter.messaging import client_options
from expediter.messaging.topology import partition_count
from expediter.settings import KafkaSettings

__all__ = ["STAGES", "Seen", "Tail", "Tap", "critical_path", "medians", "stages", "trace_id"]

STAGES = ("submit", "orchestrator", "orchestrator_commit", "worker", "worker_commit")
"""The breakdown of a workflow's round trip, in ms, summed over its critical path."""

_TOLERANCE_S = 0.005
"""A consumer may see a record a little before the tap does: a trigger seen up to this much
after the record it unblocked still counts."""


def trace_id(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    parent = trace_from_headers(list(headers or ()))
    return None if parent is None else parent.trace_id


@dataclass(frozen=True)
class Seen:
    """One record as the tap saw it; times in seconds of the wall clock."""

    kind: str
    """``command``, ``task``, ``result`` or ``completed``."""
    created: float
    seen: float
    value: dict[str, Any]


class Tail:
    """Reads ``topics`` from their end (the positions resolved on entry, before anything is
    sent), read_committed, in a task; a subclass handles each fetch in :meth:`on_fetch`."""

    def __init__(self, settings: KafkaSettings, topics: Iterable[str]) -> None:
        self.settings = settings
        self._topics = list(topics)
        self._consumer = AIOKafkaConsumer(
            **client_options(settings), enable_auto_commit=False, isolation_level="read_committed"
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        tps = [
            TopicPartition(topic, p)
            for topic in self._topics
            for p in range(await partition_count(self._consumer._client, topic))
        ]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:
            await self._consumer.position(tp)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    def check(self) -> None:
        """Raise what stopped the reading task, if it stopped."""
        if self._task is not None and self._task.done():
            self._task.result()

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            if batches:
                self.on_fetch(batches)

    def on_fetch(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        raise NotImplementedError


class Tap(Tail):
    """Reads ``topics`` (name -> kind) from their end, read_committed; records by trace id."""

    def __init__(self, settings: KafkaSettings, topics: dict[str, str]) -> None:
        super().__init__(settings, topics)
        self.topics = topics
        self.by_trace: dict[str, list[Seen]] = defaultdict(list)

    def on_fetch(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        now = time.time()
        for tp, records in batches.items():
            kind = self.topics[tp.topic]
            for r in records:
                trace = trace_id(r.headers)
                if trace is not None:
                    value = json.loads(r.value) if r.value else {}
                    self.by_trace[trace].append(Seen(kind, r.timestamp / 1000, now, value))


def critical_path(records: Sequence[Seen]) -> list[Seen] | None:
    """From the start command to the completion, or None while the trace is incomplete."""
    finals = [r for r in records if r.kind == "completed"]
    commands = [r for r in records if r.kind == "command"]
    if not finals or not commands:
        return None
    tasks = {r.value.get("event_id"): r for r in records if r.kind == "task"}
    results = [r for r in records if r.kind == "result"]
    path = [finals[0]]
    while path[-1].kind != "command":
        current = path[-1]
        if current.kind == "result":
            before = tasks.get(current.value.get("task_id"))
            if before is None:
                return None
        else:
            sent_before = [r for r in results if r.created <= current.created]
            gating = [r for r in sent_before if r.seen <= current.created + _TOLERANCE_S]
            candidates = gating or sent_before
            before = max(candidates, key=lambda r: r.seen) if candidates else commands[0]
        path.append(before)
    return path[::-1]


def stages(path: Sequence[Seen], sent: float) -> dict[str, float]:
    """The path's time in ms by :data:`STAGES`; ``sent``: when the command was sent."""
    spent = dict.fromkeys(STAGES, 0.0)
    spent["submit"] = (path[0].seen - sent) * 1000
    for before, record in itertools.pairwise(path):
        side = "worker" if record.kind == "result" else "orchestrator"
        spent[side] += (record.created - before.seen) * 1000
        spent[f"{side}_commit"] += (record.seen - record.created) * 1000
    return spent


def medians(rows: Iterable[dict[str, float]], digits: int = 2) -> dict[str, float]:
    """Each field's median over ``rows``."""
    columns: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for name, value in row.items():
            columns[name].append(value)
    return {name: round(statistics.median(values), digits) for name, values in columns.items()}
