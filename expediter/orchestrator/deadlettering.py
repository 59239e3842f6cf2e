"""What the orchestrator does with a record it cannot handle: a dead letter in ``dlq.orchestrator``.

A command or result that does not decode, names a workflow this orchestrator does not know, or
makes the handling raise would otherwise stop the stream for good: every restart reads it
again. Instead it becomes a :class:`~expediter.events.DeadLetter` (the reason, the error, the
source topic, partition and offset, and the original record up to a bound, built by
:func:`expediter.events.deadletters.dead_letter` as the worker's are), written in the same
transaction as the record's offset, so it is neither lost nor handled twice. ``expediter dlq list
orchestrator`` shows them. A workflow's own code failing is not a dead letter: it fails that
workflow (:mod:`expediter.orchestrator.stepping`).

Called by :mod:`expediter.orchestrator.running`.
"""

from __future__ import annotations

from typing import Any

from expediter.errors import DecodeError, ExpediterError
from expediter.events import DeadLetter, DeadLetterReason, Producer
from expediter.events import deadletters as letters

__all__ = ["Unhandled", "dead_letter"]


class Unhandled(ExpediterError):
    """A record the orchestrator can decode but not act on; ``reason`` names why."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: DeadLetterReason = reason


def dead_letter(message: Any, error: BaseException, producer: Producer) -> DeadLetter:
    """The dead letter for Faust's ``message`` (topic, partition, offset, key, value, headers)."""
    reason: DeadLetterReason
    if isinstance(error, DecodeError | Unhandled):
        reason, detail = error.reason, str(error)
    else:
        reason, detail = "handling-failed", f"{error!r}"
    return letters.dead_letter(message, producer, reason=reason, detail=detail)
