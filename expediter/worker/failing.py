"""What a failed task turns into: a failure ResultEvent, a DeadLetter, or a retry after backoff.

The policy, in one place:

- A record that is not a valid task (oversized, undecodable, invalid, another schema major)
  goes to ``dlq.<capability>`` with the reason; if its envelope is readable, the orchestrator
  also gets a failure result, so that the workflow does not wait for ever.
- A task for another capability (``wrong-capability``): the same, a dead letter plus a
  failure result; serving it would answer with the wrong agent.
- :class:`~expediter.errors.PermanentError` (and a non-retriable engine error): a failure result
  plus a dead letter, at once.
- Anything else a handler raises, a timeout included, is retriable: retried in place after
  :func:`backoff` until ``max_attempts``, then a failure result plus a dead letter
  (``exhausted``).

Called by :mod:`expediter.worker.processing`.
"""

from __future__ import annotations

import base64
from typing import Any

from aiokafka.structs import ConsumerRecord

from expediter.errors import EngineError, TaskFailure
from expediter.events import (
    DeadLetter,
    DeadLetterReason,
    Producer,
    ResultEvent,
    TaskError,
    TaskEvent,
)

__all__ = [
    "KEPT_VALUE_BYTES",
    "backoff",
    "dead_letter",
    "failure_result",
    "is_retriable",
    "task_error",
]

_MAX_BACKOFF = 30.0


def backoff(first: float, attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: first, 2 x first, 4 x first ... <= 30 s."""
    return float(min(first * 2 ** max(attempt - 1, 0), _MAX_BACKOFF))


def is_retriable(exc: BaseException) -> bool:
    if isinstance(exc, TaskFailure | EngineError):
        return exc.retriable
    return True  # an unexpected bug may be a flaky dependency: give it the attempts


def task_error(exc: BaseException) -> TaskError:
    if isinstance(exc, TaskFailure):
        code = exc.code
    elif isinstance(exc, TimeoutError):
        code = "timeout"
    elif isinstance(exc, EngineError):
        code = "engine"
    else:
        code = type(exc).__name__
    message = str(exc) or type(exc).__name__
    return TaskError(retriable=is_retriable(exc), code=code[:100], message=message[:10_000])


def failure_result(
    task: TaskEvent[Any], producer: Producer, error: TaskError, *, duration_ms: int, tries: int = 1
) -> ResultEvent:
    """The failure result of ``task``: the dispatched attempt, and the in-place tries."""
    return ResultEvent(
        producer=producer,
        workflow_id=task.workflow_id,
        step_id=task.step_id,
        capability=task.capability,
        attempt=task.attempt,
        tries=tries,
        deadline=task.deadline,
        task_id=task.event_id,
        status="failed",
        error=error,
        duration_ms=duration_ms,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


KEPT_VALUE_BYTES = 64 * 1024
"""How much of a dead-lettered record's value the dead letter keeps. The dead letter must fit
in the broker's message limit (1 MB by default) whatever the original: a record just under the
limit, base64-encoded (4/3), would not, and a dead letter that cannot be published fails its
whole transaction, so every partition would stall on one record."""
KEPT_KEY_BYTES = 4 * 1024
KEPT_HEADER_BYTES = 16 * 1024
"""Over all headers' values together; the names are kept whole (the broker bounds them)."""


def _kept(data: bytes, limit: int) -> tuple[bytes, bool]:
    return (data[:limit], True) if len(data) > limit else (data, False)


def dead_letter(
    record: ConsumerRecord[bytes, bytes],
    producer: Producer,
    *,
    reason: DeadLetterReason,
    detail: str,
    task: TaskEvent[Any] | None = None,
    attempt: int | None = None,
) -> DeadLetter:
    """The DLQ entry for ``record``: where it came from, and its bytes, up to a bounded prefix
    (``truncated`` says when only a prefix is kept)."""
    value, value_cut = _kept(record.value or b"", KEPT_VALUE_BYTES)
    key, key_cut = _kept(record.key, KEPT_KEY_BYTES) if record.key is not None else (None, False)
    headers: list[tuple[str, str]] = []
    budget, headers_cut = KEPT_HEADER_BYTES, False
    for name, header in record.headers or ():
        kept, cut = _kept(header, budget)
        budget -= len(kept)
        headers.append((name[:1024], _b64(kept)))
        headers_cut = headers_cut or cut or len(name) > 1024
    return DeadLetter(
        producer=producer,
        reason=reason,
        detail=detail[:10_000],
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        original_key=_b64(key) if key is not None else None,
        original_value=_b64(value),
        original_headers=headers,
        workflow_id=task.workflow_id if task else None,
        step_id=task.step_id if task else None,
        capability=task.capability if task else None,
        attempt=attempt if attempt is not None else (task.attempt if task else None),
        truncated=value_cut or key_cut or headers_cut,
        original_value_bytes=len(record.value or b""),
    )
