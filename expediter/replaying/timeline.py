"""One workflow's whole history in time order, across its topics, with the latency of each hop.

``expediter trace <workflow-id>`` reads every topic under a prefix that carries a workflow's
records: task topics (``tasks.*`` and the ``retry.*`` tiers), ``results``, the dead letters
(``dlq.*``) and the orchestrator's state (``workflows.events``, ``workflows.completed``). Every
one of them is keyed by workflow id, so only the key's partition of each is read.

Each entry names the earlier entry it follows from, and how long after it came (a hop):

- a result follows its task (``task_id``): queueing plus the agent's work;
- a dead letter follows the task record it holds (source topic, partition, offset);
- a redriven task follows the dead letter it came from (the redrive header);
- any other task follows the workflow event that started its step, else the result before it
  (the previous step), else the workflow's start;
- a workflow event about a step follows that step's result; the others follow the entry before.

Times are the events' ``created_at`` (the record timestamp for records that are not events), so
a hop between two machines includes their clock difference. Called by expediter.cli.replay.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from expediter.errors import ConfigurationError
from expediter.messaging import TopicNames
from expediter.messaging.partitionreading import Progress, Record
from expediter.replaying.deadletters import REDRIVE_HEADER, parse_ref
from expediter.replaying.reading import HistoryReader
from expediter.replaying.rendering import headers_of, parse_value, record_type, summary
from expediter.replaying.selecting import Selection
from expediter.replaying.times import from_ms, iso

__all__ = ["Entry", "Trace", "link", "trace_workflow"]

_STEP_DONE = ("step-completed", "step-late")
_WORKFLOW_DONE = ("completed", "failed")

Ref = tuple[str, int, int]


@dataclass(frozen=True)
class Entry:
    """One record of the workflow, and the hop that led to it."""

    at: datetime
    topic: str
    partition: int
    offset: int
    type: str
    step_id: str | None
    attempt: int | None
    summary: str
    value: Any
    headers: dict[str, str]
    after: str | None = None
    """The entry this one follows from (``topic/partition@offset``), if any."""
    after_type: str | None = None
    latency_ms: int | None = None

    @property
    def ref(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"

    @property
    def hop(self) -> str:
        if self.after_type is None or self.latency_ms is None:
            return ""
        return f"{self.after_type} → {self.type} {self.latency_ms} ms"

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "type": self.type,
            "step_id": self.step_id,
            "attempt": self.attempt,
            "summary": self.summary,
            "after": self.after,
            "after_type": self.after_type,
            "latency_ms": self.latency_ms,
            "value": self.value,
        }


@dataclass(frozen=True)
class Trace:
    workflow_id: str
    topics: tuple[str, ...]
    """The topics that were searched."""
    entries: tuple[Entry, ...]

    @property
    def duration_ms(self) -> int:
        if not self.entries:
            return 0
        return _ms(self.entries[-1].at - self.entries[0].at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow_id,
            "topics": list(self.topics),
            "records": len(self.entries),
            "duration_ms": self.duration_ms,
            "entries": [entry.as_dict() for entry in self.entries],
        }


async def trace_workflow(
    reader: HistoryReader,
    workflow_id: str,
    *,
    prefix: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    all_partitions: bool = False,
    progress: Callable[[str, int], Progress] | None = None,
) -> Trace:
    """Read ``workflow_id``'s records from every workflow topic under ``prefix`` and link them.

    ``progress(topic, offsets)`` may return a callback for each topic's read.
    """
    topics = TopicNames(prefix).workflow_topics(await reader.topics())
    if not topics:
        raise ConfigurationError(
            f"no workflow topics (tasks.*, results, dlq.*, workflows.events) under prefix "
            f"{prefix!r} on {reader.settings.bootstrap}: check --prefix, or create them with "
            "`expediter topics apply`"
        )
    plans = []
    for topic in topics:
        selection = Selection(
            topic=topic, workflow_id=workflow_id, since=since, until=until,
            all_partitions=all_partitions, allow_empty=True,
        )  # fmt: skip
        plans.append(await reader.plan(selection))
    records: list[Record] = []
    for plan in plans:
        callback = progress(plan.selection.topic, plan.total) if progress else None
        records.extend(await reader.records(plan, progress=callback))
    if not records:
        raise ConfigurationError(
            f"workflow {workflow_id!r}: no records in {len(topics)} topics under prefix "
            f"{prefix!r}{_window(since, until)}; check the id, --prefix and the time range"
        )
    return Trace(workflow_id=workflow_id, topics=tuple(topics), entries=tuple(link(records)))


def _window(since: datetime | None, until: datetime | None) -> str:
    parts = [f"since {iso(since)}" if since else "", f"until {iso(until)}" if until else ""]
    text = " ".join(p for p in parts if p)
    return f" ({text})" if text else ""


def _entry(record: Record) -> Entry:
    headers = headers_of(record.headers)
    document = parse_value(record.value)
    kind = record_type(headers, document, record.value)
    at = from_ms(record.timestamp)
    step_id: str | None = None
    attempt: int | None = None
    if isinstance(document, dict):
        created = document.get("created_at")
        if isinstance(created, str):
            with contextlib.suppress(ValueError):
                at = datetime.fromisoformat(created)
        step_id = document.get("step_id") if isinstance(document.get("step_id"), str) else None
        attempt = document.get("attempt") if isinstance(document.get("attempt"), int) else None
    return Entry(
        at=at,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        type=kind,
        step_id=step_id,
        attempt=attempt,
        summary=summary(kind, document, record.value),
        value=document,
        headers=headers,
    )


def link(records: Iterable[Record]) -> list[Entry]:
    """The records as entries in time order, each with the hop that led to it. Pure."""
    entries = sorted(
        (_entry(r) for r in records), key=lambda e: (e.at, e.topic, e.partition, e.offset)
    )
    linked: list[Entry] = []
    by_ref: dict[Ref, Entry] = {}
    for entry in entries:
        before = _predecessor(entry, linked, by_ref)
        if before is not None:
            entry = Entry(
                **{**entry.__dict__, "after": before.ref, "after_type": before.type,
                   "latency_ms": _ms(entry.at - before.at)},
            )  # fmt: skip
        linked.append(entry)
        by_ref[(entry.topic, entry.partition, entry.offset)] = entry
    return linked


def _predecessor(entry: Entry, earlier: list[Entry], by_ref: dict[Ref, Entry]) -> Entry | None:
    value = entry.value if isinstance(entry.value, dict) else {}

    def latest(test: Callable[[Entry], bool]) -> Entry | None:
        return next((e for e in reversed(earlier) if test(e)), None)

    if entry.type == "result":
        task_id = value.get("task_id")
        found = latest(lambda e: e.type == "task" and _field(e, "event_id") == task_id)
        return found or latest(lambda e: e.type == "task" and e.step_id == entry.step_id)
    if entry.type == "dead-letter":
        source = (
            value.get("source_topic"),
            value.get("source_partition"),
            value.get("source_offset"),
        )
        held = by_ref.get(source) if None not in source else None  # type: ignore[arg-type]
        return held or latest(lambda e: e.type == "task" and e.step_id == entry.step_id)
    if entry.type == "task":
        redriven = entry.headers.get(REDRIVE_HEADER)
        ref = parse_ref(redriven) if redriven else None
        if ref is not None and ref in by_ref:
            return by_ref[ref]
        return (
            latest(lambda e: e.type == "workflow" and _field(e, "status") == "step-started"
                   and e.step_id == entry.step_id)
            or latest(lambda e: e.type == "result")
            or latest(lambda e: e.type == "workflow")
        )  # fmt: skip
    if entry.type == "workflow":
        status = value.get("status")
        if status in _STEP_DONE and entry.step_id:
            found = latest(lambda e: e.type == "result" and e.step_id == entry.step_id)
            if found is not None:
                return found
        if status in _WORKFLOW_DONE:
            found = latest(lambda e: e.type == "result")
            if found is not None:
                return found
    return earlier[-1] if earlier else None


def _field(entry: Entry, name: str) -> Any:
    return entry.value.get(name) if isinstance(entry.value, dict) else None


def _ms(delta: timedelta) -> int:
    return round(delta.total_seconds() * 1000)
