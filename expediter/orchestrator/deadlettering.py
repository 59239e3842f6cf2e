"""What the orchestrator does with a record it cannot handle: a dead letter in ``dlq.orchestrator``.

A command or result that does not decode, names a workflow this orchestrator does not know, or
makes the handling raise would otherwise stop the stream for good: every restart reads it
again. Instead it becomes a :class:`~expediter.events.DeadLetter` (the reason, the error, the
source topic, partition and offset, and the original record), written in the same transaction
as the record's offset, so it is neither lost nor handled twice. ``expediter dlq list
orchestrator`` shows them. A workflow's own code failing is not a dead letter: it fails that
workflow (:mod:`expediter.orchestrator.stepping`).

Called by :mod:`expediter.orchestrator.running`.
"""

from __future__ import annotations

import base64
from typing import Any

from expediter.errors import DecodeError, ExpediterError
from expediter.events import DeadLetter, DeadLetterReason, Producer

__all__ = ["MAX_ORIGINAL_BYTES", "Unhandled", "dead_letter"]

MAX_ORIGINAL_BYTES = 256 * 1024
"""Of the original value, at most this much is kept (base64 grows it by a third): a dead letter
must fit the broker's 1 MB message limit, or its own transaction fails and the stream stalls."""


class Unhandled(ExpediterError):
    """A record the orchestrator can decode but not act on; ``reason`` names why."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: DeadLetterReason = reason


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dead_letter(message: Any, error: BaseException, producer: Producer) -> DeadLetter:
    """The dead letter for Faust's ``message`` (topic, partition, offset, key, value, headers)."""
    reason: DeadLetterReason
    if isinstance(error, DecodeError | Unhandled):
        reason, detail = error.reason, str(error)
    else:
        reason, detail = "handling-failed", f"{error!r}"
    value: bytes = message.value or b""
    if len(value) > MAX_ORIGINAL_BYTES:
        detail += (
            f" (original value truncated to its first {MAX_ORIGINAL_BYTES} of {len(value)} bytes)"
        )
        value = value[:MAX_ORIGINAL_BYTES]
    return DeadLetter(
        producer=producer,
        reason=reason,
        detail=detail[:10_000],
        source_topic=message.topic,
        source_partition=message.partition,
        source_offset=message.offset,
        original_key=_b64(message.key) if message.key is not None else None,
        original_value=_b64(value),
        original_headers=[(name, _b64(bytes(v))) for name, v in message.headers or ()],
    )
