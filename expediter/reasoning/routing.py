"""The routing engine: one agent's reasoning spread over several engines, a primary and
fallbacks in order, with a circuit breaker each and an optional split to a candidate.

A call goes down its order until an engine answers:

- **Order**: the routes as configured (``EXPEDITER_ENGINE_ROUTES``), primary first. With a
  split, a workflow on the candidate's side tries the candidate first, then the same order; the
  candidate is no one else's fallback.
- **Falling back**: on a timeout (the route's ``timeout``), a transport error, a 5xx or 429, a
  malformed reply, or an answer that is not a valid instance of the output model. Any other
  engine error (a 4xx, no rulebook, a prompt too long) is ``refused``: the next engine would not
  cure it, so the call ends there, and the worker's usual rules apply.
- **Circuit breaker**: a route that keeps failing is skipped (``circuit-open``) until its probes
  succeed (:mod:`expediter.reasoning.breaking`). The last route left in a call's order is always
  tried, so an open circuit never fails a call that one engine could still answer. A single
  engine has no breaker: with nothing to fall back to, failing fast would only turn slow
  failures into quick retries.
- **Split**: a hash of the workflow id picks the side, so every call of one workflow sees one
  model, every replica agrees without talking, and raising the share only adds workflows.
- **Record**: each call returns a :class:`~expediter.events.ReasoningCall` (which engine and
  model answered, the split side, each fallback and why, tokens, latency), which the worker
  puts in the result event; an :class:`~expediter.reasoning.faults.EngineFault` that ends a call
  carries it too. Each route's :class:`~expediter.reasoning.metering.EngineMeter` counts the
  same for /metrics.

Built by :func:`expediter.reasoning.engine_from_settings` (routes configured) or by the worker
around any single engine (:meth:`RoutingEngine.single`); agent handlers reach it through
``TaskContext.reason``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from expediter.errors import ConfigurationError, EngineError
from expediter.events import EngineFailure, ReasoningCall, TokenUsage
from expediter.reasoning.breaking import CircuitBreaker, Permit
from expediter.reasoning.faults import EngineFault, FailureReason, fault_reason
from expediter.reasoning.metering import EngineMeter
from expediter.reasoning.protocol import OutputT, Reasoned, ReasoningEngine
from expediter.settings import BreakerSettings, SplitSettings

__all__ = ["Route", "RoutingEngine", "SplitSide", "split_side"]

log = logging.getLogger(__name__)

SplitSide = Literal["primary", "candidate"]
_RETRIABLE: frozenset[FailureReason] = frozenset(
    {"timeout", "transport", "server-error", "circuit-open"}
)
_DETAIL = 500


@dataclass(frozen=True)
class Route:
    """One engine of the routing: its name (in results and metrics), the engine, and how long
    a call may take before falling back (None: the engine's own limits)."""

    name: str
    engine: ReasoningEngine
    timeout: float | None = None


def split_side(workflow_id: str | None, split: SplitSettings) -> SplitSide:
    """The side of ``split`` that ``workflow_id`` is on: the same for every call of the workflow,
    on every replica. The candidate's name salts the hash, so each candidate gets its own
    sample of workflows. Without a workflow id, each call is drawn anew."""
    if workflow_id is None:
        point = random.random()  # noqa: S311 -- a traffic share, not a secret
    else:
        digest = hashlib.sha256(f"{split.route}\0{workflow_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
    return "candidate" if point < split.share else "primary"


class RoutingEngine:
    """A :class:`~expediter.reasoning.protocol.ReasoningEngine` over several routes."""

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        split: SplitSettings | None = None,
        breaker: BreakerSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [route.name for route in routes]
        if not routes or len(set(names)) != len(names):
            raise ConfigurationError(
                f"a routing engine needs at least one route and unique names, not {names}: "
                "check EXPEDITER_ENGINE_ROUTES"
            )
        by_name = {route.name: route for route in routes}
        if split is not None and (split.route not in by_name or split.route == names[0]):
            raise ConfigurationError(
                f"the split's route {split.route!r} must be one of {names[1:]} (not the "
                "primary): check EXPEDITER_ENGINE_SPLIT"
            )
        self.routes = tuple(routes)
        self.split = split
        self._candidate = by_name[split.route] if split is not None else None
        self._chain = tuple(route for route in routes if route is not self._candidate)
        breakers = {
            route.name: CircuitBreaker(breaker, clock=clock)
            for route in routes
            if breaker is not None and len(routes) > 1
        }
        self.meters = {
            route.name: EngineMeter(route.name, route.engine.model, breakers.get(route.name))
            for route in routes
        }

    @classmethod
    def single(cls, engine: ReasoningEngine) -> RoutingEngine:
        """``engine`` alone, recorded and metered like a route: what the worker runs when no
        routes are configured."""
        return cls([Route(engine.name, engine)])

    @property
    def name(self) -> str:
        return self.routes[0].name

    @property
    def model(self) -> str:
        return self.routes[0].engine.model

    def breaker(self, name: str) -> CircuitBreaker | None:
        return self.meters[name].breaker

    async def start(self) -> None:
        """Start every engine (load models, open pools); on a failure, stop those started."""
        started: list[ReasoningEngine] = []
        try:
            for route in self.routes:
                await route.engine.start()
                started.append(route.engine)
        except BaseException:
            for engine in reversed(started):
                await engine.stop()
            raise

    async def prepare(self, output_model: type[BaseModel]) -> None:
        """Let each engine that builds per-model state (the llama engine's checked grammar) do
        so for ``output_model`` now, at start, where a failure stops the worker cleanly."""
        for route in self.routes:
            prepare = getattr(route.engine, "prepare", None)
            if prepare is not None:
                await prepare(output_model)

    async def stop(self) -> None:
        for route in reversed(self.routes):
            await route.engine.stop()

    async def reason(
        self,
        prompt: str,
        output_model: type[OutputT],
        *,
        system: str | None = None,
        max_tokens: int = 256,
        workflow_id: str | None = None,
    ) -> Reasoned[OutputT]:
        began = time.perf_counter()
        side: SplitSide | None = None
        order = self._chain
        if self.split is not None and self._candidate is not None:
            side = split_side(workflow_id, self.split)
            if side == "candidate":
                order = (self._candidate, *self._chain)
        failures: list[EngineFailure] = []

        def record(answered: Route | None, answer: Reasoned[OutputT] | None) -> ReasoningCall:
            return ReasoningCall(
                engine=answered.name if answered else None,
                model=answered.engine.model[:256] if answered else None,
                split=side,
                fallback=answered is not None and answered is not order[0],
                failures=list(failures),
                latency_ms=int((time.perf_counter() - began) * 1000),
                usage=answer.usage if answer is not None else TokenUsage(),
            )

        for index, route in enumerate(order):
            last = index == len(order) - 1
            meter = self.meters[route.name]
            breaker = meter.breaker
            permit: Permit | None = "call" if breaker is None else breaker.admit(force=last)
            if permit is None:
                failures.append(self._failure(route, "circuit-open", "circuit open", 0.0))
                meter.fell_back("circuit-open")
                continue
            called = time.perf_counter()
            try:
                reasoned = await self._call(route, prompt, output_model, system, max_tokens)
            except asyncio.CancelledError:
                if breaker is not None:
                    breaker.abandoned(permit)
                raise
            except (EngineError, TimeoutError) as exc:
                seconds = time.perf_counter() - called
                reason = fault_reason(exc)
                meter.observe_failure(reason, seconds)
                failures.append(self._failure(route, reason, str(exc), seconds))
                if reason == "refused":
                    if breaker is not None:
                        breaker.abandoned(permit)
                    raise self._ended(exc, record(None, None)) from exc
                if breaker is not None:
                    self._failed(route, breaker, permit)
                if last:
                    raise self._ended(exc, record(None, None)) from exc
                meter.fell_back(reason)
                log.info(
                    "engine %s failed (%s), falling back to %s",
                    route.name, reason, order[index + 1].name,
                )  # fmt: skip
                continue
            except BaseException:
                if breaker is not None:
                    breaker.abandoned(permit)
                raise
            meter.observe_answer(time.perf_counter() - called, reasoned.usage)
            if breaker is not None:
                self._succeeded(route, breaker, permit)
            return Reasoned(reasoned.output, reasoned.usage, record(route, reasoned))
        # Every route was skipped; unreachable, as the last one is always tried (force).
        raise EngineFault(
            "no engine was tried", reason="circuit-open", retriable=True, routing=record(None, None)
        )

    async def _call(
        self,
        route: Route,
        prompt: str,
        output_model: type[OutputT],
        system: str | None,
        max_tokens: int,
    ) -> Reasoned[OutputT]:
        call = route.engine.reason(prompt, output_model, system=system, max_tokens=max_tokens)
        if route.timeout is None:
            return await call
        try:
            async with asyncio.timeout(route.timeout):
                return await call
        except TimeoutError as exc:
            raise EngineFault(
                f"engine {route.name} did not answer within its timeout of {route.timeout:g} s",
                reason="timeout",
                retriable=True,
            ) from exc

    def _failure(
        self, route: Route, reason: FailureReason, detail: str, seconds: float
    ) -> EngineFailure:
        return EngineFailure(
            engine=route.name,
            model=route.engine.model[:256],
            reason=reason,
            detail=detail[:_DETAIL],
            latency_ms=int(seconds * 1000),
        )

    def _ended(self, exc: BaseException, routing: ReasoningCall) -> EngineFault:
        """The error that ends a call: a single engine's own (its message, its retriability),
        or, after fallbacks, one that names each engine's failure."""
        reasons = [failure.reason for failure in routing.failures]
        if len(routing.failures) == 1:
            retriable = exc.retriable if isinstance(exc, EngineError) else True
            message = str(exc) or type(exc).__name__
        else:
            retriable = any(reason in _RETRIABLE for reason in reasons)
            message = "every engine failed: " + "; ".join(
                f"{failure.engine}: {failure.reason} ({failure.detail})"
                for failure in routing.failures
            )
        return EngineFault(message, reason=reasons[-1], retriable=retriable, routing=routing)

    def _failed(self, route: Route, breaker: CircuitBreaker, permit: Permit) -> None:
        opened = breaker.opened
        breaker.failed(permit)
        if breaker.opened != opened:
            log.warning(
                "engine %s: circuit open after %s; calls skip it for %g s, then probe it",
                route.name,
                "a failed probe" if permit == "probe" else
                f"{breaker.settings.failures} failures in {breaker.settings.window_seconds:g} s",
                breaker.settings.open_seconds,
            )  # fmt: skip

    def _succeeded(self, route: Route, breaker: CircuitBreaker, permit: Permit) -> None:
        breaker.succeeded(permit)
        if permit == "probe":
            log.warning("engine %s: a probe answered, circuit closed", route.name)
