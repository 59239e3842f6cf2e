"""A replica's measured throughput in tokens per second, from the results it publishes.

Each finished task reports its tokens and its duration; :class:`ThroughputMeter` keeps the decayed
ratio of sums (tokens / seconds) over them, which is the rate of one task slot. A replica that
runs ``concurrency`` tasks at once works that many times faster; the trigger applies that factor
(:class:`~expediter.scaling.working.WorkMeter`). A replica still loading its model publishes no
result, so it never enters the measure: only serving replicas count as capacity.

Pure. Who calls it: the external scaler (:mod:`expediter.scaler`), for every result of its
capability, and the bench.
"""

from __future__ import annotations

__all__ = ["ThroughputMeter"]


class ThroughputMeter:
    """Tokens per second of one task slot, weighted toward recent tasks by ``decay``."""

    def __init__(self, *, decay: float = 0.99, minimum_tasks: int = 3) -> None:
        self.decay = decay
        self.minimum_tasks = minimum_tasks
        self._tokens = 0.0
        self._seconds = 0.0
        self.observed = 0

    def observe(self, tokens: int, seconds: float) -> None:
        """One finished task; tasks without tokens or time (a failure, a rule engine) are left
        out, as they say nothing about the engine's rate."""
        if tokens <= 0 or seconds <= 0:
            return
        self._tokens = self._tokens * self.decay + tokens
        self._seconds = self._seconds * self.decay + seconds
        self.observed += 1

    @property
    def tokens_per_second(self) -> float | None:
        """The measured rate, or None until ``minimum_tasks`` tasks were observed."""
        if self.observed < self.minimum_tasks or self._seconds <= 0:
            return None
        return self._tokens / self._seconds
