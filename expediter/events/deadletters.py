"""Building the :class:`~expediter.events.DeadLetter` of a record, within one bound.

A dead letter keeps the original record (key, headers, value, base64-encoded) with the reason
and the origin. It must fit in the broker's message limit whatever the original was: a record
just under the limit, base64-encoded (4/3), would not, and a dead letter that cannot be
published fails the whole transaction it is in, so the worker's partitions (or the
orchestrator's stream) would stall on one record. So at most :data:`KEPT_BYTES` of the original
are kept, the key first, then the headers (names and values), then the value, each cut to what
is left; ``truncated`` says when anything was cut, and redrive refuses such a letter
(:mod:`expediter.replaying.deadletters`): the whole record stays at its source topic, partition
and offset.

Called by the worker (:mod:`expediter.worker.failing`) and the orchestrator
(:mod:`expediter.orchestrator.deadlettering`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any, Protocol

from expediter.events.envelope import Producer
from expediter.events.kinds import DeadLetter, DeadLetterReason, TaskEvent

__all__ = ["KEPT_BYTES", "MAX_DETAIL_CHARS", "SourceRecord", "dead_letter"]

KEPT_BYTES = 256 * 1024
"""Of the original record, at most this many bytes are kept (key, header names and values, and
value together). Base64 makes them 342 KiB at most, and the detail adds 10,000 characters (at
most 60 KB JSON-escaped): a dead letter stays under 512 KiB, half the broker's default 1 MB
``message.max.bytes`` and the producers' 1 MB ``max.request.size``."""
MAX_DETAIL_CHARS = 10_000
"""Of the error's text; the model refuses more."""


class SourceRecord(Protocol):
    """What a dead letter is built from: an aiokafka ``ConsumerRecord`` or a Faust message."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Any:
        """(name, value) pairs, or None."""


class _Budget:
    """What is left of :data:`KEPT_BYTES`, and whether anything was cut."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.cut = False

    def take(self, data: bytes) -> bytes:
        kept = data[: self.left]
        self.left -= len(kept)
        self.cut = self.cut or len(kept) < len(data)
        return kept

    def take_text(self, text: str) -> str:
        return self.take(text.encode()).decode(errors="ignore")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dead_letter(
    record: SourceRecord,
    producer: Producer,
    *,
    reason: DeadLetterReason,
    detail: str,
    task: TaskEvent[Any] | None = None,
    attempt: int | None = None,
) -> DeadLetter:
    """The dead letter of ``record``: where it came from, why, and its bytes up to
    :data:`KEPT_BYTES` (``truncated`` says when only a prefix is kept). ``task``, when the
    record decoded as one, names its workflow, step and capability."""
    budget = _Budget(KEPT_BYTES)
    key = budget.take(record.key) if record.key is not None else None
    headers: Iterable[tuple[str, Any]] = record.headers or ()
    # A header's value may be null in Kafka; the letter keeps it as empty.
    kept_headers = [
        (budget.take_text(name), _b64(budget.take(bytes(v or b"")))) for name, v in headers
    ]
    value = record.value or b""
    kept_value = budget.take(value)
    return DeadLetter(
        producer=producer,
        reason=reason,
        detail=detail[:MAX_DETAIL_CHARS],
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        original_key=_b64(key) if key is not None else None,
        original_value=_b64(kept_value),
        original_headers=kept_headers,
        workflow_id=task.workflow_id if task else None,
        step_id=task.step_id if task else None,
        capability=task.capability if task else None,
        attempt=attempt if attempt is not None else (task.attempt if task else None),
        truncated=budget.cut,
        original_value_bytes=len(value),
    )
