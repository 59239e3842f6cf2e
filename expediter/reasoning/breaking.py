"""A circuit breaker per routed engine: stop calling an engine that keeps failing, and probe it
now and then to learn when it is back.

- **closed**: calls go through; each failure is kept with its time. ``failures`` of them within
  the last ``window_seconds`` open the circuit.
- **open**: calls are refused (routing skips the engine: ``circuit-open``) for
  ``open_seconds``.
- **half-open**: then up to ``probes`` calls at a time go through as probes. A probe that
  succeeds closes the circuit (its failures forgotten); one that fails opens it again for
  another ``open_seconds``.

Only failures that routing falls back on count (timeouts, transport errors, 5xx, malformed
replies, invalid output): a refused request says nothing of the engine's health. The clock is
injected, so the states are tested without waiting. Owned by
:class:`~expediter.reasoning.routing.RoutingEngine`, one per route; single-threaded (the
worker's event loop), so it takes no lock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from expediter.settings import BreakerSettings

__all__ = ["CircuitBreaker", "CircuitState", "Permit"]

CircuitState = Literal["closed", "open", "half-open"]
Permit = Literal["call", "probe"]
"""What :meth:`CircuitBreaker.admit` grants: an ordinary call (closed) or a probe (half-open)."""


class CircuitBreaker:
    def __init__(
        self, settings: BreakerSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._failures: deque[float] = deque()
        self._state: CircuitState = "closed"
        self._opened_at = 0.0
        self._probing = 0
        self.opened = 0
        """How many times the circuit opened (a failed probe re-opening it counts)."""

    @property
    def state(self) -> CircuitState:
        if self._state == "open" and self._clock() - self._opened_at >= self.settings.open_seconds:
            self._state = "half-open"
        return self._state

    def admit(self, *, force: bool = False) -> Permit | None:
        """May a call go to the engine now? None: skip it. ``force`` admits a call even when
        open (the last engine left is always tried); it counts as a probe."""
        state = self.state
        if state == "closed":
            return "call"
        if state == "half-open" and self._probing < self.settings.probes:
            self._probing += 1
            return "probe"
        if force:
            self._probing += 1
            return "probe"
        return None

    def succeeded(self, permit: Permit) -> None:
        if permit == "probe":
            self._probing = max(self._probing - 1, 0)
            self._state = "closed"
            self._failures.clear()

    def failed(self, permit: Permit) -> None:
        now = self._clock()
        if permit == "probe":
            self._probing = max(self._probing - 1, 0)
            self._open(now)
            return
        if self._state != "closed":
            return  # a call admitted before the circuit opened: it is open already
        failures = self._failures
        failures.append(now)
        while failures and now - failures[0] > self.settings.window_seconds:
            failures.popleft()
        if len(failures) >= self.settings.failures:
            self._open(now)

    def abandoned(self, permit: Permit) -> None:
        """The call ended without a verdict on the engine (cancelled, or a refused request):
        a probe's slot is free again."""
        if permit == "probe":
            self._probing = max(self._probing - 1, 0)

    def _open(self, now: float) -> None:
        self._state = "open"
        self._opened_at = now
        self._failures.clear()
        self.opened += 1
