"""What each routed engine did, counted as plain numbers: calls, errors, fallbacks, latency and
tokens, and its circuit's state.

:class:`~expediter.reasoning.routing.RoutingEngine` keeps one :class:`EngineMeter` per route and
updates it on every call; the worker's /metrics turns them into Prometheus series when scraped
(:mod:`expediter.worker.metering`). Plain numbers, no locks: the worker's event loop is the one
writer and serves the scrapes too.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from expediter.events import TokenUsage
from expediter.reasoning.breaking import CircuitBreaker

__all__ = ["ENGINE_SECONDS_BUCKETS", "EngineMeter"]

ENGINE_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""From a rule (milliseconds) to a long generation on a CPU (minutes)."""


@dataclass
class EngineMeter:
    """One route's counts. ``buckets`` holds observations per latency bucket, not cumulative;
    the last one is +Inf."""

    engine: str
    model: str
    breaker: CircuitBreaker | None = None
    answered: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    """Failed calls by reason (``timeout``, ``server-error``... ``refused``)."""
    fallbacks: dict[str, int] = field(default_factory=dict)
    """Calls that moved on from this engine to the next, by reason (``circuit-open``: skipped)."""
    buckets: list[int] = field(default_factory=lambda: [0] * (len(ENGINE_SECONDS_BUCKETS) + 1))
    seconds_sum: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def calls(self) -> int:
        return self.answered + self.failed

    def observe_answer(self, seconds: float, usage: TokenUsage) -> None:
        self.answered += 1
        self._observe(seconds)
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens

    def observe_failure(self, reason: str, seconds: float) -> None:
        self.failed += 1
        self.errors[reason] = self.errors.get(reason, 0) + 1
        self._observe(seconds)

    def fell_back(self, reason: str) -> None:
        self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1

    def _observe(self, seconds: float) -> None:
        self.buckets[bisect.bisect_left(ENGINE_SECONDS_BUCKETS, seconds)] += 1
        self.seconds_sum += seconds
