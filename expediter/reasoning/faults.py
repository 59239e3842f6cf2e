"""Engine failures that say why they happened, so that routing knows whether to fall back.

The engines raise :class:`EngineFault` (an :class:`~expediter.errors.EngineError`, so every
caller that handles engine errors handles it too) with one of the reasons of
:data:`~expediter.events.FallbackReason`; :func:`fault_reason` reads it back from any exception.
An :class:`~expediter.errors.EngineError` without a reason (no rulebook, a 4xx, a prompt too
long) is ``refused``: a configuration or request error that the next engine would not cure, so
routing ends the call there. Raised by the engines, read by :mod:`expediter.reasoning.routing`.
"""

from __future__ import annotations

from typing import Literal, get_args

from expediter.errors import EngineError
from expediter.events import FallbackReason, ReasoningCall

__all__ = ["FALLBACK_REASONS", "EngineFault", "FailureReason", "fault_reason"]

FailureReason = Literal[FallbackReason, "refused"]
FALLBACK_REASONS: frozenset[str] = frozenset(get_args(FallbackReason))


class EngineFault(EngineError):
    """An engine error with its reason; ``routing`` holds the routing record of the call it
    ended (set by :class:`~expediter.reasoning.routing.RoutingEngine`), so that the failure
    result still says which engines were tried."""

    def __init__(
        self,
        message: str,
        *,
        reason: FailureReason,
        retriable: bool,
        routing: ReasoningCall | None = None,
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.reason: FailureReason = reason
        self.routing = routing


def fault_reason(exc: BaseException) -> FailureReason:
    """Why ``exc`` ended an engine call: its :class:`EngineFault` reason, ``timeout`` for a
    timeout, ``refused`` for anything else."""
    if isinstance(exc, EngineFault):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "refused"
