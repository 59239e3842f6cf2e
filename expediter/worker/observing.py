"""What a worker tells the outside world: Prometheus metrics, liveness and readiness.

The worker owns one :class:`HealthState` and one :class:`WorkerMetrics` and calls their small
methods as it polls, runs tasks and dead-letters records; :class:`ObservabilityServer` serves
them over HTTP for Prometheus and the kubelet::

    health = HealthState(settings)
    metrics = WorkerMetrics(agent.capability, health)
    async with ObservabilityServer(metrics, settings):
        ...                      # metrics.polled(), metrics.task_started(), health.mark_warm()

Health reflects consumption progress, not just a live process (docs/architecture.md): a worker
is ready once warmed up and while polls keep completing and work keeps committing, and stops
being ready when it drains or stalls (a failed commit, finished tasks waiting for their commit,
or lag with nothing running or committing, for ``stall_seconds``). A stall that lasts
``unhealthy_stall_seconds`` fails /healthz as well, so that the kubelet restarts the worker.
Called by the worker; the tests use it without a broker."""

from __future__ import annotations

import bisect
import itertools
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, Self

from expediter.errors import ConfigurationError, ExpediterError
from expediter.reasoning.metering import EngineMeter
from expediter.settings import WorkerSettings
from expediter.worker.exposing import Family, Registry, choose_encoding
from expediter.worker.metering import EngineCollector
from expediter.worker.serving import HttpServer, Reply

__all__ = [
    "TASK_SECONDS_BUCKETS",
    "HealthState",
    "ObservabilityServer",
    "Readiness",
    "TaskOutcome",
    "WorkerMetrics",
]

TaskOutcome = Literal["succeeded", "failed", "retried", "dead-lettered"]
"""How one attempt at a task ended; the ``outcome`` label of ``tasks_processed_total``."""

TASK_SECONDS_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600,
)  # fmt: skip
"""From a rule-engine answer (10 ms) to a long LLM call on a CPU (10 min): Prometheus' default
buckets stop at 10 s, where LLM tasks only begin."""

_OUTCOMES: tuple[TaskOutcome, ...] = ("succeeded", "failed", "retried", "dead-lettered")


@dataclass(frozen=True)
class Readiness:
    """The answer of /readyz: whether the worker is ready, why (not), and how old its last
    poll is (None before the first)."""

    ready: bool
    reason: str
    last_poll_age_s: float | None

    def as_json(self) -> dict[str, bool | str | float | None]:
        return {"ready": self.ready, "reason": self.reason, "last_poll_age_s": self.last_poll_age_s}


