"""Encoding a succeeded result from a template: the worker's hot path, without a model.

A worker with a quick handler spends most of each task building a :class:`ResultEvent` and
serialising it, for a JSON document that differs from the last one in a dozen values. So
:class:`ResultTemplate` serialises one prototype result once, with a marker in each value that
changes from task to task, and cuts the JSON at the markers; a task's record is the pieces
joined around its own values. What is not a slot (the producer, the schema version, the type,
the status, every field added later with a default) comes from the model's own serialiser, so
the template follows the schema by construction.

The values are already valid: the task's coordinates come from the decoded, validated task,
whose identifier pattern admits no character that JSON escapes; the output is an instance of
the agent's output model and is serialised by its own pydantic serialiser; times are formatted
as pydantic formats them. The tests check the bytes against ``encode(ResultEvent(...))``.
Called by the worker (:mod:`expediter.worker.processing`).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, TypeAdapter

from expediter.events.coding import encode
from expediter.events.envelope import Producer
from expediter.events.kinds import ReasoningCall, ResultEvent, TaskEvent, TokenUsage
from expediter.events.records import OutgoingRecord, event_headers
from expediter.events.tracing import TraceParent

__all__ = ["ResultTemplate"]

_DATETIME: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)
_ZERO_USAGE = TokenUsage()

# One marker per slot: values that the model accepts and nothing else in a result contains.
_MARKERS: dict[str, Any] = {
    "event_id": uuid.UUID(int=0xE0E0),
    "created_at": datetime(1970, 1, 2, 3, 4, 5, 67, tzinfo=UTC),
    "workflow_id": "slot-workflow-id-5e1f",
    "step_id": "slot-step-id-5e1f",
    "capability": "slot-capability-5e1f",
    "attempt": 987,
    "deadline": datetime(1970, 1, 3, 3, 4, 5, 67, tzinfo=UTC),
    "task_id": uuid.UUID(int=0x7A7A),
    "output": {"slot-output-5e1f": 987},
    "usage": TokenUsage(prompt_tokens=987_651, completion_tokens=987_652),
    "duration_ms": 987_653,
    "tries": 987_654,
    "estimated_tokens": 987_655,
    "estimate_source": "estimator",
    "input_bytes": 987_656,
}

_QUOTED = {"event_id", "created_at", "workflow_id", "step_id", "capability", "task_id"}
"""Slots whose value is always a JSON string (``deadline`` may be null)."""


class ResultTemplate:
    """The records of succeeded results written by ``producer``: ``template.record(task, ...)``."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        prototype = ResultEvent(producer=producer, status="succeeded", **_MARKERS)
        document = encode(prototype)
        cuts: list[tuple[int, int, str]] = []
        for name, marker in _MARKERS.items():
            value = _marker_json(marker)
            needle = b'"' + name.encode() + b'":' + value
            at = document.find(needle)
            if at < 0 or document.find(needle, at + 1) >= 0:
                raise RuntimeError(f"ResultTemplate: no single slot for {name!r} in {document!r}")
            start = at + len(needle) - len(value)
            if name in _QUOTED:  # the quotes stay in the template
                cuts.append((start + 1, start + len(value) - 1, name))
            else:
                cuts.append((start, start + len(value), name))
        if [name for *_, name in sorted(cuts)] != list(_MARKERS):
            # record() fills the slots in _MARKERS' order, which must be the serialiser's.
            raise RuntimeError(f"ResultTemplate: slots out of order in {document!r}")
        pieces: list[bytes] = []
        position = 0
        for start, end, _ in sorted(cuts):
            pieces.append(document[position:start])
            position = end
        pieces.append(document[position:])
        self.pieces = tuple(pieces)
        self._zero_usage = encode(_ZERO_USAGE)
        self._headers = event_headers("result", prototype.schema_version)

    def record(
        self, task: TaskEvent[Any], output: BaseModel, *, attempt: int, usage: TokenUsage,
        duration_ms: int, trace: TraceParent, event_id: uuid.UUID | None = None,
        created_at: datetime | None = None, tries: int = 1,
        reasoning: Sequence[ReasoningCall] = (), estimate: tuple[int, str, int] | None = None,
    ) -> OutgoingRecord:  # fmt: skip
        """The result record of ``task``, equal to ``to_record(ResultEvent(...), trace=trace)``.

        ``estimate`` is (estimated tokens, its source, the task record's bytes), or None.

        ``event_id`` and ``created_at`` (UTC) default to a new id and now, as the model's do.
        A result with ``reasoning`` records is encoded by the model itself: its task waited for
        an engine, so the template's saving is nothing next to it.
        """
        if reasoning:
            return self._encoded(
                task, output, attempt=attempt, usage=usage, duration_ms=duration_ms, trace=trace,
                event_id=event_id, created_at=created_at, tries=tries, reasoning=reasoning,
                estimate=estimate,
            )  # fmt: skip
        p = self.pieces
        tokens, source, size = (
            (b"null", b"null", b"null") if estimate is None
            else (str(estimate[0]).encode(), b'"%s"' % estimate[1].encode(),
                  str(estimate[2]).encode())
        )  # fmt: skip
        deadline = task.deadline
        value = b"".join((
            p[0], str(event_id).encode() if event_id else _new_id(),
            p[1], _time(created_at) if created_at else _now(),
            p[2], task.workflow_id.encode(),
            p[3], task.step_id.encode(),
            p[4], task.capability.encode(),
            p[5], str(attempt).encode(),
            p[6], b"null" if deadline is None else _DATETIME.dump_json(deadline),
            p[7], str(task.event_id).encode(),
            p[8], output.__pydantic_serializer__.to_json(output, by_alias=True),
            p[9], encode(usage) if usage.prompt_tokens or usage.completion_tokens
                  else self._zero_usage,
            p[10], str(duration_ms).encode(),
            p[11], str(tries).encode(),
            p[12], tokens,
            p[13], source,
            p[14], size,
            p[15],
        ))  # fmt: skip
        return OutgoingRecord(task.workflow_id.encode(), value, [trace.header(), *self._headers])

    def _encoded(
        self, task: TaskEvent[Any], output: BaseModel, *, attempt: int, usage: TokenUsage,
        duration_ms: int, trace: TraceParent, event_id: uuid.UUID | None,
        created_at: datetime | None, tries: int, reasoning: Sequence[ReasoningCall],
        estimate: tuple[int, str, int] | None = None,
    ) -> OutgoingRecord:  # fmt: skip
        optional: dict[str, Any] = {"event_id": event_id} if event_id else {}
        if estimate is not None:
            optional.update(estimated_tokens=estimate[0], estimate_source=estimate[1],
                            input_bytes=estimate[2])  # fmt: skip
        if created_at is not None:
            optional["created_at"] = created_at
        # Parametrised by the output's own model (pydantic caches it), so that the output is
        # serialised as the template serialises it.
        model: type[ResultEvent[Any]] = ResultEvent[type(output)]  # type: ignore[misc,assignment]
        result = model(
            producer=self.producer, workflow_id=task.workflow_id, step_id=task.step_id,
            capability=task.capability, attempt=attempt, deadline=task.deadline,
            task_id=task.event_id, status="succeeded", output=output, usage=usage,
            duration_ms=duration_ms, tries=tries, reasoning=list(reasoning), **optional,
        )  # fmt: skip
        return OutgoingRecord(
            task.workflow_id.encode(), encode(result), [trace.header(), *self._headers]
        )


