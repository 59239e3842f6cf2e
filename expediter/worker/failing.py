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

A dead letter is built by :func:`expediter.events.deadletters.dead_letter` (the orchestrator's
too), which keeps a bounded prefix of the original record.

Called by :mod:`expediter.worker.processing`.
"""

from __future__ import annotations

from typing import Any

from expediter.errors import EngineError, TaskFailure
from expediter.events import Producer, ResultEvent, TaskError, TaskEvent
from expediter.events.deadletters import dead_letter

__all__ = [
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