class HealthState:
    """Liveness and readiness of one worker, set by the worker as it goes.

    Ready means: warmed up (``mark_warm()``: joined the group, engine loaded), not draining
    (``mark_draining()``), a poll completed within ``ready_poll_seconds``, and not stalled
    (:meth:`stall`). The worker reports progress with ``progressed()`` (a task started or a
    transaction committed), ``committed()`` / ``commit_failed()``, ``awaiting_commit()`` and
    ``set_lag()``. Times come from ``clock`` (monotonic), so a wall-clock jump never flips
    readiness.
    """

    def __init__(
        self, settings: WorkerSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ready_poll_seconds = settings.ready_poll_seconds
        self.stall_seconds = settings.stall_seconds
        self.unhealthy_stall_seconds = settings.unhealthy_stall_seconds
        self._clock = clock
        self._warm = False
        self._draining = False
        self._last_poll: float | None = None
        self._last_progress = clock()
        self._commit_error: tuple[str, float] | None = None
        self._waiting_since: float | None = None
        self._lag = 0
        self._busy = False

    @property
    def warm(self) -> bool:
        return self._warm

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def last_poll(self) -> float | None:
        """The clock's time of the last completed poll, or None before the first."""
        return self._last_poll

    def mark_warm(self) -> None:
        self._warm = True
        self._last_progress = self._clock()

    def mark_draining(self) -> None:
        """On SIGTERM: no longer ready, so a rollout waits for the replacement instead."""
        self._draining = True

    def polled(self, at: float | None = None) -> None:
        self._last_poll = self._clock() if at is None else at

    def progressed(self, at: float | None = None) -> None:
        """A task started or a transaction committed."""
        self._last_progress = self._clock() if at is None else at

    def committed(self, at: float | None = None) -> None:
        """A transaction committed: progress, and commits work again."""
        self.progressed(at)
        self._commit_error = None

    def commit_failed(self, reason: str, at: float | None = None) -> None:
        """A transaction failed: unready until the next :meth:`committed`."""
        if self._commit_error is None:
            self._commit_error = (reason, self._clock() if at is None else at)
        else:
            self._commit_error = (reason, self._commit_error[1])

    def awaiting_commit(self, since: float | None) -> None:
        """When the oldest finished work still waiting for its commit was handed over, or
        None when nothing waits."""
        self._waiting_since = since

    def set_lag(self, lag: int, *, busy: bool) -> None:
        """Records not yet fetched over all assigned partitions, and whether tasks run now."""
        self._lag = lag
        self._busy = busy

    def stall(self, now: float | None = None) -> tuple[str, float] | None:
        """Why the worker cannot make progress and since when, or None if it can."""
        now = self._clock() if now is None else now
        if self._commit_error is not None:
            reason, since = self._commit_error
            return f"commits failing for {now - since:.1f}s: {reason}", since
        waiting = self._waiting_since
        if waiting is not None and now - waiting > self.stall_seconds:
            return f"finished tasks waiting {now - waiting:.1f}s for their commit", waiting
        idle = now - self._last_progress
        if self._lag > 0 and not self._busy and idle > self.stall_seconds:
            return (
                f"lag {self._lag} and no task started or committed for {idle:.1f}s",
                self._last_progress,
            )
        return None

    def is_alive(self, now: float | None = None) -> bool:
        # Answering at all proves the event loop runs, and a dead root task exits the process.
        # Draining stays alive on purpose: a liveness failure would kill the drain midway. A
        # long stall is not alive: a restart is the one cure left for a worker stuck for good.
        if self._draining:
            return True
        now = self._clock() if now is None else now
        stall = self.stall(now)
        return stall is None or now - stall[1] <= self.unhealthy_stall_seconds

    def is_ready(self, now: float | None = None) -> bool:
        return self.readiness(now).ready

    def readiness(self, now: float | None = None) -> Readiness:
        now = self._clock() if now is None else now
        age = None if self._last_poll is None else max(now - self._last_poll, 0.0)
        if self._draining:
            return Readiness(False, "draining", age)
        if not self._warm:
            return Readiness(False, "warming up", age)
        if age is None:
            return Readiness(False, "no poll has completed yet", age)
        if age > self.ready_poll_seconds:
            return Readiness(
                False, f"no poll for {age:.1f}s (limit {self.ready_poll_seconds:g}s)", age
            )
        stall = self.stall(now)
        if stall is not None:
            return Readiness(False, stall[0], age)
        return Readiness(True, "polling", age)


class _Tally:
    """Every series of one worker, kept as plain numbers and turned into metric families when
    Prometheus scrapes (:mod:`expediter.worker.exposing`).

    Why plain numbers: a client library's Counter takes a lock and runs checks on each update,
    four updates per task, a tenth of a no-op task's cost in the worker bench. The worker
    updates these from its event loop only, and /metrics is served from the same loop, so a
    scrape always sees a consistent set without any lock. The names, labels and buckets are
    the ones the prometheus_client metrics had.
    """

    def __init__(self, capability: str, health: HealthState) -> None:
        self.capability = capability
        self.health = health
        self.processed: dict[str, int] = dict.fromkeys(_OUTCOMES, 0)
        self.failed: dict[str, int] = {}
        self.buckets = [0] * (len(TASK_SECONDS_BUCKETS) + 1)
        """Observations per bucket, not cumulative; the last one is +Inf."""
        self.seconds_sum = 0.0
        self.in_flight = 0
        self.lag: dict[tuple[str, int], int] = {}
        self.tokens = {"prompt": 0, "completion": 0}
        self.dlq: dict[str, int] = {}
        self.polls = 0

    def collect(self) -> Iterator[Family]:
        c = [self.capability]
        processed = Family(
            "expediter_tasks_processed", "Task attempts that ended, by outcome.", "counter",
            ["capability", "outcome"],
        )  # fmt: skip
        for outcome, count in self.processed.items():
            processed.add([*c, outcome], count)
        failed = Family(
            "expediter_tasks_failed",
            "Task attempts that did not succeed, by reason (the error code or DLQ reason).",
            "counter", ["capability", "reason"],
        )  # fmt: skip
        for reason, count in self.failed.items():
            failed.add([*c, reason], count)
        seconds = Family(
            "expediter_task_seconds",
            "Seconds one task attempt took, from handler start to its end.",
            "histogram", ["capability"],
        )  # fmt: skip
        bounds = [*(repr(float(b)) for b in TASK_SECONDS_BUCKETS), "+Inf"]  # "1.0", as Go
        seconds.add_histogram(
            c, zip(bounds, itertools.accumulate(self.buckets), strict=True), self.seconds_sum
        )
        in_flight = Family(
            "expediter_tasks_in_flight", "Tasks running now.", "gauge", ["capability"]
        )
        in_flight.add(c, self.in_flight)
        lag = Family(
            "expediter_consumer_lag",
            "Records behind the log end, per assigned partition, as this worker last saw it.",
            "gauge", ["capability", "topic", "partition"],
        )  # fmt: skip
        for (topic, partition), records in self.lag.items():
            lag.add([*c, topic, str(partition)], records)
        tokens = Family(
            "expediter_tokens", "Tokens the reasoning engine used, by kind.", "counter",
            ["capability", "kind"],
        )  # fmt: skip
        for kind, count in self.tokens.items():
            tokens.add([*c, kind], count)
        dlq = Family(
            "expediter_dlq_records", "Records sent to the dead-letter topic, by reason.",
            "counter", ["capability", "reason"],
        )  # fmt: skip
        for reason, count in self.dlq.items():
            dlq.add([*c, reason], count)
        polls = Family(
            "expediter_polls", "Polls of the task topic that completed.", "counter",
            ["capability"],
        )  # fmt: skip
        polls.add(c, self.polls)
        # Computed at scrape time: readiness depends on the poll age, which changes with no call.
        ready = Family(
            "expediter_worker_ready", "1 while /readyz answers 200, else 0.", "gauge",
            ["capability"],
        )  # fmt: skip
        ready.add(c, 1.0 if self.health.is_ready() else 0.0)
        yield from (processed, failed, seconds, in_flight, lag, tokens, dlq, polls, ready)


class WorkerMetrics:
    """The Prometheus metrics of one worker, in a registry of its own.

    A registry per worker, not a process-global one, so that several workers (or tests) in
    one process never collide on metric names. Every series carries the ``capability`` label,
    and each exists from the start (at zero), so that dashboards and rate() see zeros instead
    of gaps. ``polled()`` also tells ``health`` when the last poll completed.
    """

    def __init__(
        self, capability: str, health: HealthState, *, registry: Registry | None = None
    ) -> None:
        self.capability = capability
        self.health = health
        self.registry = registry if registry is not None else Registry()
        self._tally = _Tally(capability, health)
        self.registry.register(self._tally)

    def task_started(self) -> None:
        self._tally.in_flight += 1

    @property
    def in_flight(self) -> int:
        """Tasks running now."""
        return self._tally.in_flight

    def task_finished(
        self, outcome: TaskOutcome, seconds: float, *, reason: str | None = None
    ) -> None:
        """One attempt ended. Every outcome but ``succeeded`` also counts in
        ``tasks_failed_total`` under ``reason`` (default: the outcome itself)."""
        tally = self._tally
        tally.in_flight -= 1
        tally.buckets[bisect.bisect_left(TASK_SECONDS_BUCKETS, seconds)] += 1
        tally.seconds_sum += seconds
        tally.processed[outcome] = tally.processed.get(outcome, 0) + 1
        if outcome != "succeeded":
            label = reason or outcome
            tally.failed[label] = tally.failed.get(label, 0) + 1

    def tokens(self, prompt: int, completion: int) -> None:
        self._tally.tokens["prompt"] += prompt
        self._tally.tokens["completion"] += completion

    def watch_engines(self, meters: Iterable[EngineMeter]) -> None:
        """Serve the routing engine's per-engine counts too (:mod:`expediter.worker.metering`);
        once per worker."""
        self.registry.register(EngineCollector(self.capability, meters))

    def dead_lettered(self, reason: str) -> None:
        """A record went to the DLQ: a poison record that never became a task, or a task that
        failed for good (report that one with ``task_finished`` as well)."""
        self._tally.dlq[reason] = self._tally.dlq.get(reason, 0) + 1

    def set_lag(self, topic: str, partition: int, lag: int) -> None:
        self._tally.lag[topic, partition] = lag

    def forget_partition(self, topic: str, partition: int) -> None:
        """On revocation: another replica reports this partition's lag now."""
        self._tally.lag.pop((topic, partition), None)

    def polled(self) -> None:
        self._tally.polls += 1
        self.health.polled()

    @property
    def last_poll(self) -> float | None:
        """The monotonic time of the last completed poll, or None before the first."""
        return self.health.last_poll


_WILDCARDS = {"", "0.0.0.0", "::"}  # noqa: S104 -- recognised, not bound


class ObservabilityServer:
    """Serves GET /metrics, /healthz and /readyz for one worker, over the standard library's
    asyncio (:mod:`expediter.worker.serving`), not a web framework.

    Binds ``settings.http_host:http_port``; port 0 picks a free port, and ``port`` holds the
    bound one after ``start()``. ``start()`` and ``stop()`` are idempotent; ``async with``
    starts and stops it. A stopped server is not started again: make a new one.
    """

    def __init__(self, metrics: WorkerMetrics, settings: WorkerSettings) -> None:
        self.metrics = metrics
        self.health = metrics.health
        self.host = settings.http_host
        self.port = settings.http_port
        self._http: HttpServer | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the server."""
        host = "127.0.0.1" if self.host in _WILDCARDS else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    async def start(self) -> None:
        if self._stopped:
            raise ExpediterError("this ObservabilityServer was stopped; create a new one")
        if self._http is not None:
            return
        # No access log: probes and scrapes every few seconds would drown the worker's own log.
        http = HttpServer(
            {"/metrics": self._metrics, "/healthz": self._healthz, "/readyz": self._readyz}
        )
        try:
            self.port = await http.start(self.host, self.port)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve /metrics, /healthz and /readyz on {self.host}:{self.port} "
                f"({exc.strerror or exc}): set EXPEDITER_HTTP_PORT to a free port (0 picks one) "
                "or check EXPEDITER_HTTP_HOST"
            ) from exc
        self._http = http

    async def stop(self) -> None:
        self._stopped = True
        http, self._http = self._http, None
        if http is not None:
            await http.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _metrics(self, headers: Mapping[str, str]) -> Reply:
        # Prometheus asks for OpenMetrics in Accept; curl and older scrapers get the text format.
        encode, content_type = choose_encoding(headers.get("accept", ""))
        return Reply(200, encode(self.metrics.registry), content_type)

    def _healthz(self, headers: Mapping[str, str]) -> Reply:
        if self.health.is_alive():
            return Reply(200, b"ok")
        stall = self.health.stall()
        return Reply(503, f"stalled: {stall[0] if stall else 'unknown'}".encode())

    def _readyz(self, headers: Mapping[str, str]) -> Reply:
        readiness = self.health.readiness()
        body = json.dumps(readiness.as_json()).encode()
        return Reply(200 if readiness.ready else 503, body, "application/json; charset=utf-8")
