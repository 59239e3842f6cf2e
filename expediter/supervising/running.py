"""The local supervisor behind ``expediter up``: KEDA's scaling of agent workers, on one machine.

:class:`Supervisor` starts the orchestrator (``expediter orchestrator``) and, per agent, as many
worker processes (``python -m expediter.cli worker agents/<file>.py``) as KEDA and the HPA would
run pods. At each agent's polling interval it samples the live lag
(:class:`~expediter.supervising.sampling.LagSampler`) and, for an agent with the work-based
trigger, the scaler's reading (a :data:`~expediter.supervising.workreading.WorkReader`), steps
that agent's engine (:class:`~expediter.supervising.deciding.AgentScaler`) and applies the count
(:class:`~expediter.supervising.replicas.ReplicaSet`): more replicas start at once; fewer means
SIGTERM to the newest (the drain path), then SIGKILL after the agent's grace period. A replica
that exits on its own is reported and replaced after a backoff (1 s, doubling, at most 30 s),
like a crash-looping pod. Each tick writes :class:`~expediter.supervising.state.SupervisorState`
atomically for ``expediter watch``.

Stopping is a code path of its own: SIGINT or SIGTERM (or :meth:`Supervisor.request_stop`) only
sets a flag; the loop then sends SIGTERM to every child, waits for them up to ``stop_timeout``
(each agent's grace period still applies), SIGKILLs what is left, waits for it, and writes a
final state with ``running: false``. A second signal SIGKILLs at once. No child outlives the
supervisor, and it signals only its own children, by PID (each child leads its own process
group).

Who calls it: ``expediter up`` (:mod:`expediter.cli.supervising`), ``expediter demo``, the bench
and the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expediter.errors import ConfigurationError
from expediter.settings import KafkaSettings
from expediter.supervising.deciding import AgentScaler, Decision
from expediter.supervising.replicas import Exit, ReplicaSet
from expediter.supervising.sampling import LagSample, LagSampler
from expediter.supervising.scaledobjects import ScaledAgent
from expediter.supervising.state import (
    STATE_FILE,
    AgentState,
    ScaleEvent,
    SupervisorState,
    write_state,
)
from expediter.supervising.workreading import WorkReader, WorkReading

__all__ = ["Report", "Supervisor", "SupervisorOptions", "worker_env"]

log = logging.getLogger("expediter.supervisor")

Report = Callable[[dict[str, Any]], None]
"""Receives one dict per happening: ``{"event": "scale" | "exit" | "restart" | "start" |
"stopping" | "stopped" | "error", ...}``."""
ORCHESTRATOR = "orchestrator"
ORCHESTRATOR_GRACE_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True)
class SupervisorOptions:
    root: Path
    """The repository root: the children's working directory (agent files are relative)."""
    state_dir: Path
    """Where supervisor.json and the children's logs (logs/<replica>.log) go."""
    orchestrator: bool = True
    workflows: str = "workflows"
    duration: float | None = None
    """Stop by itself after this many seconds; None runs until a signal."""
    stop_timeout: float = 40.0
    """The hard deadline of a stop: after it every child left is SIGKILLed."""
    tick: float = 0.25
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    python: str = sys.executable

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE


def worker_env(base: Mapping[str, str], agent: ScaledAgent) -> dict[str, str]:
    """A replica's environment: the supervisor's, plus its Deployment's drain settings where
    the environment leaves them unset, plus a free port for /metrics and /healthz (replicas
    share the host)."""
    env = {**agent.pod_env, **base}
    env["EXPEDITER_HTTP_PORT"] = "0"
    return env


@dataclass
class _Agent:
    scaler: AgentScaler
    replicas: ReplicaSet
    state: AgentState
    restart_after: float = 0.0
    crashes: int = 0


