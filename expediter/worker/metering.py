"""The per-engine series of /metrics: what each reasoning engine (each route) did.

Turns the routing engine's :class:`~expediter.reasoning.EngineMeter` counts into Prometheus
metric families (:mod:`expediter.worker.exposing`) when /metrics is scraped (the counts are
plain numbers the event loop updates, as :mod:`expediter.worker.observing`'s tally is).
Every series carries ``capability`` and ``engine`` (the route's name):

- ``expediter_engine_calls_total{engine, model, outcome}``: calls, ``answered`` or ``failed``;
- ``expediter_engine_errors_total{engine, reason}``: failed calls by reason (``timeout``,
  ``transport``, ``server-error``, ``malformed-reply``, ``invalid-output``, ``refused``);
- ``expediter_engine_fallbacks_total{engine, reason}``: calls that moved on from this engine to
  the next, by reason (``circuit-open``: skipped without a call);
- ``expediter_engine_seconds{engine}``: a histogram of each call's latency;
- ``expediter_engine_tokens_total{engine, kind}``: prompt and completion tokens of answers;
- ``expediter_engine_circuit_state{engine}``: 0 closed, 1 open, 2 half-open (only for routes
  with a breaker); ``expediter_engine_circuit_opened_total{engine}``.

Registered by :class:`~expediter.worker.observing.WorkerMetrics` (``watch_engines``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

from expediter.reasoning.metering import ENGINE_SECONDS_BUCKETS, EngineMeter
from expediter.worker.exposing import Family

__all__ = ["EngineCollector"]

_CIRCUIT = {"closed": 0, "open": 1, "half-open": 2}


class EngineCollector:
    def __init__(self, capability: str, meters: Iterable[EngineMeter]) -> None:
        self.capability = capability
        self.meters = tuple(meters)

    def collect(self) -> Iterator[Family]:
        c = self.capability
        calls = Family(
            "expediter_engine_calls", "Calls to each reasoning engine, by outcome.", "counter",
            ["capability", "engine", "model", "outcome"],
        )  # fmt: skip
        errors = Family(
            "expediter_engine_errors", "Failed calls to each reasoning engine, by reason.",
            "counter", ["capability", "engine", "reason"],
        )  # fmt: skip
        fallbacks = Family(
            "expediter_engine_fallbacks",
            "Calls that fell back from this engine to the next, by reason.",
            "counter", ["capability", "engine", "reason"],
        )  # fmt: skip
        seconds = Family(
            "expediter_engine_seconds", "Seconds each call to a reasoning engine took.",
            "histogram", ["capability", "engine"],
        )  # fmt: skip
        tokens = Family(
            "expediter_engine_tokens", "Tokens of each engine's answers, by kind.", "counter",
            ["capability", "engine", "kind"],
        )  # fmt: skip
        circuit = Family(
            "expediter_engine_circuit_state",
            "Each engine's circuit breaker: 0 closed, 1 open, 2 half-open.",
            "gauge", ["capability", "engine"],
        )  # fmt: skip
        opened = Family(
            "expediter_engine_circuit_opened", "How many times each engine's circuit opened.",
            "counter", ["capability", "engine"],
        )  # fmt: skip
        bounds = [*(repr(float(b)) for b in ENGINE_SECONDS_BUCKETS), "+Inf"]
        for meter in self.meters:
            e = meter.engine
            calls.add([c, e, meter.model, "answered"], meter.answered)
            calls.add([c, e, meter.model, "failed"], meter.failed)
            for reason, count in sorted(meter.errors.items()):
                errors.add([c, e, reason], count)
            for reason, count in sorted(meter.fallbacks.items()):
                fallbacks.add([c, e, reason], count)
            cumulative = itertools.accumulate(meter.buckets)
            seconds.add_histogram([c, e], zip(bounds, cumulative, strict=True), meter.seconds_sum)
            tokens.add([c, e, "prompt"], meter.prompt_tokens)
            tokens.add([c, e, "completion"], meter.completion_tokens)
            if meter.breaker is not None:
                circuit.add([c, e], _CIRCUIT[meter.breaker.state])
                opened.add([c, e], meter.breaker.opened)
        yield from (calls, errors, fallbacks, seconds, tokens, circuit, opened)