def _marker_json(marker: Any) -> bytes:
    if isinstance(marker, BaseModel):
        return encode(marker)
    return TypeAdapter(type(marker)).dump_json(marker)


def _time(moment: datetime) -> bytes:
    """``moment`` (UTC) as pydantic writes it: ISO 8601 with ``Z``, microseconds if any."""
    return moment.isoformat().replace("+00:00", "Z").encode()


class _Clock:
    """Now as :func:`_time` writes it, with the date and time formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = b""

    def now(self) -> bytes:
        nanos = time.time_ns()
        second, micros = nanos // 1_000_000_000, nanos // 1000 % 1_000_000
        if second != self._second:
            moment = datetime.fromtimestamp(second, UTC)
            self._second, self._prefix = second, moment.strftime("%Y-%m-%dT%H:%M:%S").encode()
        return self._prefix + (b".%06dZ" % micros if micros else b"Z")


_now = _Clock().now


def _new_id() -> bytes:
    """A random (version 4) UUID, as text: what ``str(uuid.uuid4())`` gives, three times faster.

    An event id must be unique, not secret: ``random``'s generator (seeded from the OS, and
    reseeded in a forked child) spares the system call and the UUID object.
    """
    bits = random.getrandbits(128) & _V4_CLEAR | _V4_SET
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}".encode()


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)