class Supervisor:
    """Runs the orchestrator and scales each agent's workers on live lag until stopped."""

    def __init__(
        self,
        agents: Sequence[ScaledAgent],
        kafka: KafkaSettings,
        options: SupervisorOptions,
        *,
        prefix: str = "",
        report: Report | None = None,
        work_reader: WorkReader | None = None,
    ) -> None:
        needs = sorted(a.name for a in agents if a.work is not None)
        if needs and work_reader is None:
            raise ConfigurationError(
                f"{', '.join(needs)} scale on pending work: pass a work_reader (expediter up "
                "builds one on expediter scaler's code)"
            )
        self._work_reader = work_reader
        self.kafka = kafka
        self.options = options
        self._report = report or (lambda _event: None)
        self._stop = asyncio.Event()
        self._hurry = False
        logs = options.state_dir / "logs"
        self._agents = [self._agent(a, logs) for a in agents]
        self._orchestrator: ReplicaSet | None = None
        if options.orchestrator:
            self._orchestrator = ReplicaSet(
                ORCHESTRATOR,
                lambda _name: [options.python, "-m", "expediter.cli", "orchestrator",
                               "--workflows", options.workflows],
                dict(options.env), logs, ORCHESTRATOR_GRACE_SECONDS, cwd=options.root,
            )  # fmt: skip
        self._orchestrator_restarts = 0
        self._orchestrator_restart_after = 0.0
        now = time.time()
        self.state = SupervisorState(
            pid=os.getpid(),
            started_at=now,
            updated_at=now,
            prefix=prefix,
            agents=[a.state for a in self._agents],
        )
        self._t0 = time.monotonic()

    def _agent(self, agent: ScaledAgent, logs: Path) -> _Agent:
        options = self.options
        replicas = ReplicaSet(
            agent.name,
            lambda name: [options.python, "-m", "expediter.cli", "worker", agent.agent_file,
                          "--instance", name],
            worker_env(options.env, agent), logs, agent.grace_seconds, cwd=options.root,
        )  # fmt: skip
        spec = agent.spec
        state = AgentState(
            name=agent.name, capability=agent.capability, agent_file=agent.agent_file,
            topic=agent.topic, group=agent.group, min_replicas=spec.min_replica_count,
            max_replicas=spec.max_replica_count, polling_interval=spec.polling_interval,
            cooldown=spec.cooldown_period,
        )  # fmt: skip
        return _Agent(AgentScaler(agent), replicas, state)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def started_pids(self) -> list[int]:
        """Every child PID this supervisor started, in order (all gone once run() returns)."""
        return sorted(pid for s in self._sets() for pid in s.started_pids)

    def request_stop(self) -> None:
        """Stop cleanly (safe from a signal handler); a second request SIGKILLs the children."""
        if self._stop.is_set():
            self._hurry = True
        self._stop.set()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    async def run(self, *, handle_signals: bool = True) -> SupervisorState:
        """Run until stopped (signal, :meth:`request_stop` or ``duration``); the final state.

        The broker and the task topics are checked before any process starts, so a missing
        topic or an unreachable broker fails at once (ConfigurationError, BrokerUnavailable).
        """
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
        for signum in signals:
            loop.add_signal_handler(signum, self.request_stop)
        try:
            async with LagSampler(self.kafka) as sampler:
                await sampler.sample_all([(a.scaler.agent.topic, a.scaler.agent.group)
                                          for a in self._agents])  # fmt: skip
                self._t0 = time.monotonic()
                try:
                    if self._orchestrator is not None:
                        self._orchestrator.scale_to(1)
                        self._emit({"event": "start", "agent": ORCHESTRATOR,
                                    "pids": self._orchestrator.pids})  # fmt: skip
                    await self._loop(sampler)
                finally:
                    await self._shutdown()
        finally:
            for signum in signals:
                loop.remove_signal_handler(signum)
        return self.state

    async def _loop(self, sampler: LagSampler) -> None:
        duration = self.options.duration
        while not self._stop.is_set():
            t = self.elapsed()
            if duration is not None and t >= duration:
                self._emit({"event": "duration", "seconds": duration})
                break
            due = [a for a in self._agents if a.scaler.due(t)]
            if due:
                await self._poll(sampler, due, t)
            self._keep()
            self._write()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.options.tick)

    async def _poll(self, sampler: LagSampler, due: list[_Agent], t: float) -> None:
        samples = await asyncio.gather(*(self._sample(sampler, a) for a in due),
                                       return_exceptions=True)  # fmt: skip
        for agent, sampled in zip(due, samples, strict=True):
            if isinstance(sampled, BaseException):
                if not isinstance(sampled, Exception):
                    raise sampled
                # KEDA keeps the count when its scaler fails (fallback is not modelled).
                agent.state.error = f"{type(sampled).__name__}: {sampled}"
                self._emit({"event": "error", "agent": agent.state.name,
                            "error": agent.state.error})  # fmt: skip
                continue
            sample, tiers, work = sampled
            self._apply(agent, agent.scaler.decide(t, sample, tiers, work), sample)

    async def _sample(
        self, sampler: LagSampler, agent: _Agent
    ) -> tuple[LagSample, list[LagSample], WorkReading | None]:
        """The task topic's sample, one per further trigger (the retry tiers, whose waiting
        tasks wake an agent at zero as on a cluster) and, with a work trigger, the scaler's
        reading (a failed read fails the poll, as a failing scaler does KEDA's)."""
        scaled = agent.scaler.agent
        sample, tiers = await asyncio.gather(
            sampler.sample(scaled.topic, scaled.group),
            asyncio.gather(*(sampler.sample_or_idle(topic, scaled.group)
                             for _, topic in scaled.also)),
        )  # fmt: skip
        work = None
        if scaled.work is not None and self._work_reader is not None:
            work = await self._work_reader(scaled)
        return sample, tiers, work

    def _apply(self, agent: _Agent, decision: Decision, sample: LagSample) -> None:
        state = agent.state
        reading = decision.reading
        state.error = None
        state.lag, state.metric, state.active = reading.lag, reading.metric, reading.active
        state.partitions, state.polled_at = sample.partitions, sample.at
        state.desired = decision.desired
        if decision.work is not None:
            state.work_tokens, state.work_metric = decision.work.tokens, decision.work.metric
        if decision.changed:
            event = ScaleEvent(time.time(), state.name, state.capability, decision.previous,
                               decision.desired, decision.reason)  # fmt: skip
            self.state.record(event)
            log.info("%s: %d -> %d (%s)", state.name, event.from_, event.to, event.reason)
            work = (
                {}
                if decision.work is None
                else {"work_tokens": decision.work.tokens, "work_metric": decision.work.metric}
            )
            self._emit({"event": "scale", **event.as_dict(), "t": round(decision.t, 3),
                        "lag": reading.lag, "metric": reading.metric, **work})  # fmt: skip

    def _keep(self) -> None:
        """Reap exits, replace crashed replicas (with backoff), apply counts, escalate."""
        now = time.monotonic()
        for agent in self._agents:
            for ended in agent.replicas.reap():
                self._exited(agent.state.name, ended)
                if not ended.expected:
                    agent.crashes += 1
                    agent.state.restarts += 1
                    agent.restart_after = now + _backoff(agent.crashes)
            if now >= agent.restart_after:
                started, stopped = agent.replicas.scale_to(agent.scaler.replicas)
                for replica in started:
                    self._emit({"event": "start", "agent": agent.state.name,
                                "replica": replica.name, "pid": replica.pid})  # fmt: skip
                for replica in stopped:
                    self._emit({"event": "stopping", "agent": agent.state.name,
                                "replica": replica.name, "pid": replica.pid})  # fmt: skip
            for replica in agent.replicas.escalate(now):
                self._emit({"event": "kill", "agent": agent.state.name, "replica": replica.name,
                            "pid": replica.pid})  # fmt: skip
            agent.state.replicas = len(agent.replicas.running)
            agent.state.pids = [r.pid for r in agent.replicas.running]
            agent.state.stopping_pids = [r.pid for r in agent.replicas.stopping]
        orchestrator = self._orchestrator
        if orchestrator is not None:
            for ended in orchestrator.reap():
                self._exited(ORCHESTRATOR, ended)
                if not ended.expected:
                    self._orchestrator_restarts += 1
                    self._orchestrator_restart_after = now + _backoff(self._orchestrator_restarts)
            if now >= self._orchestrator_restart_after and not orchestrator.running:
                orchestrator.scale_to(1)
                self._emit({"event": "restart", "agent": ORCHESTRATOR, "pids": orchestrator.pids})
            orchestrator.escalate(now)
            self.state.orchestrator = {"pids": orchestrator.pids,
                                       "restarts": self._orchestrator_restarts}  # fmt: skip

    def _exited(self, name: str, ended: Exit) -> None:
        how = "stopped" if ended.expected else "crashed"
        if not ended.expected:
            log.warning("%s: replica %s (pid %d) exited with %d; see %s", name, ended.name,
                        ended.pid, ended.code, ended.log)  # fmt: skip
        self._emit({"event": "exit", "agent": name, "replica": ended.name, "pid": ended.pid,
                    "code": ended.code, "how": how, "log": str(ended.log)})  # fmt: skip

    def _write(self) -> None:
        self.state.updated_at = time.time()
        write_state(self.options.state_file, self.state)

    def _sets(self) -> list[ReplicaSet]:
        sets = [a.replicas for a in self._agents]
        return sets + ([self._orchestrator] if self._orchestrator is not None else [])

    async def _shutdown(self) -> None:
        sets = self._sets()
        pids = [pid for s in sets for pid in s.pids]
        self._emit({"event": "stopping", "agent": "all", "pids": pids})
        for replicas in sets:
            replicas.terminate_all()
        deadline = time.monotonic() + self.options.stop_timeout
        while any(s.replicas for s in sets) and time.monotonic() < deadline and not self._hurry:
            self._reap_all(sets)
            for replicas in sets:
                replicas.escalate()
            await asyncio.sleep(0.1)
        for replicas in sets:
            replicas.escalate(grace=0)  # SIGKILL whatever is left
        for replicas in sets:
            for replica in list(replicas.replicas):
                await asyncio.to_thread(replica.process.wait)
        self._reap_all(sets)
        for agent in self._agents:
            agent.state.replicas, agent.state.pids, agent.state.stopping_pids = 0, [], []
        if self._orchestrator is not None:
            self.state.orchestrator = {"pids": [], "restarts": self._orchestrator_restarts}
        self.state.running = False
        self._write()
        self._emit({"event": "stopped", "pids": pids})

    def _reap_all(self, sets: list[ReplicaSet]) -> None:
        for replicas in sets:
            for ended in replicas.reap():
                self._exited(replicas.name, ended)

    def _emit(self, event: dict[str, Any]) -> None:
        self._report(event)


def _backoff(crashes: int) -> float:
    return float(min(2 ** max(crashes - 1, 0), MAX_BACKOFF_SECONDS))
