"""One view of every capability: offsets, lag, rates, KEDA's metric and desired vs actual replicas.

:class:`Watcher` turns successive :class:`~expediter.supervising.LagSample` reads into
:class:`Snapshot` rows. The metric, activity and desired replicas come from a
:class:`~expediter.supervising.AgentScaler` per agent (the same engine as ``expediter up`` and
``expediter keda simulate``), started at the actual count when one is known and kept across
refreshes, so the HPA's windows apply as they would; an agent with the work-based trigger also
takes expediter scaler's reading (:class:`~expediter.supervising.workreading.WorkReading`). In
and out rates are the growth of the latest and of the committed offsets between two samples,
per second. Actual replicas come from an :class:`Actual` per agent: the local supervisor's state
file (:func:`actual_from_supervisor`) or the cluster (:mod:`expediter.watching.cluster`).

Who calls it: ``expediter watch`` (:mod:`expediter.cli.watching`) and the demo.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from expediter.supervising import AgentScaler, LagSample, ScaledAgent, SupervisorState
from expediter.supervising.workreading import WorkReading

__all__ = ["Actual", "Row", "Snapshot", "Watcher", "actual_from_supervisor", "supervisor_alive"]


@dataclass(frozen=True)
class Actual:
    """The replicas that run now, and where that figure comes from."""

    replicas: int | None
    source: str
    """``supervisor``, ``supervisor (stopped)``, ``kubernetes`` or ``none``."""
    desired: int | None = None
    """What the scaler in charge wants: the supervisor's engine, or on a cluster the Deployment's
    spec.replicas (set by KEDA and its HPA)."""
    detail: Mapping[str, Any] = field(default_factory=dict)
    metric: int | float | None = None
    """KEDA's own metric, as its HPA reads it from the external metrics API (cluster only)."""


NO_ACTUAL = Actual(None, "none")
_IN_CHARGE = ("supervisor", "kubernetes")
"""Sources whose desired count is the one that is acted on."""


@dataclass(frozen=True)
class Row:
    capability: str
    agent: str
    topic: str
    group: str
    partitions: int
    latest: tuple[int, ...]
    committed: tuple[int | None, ...]
    lag: int
    in_rate: float | None
    """Records per second written to the task topic since the previous sample."""
    out_rate: float | None
    """Records per second committed by the group since the previous sample."""
    metric: int
    """This watch's engine's metric, from the sampled offsets."""
    active: bool
    desired: int
    """The count the scaler in charge set (the supervisor's, or on a cluster the Deployment's
    spec.replicas, which KEDA and the HPA set), else this watch's engine's."""
    engine_desired: int
    """What this watch's own engine (fed the same samples) wants."""
    actual: Actual
    min_replicas: int
    max_replicas: int
    keda_metric: int | float | None = None
    """KEDA's metric read from the cluster (what its HPA reads); None without a cluster or when
    it could not be read (``actual.metric_error`` says why)."""
    work: Mapping[str, float] | None = None
    """For an agent with the work-based trigger, expediter scaler's reading: ``tokens``,
    ``records``, ``seconds`` (the metric: seconds of one replica's work) and ``throughput``."""

    def as_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["latest"], document["committed"] = list(self.latest), list(self.committed)
        actual = self.actual
        document["actual"] = {"replicas": actual.replicas, "source": actual.source,
                              "desired": actual.desired, **dict(actual.detail)}  # fmt: skip
        if actual.source == "kubernetes":
            document["actual"]["metric"] = actual.metric
        return document


@dataclass(frozen=True)
class Snapshot:
    at: float
    rows: tuple[Row, ...]
    events: tuple[dict[str, Any], ...] = ()
    """The last scale events, oldest first: ``{"time", "agent", "capability", "from", "to",
    "reason"}``."""
    errors: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "capabilities": [r.as_dict() for r in self.rows],
                "events": list(self.events), "errors": list(self.errors)}  # fmt: skip


def supervisor_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists (signal 0 delivers nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def actual_from_supervisor(
    state: SupervisorState | None, agents: Sequence[ScaledAgent], prefix: str
) -> tuple[dict[str, Actual], list[dict[str, Any]], list[str]]:
    """(actual per agent name, last scale events, notes) from the supervisor's state."""
    if state is None:
        return {a.name: NO_ACTUAL for a in agents}, [], []
    notes: list[str] = []
    if state.prefix != prefix:
        notes.append(
            f"the supervisor runs with topic prefix {state.prefix!r}, this watch with "
            f"{prefix!r}: its replicas are not shown (set EXPEDITER_TOPIC_PREFIX alike)"
        )
        return {a.name: NO_ACTUAL for a in agents}, [], notes
    live = state.running and supervisor_alive(state.pid)
    if state.running and not live:
        notes.append(f"the supervisor (pid {state.pid}) is gone without a clean stop")
    actual: dict[str, Actual] = {}
    for agent in agents:
        found = state.agent(agent.name)
        if found is None:
            actual[agent.name] = NO_ACTUAL
        elif live:
            actual[agent.name] = Actual(found.replicas, "supervisor", found.desired,
                                        {"pids": found.pids, "stopping": len(found.stopping_pids),
                                         "restarts": found.restarts})  # fmt: skip
        else:
            actual[agent.name] = Actual(0, "supervisor (stopped)", 0)
    names = {a.name for a in agents}
    events = [e.as_dict() for e in state.events if e.agent in names]
    return actual, events, notes


class Watcher:
    """Builds snapshots from samples; keeps what rates and the engine's windows need."""

    def __init__(self, agents: Sequence[ScaledAgent]) -> None:
        self.agents = list(agents)
        self._scalers: dict[str, AgentScaler] = {}
        self._previous: dict[str, LagSample] = {}
        self._t0 = time.monotonic()

    def observe(
        self,
        samples: Mapping[str, LagSample],
        actual: Mapping[str, Actual],
        events: Sequence[dict[str, Any]] = (),
        errors: Sequence[str] = (),
        *,
        t: float | None = None,
        also: Mapping[str, Sequence[LagSample]] | None = None,
        work: Mapping[str, WorkReading] | None = None,
    ) -> Snapshot:
        """One snapshot from this refresh's samples (by agent name); an agent without a sample
        (its read failed) is left out and its error listed."""
        t = time.monotonic() - self._t0 if t is None else t
        rows: list[Row] = []
        for agent in self.agents:
            sample = samples.get(agent.name)
            if sample is None:
                continue
            reading_work = (work or {}).get(agent.name)
            if agent.work is not None and reading_work is None:
                continue  # its scaler read failed: listed in the errors, as a failed sample is
            seen = actual.get(agent.name, NO_ACTUAL)
            scaler = self._scalers.get(agent.name)
            if scaler is None:
                scaler = self._scalers[agent.name] = AgentScaler(agent, seen.replicas or 0)
            decision = scaler.decide(t, sample, (also or {}).get(agent.name, ()), reading_work)
            in_rate, out_rate = _rates(self._previous.get(agent.name), sample)
            self._previous[agent.name] = sample
            reading = decision.reading
            rows.append(Row(
                capability=agent.capability, agent=agent.name, topic=agent.topic,
                group=agent.group, partitions=sample.partitions, latest=sample.latest,
                committed=sample.committed, lag=reading.lag, in_rate=in_rate,
                out_rate=out_rate, metric=reading.metric, active=reading.active,
                desired=seen.desired if seen.source in _IN_CHARGE and seen.desired is not None
                else decision.desired,
                engine_desired=decision.desired, actual=seen,
                min_replicas=agent.spec.min_replica_count,
                max_replicas=agent.spec.max_replica_count, keda_metric=seen.metric,
                work=None if reading_work is None else {
                    "tokens": reading_work.tokens, "records": reading_work.records,
                    "seconds": reading_work.metric, "throughput": reading_work.throughput},
            ))  # fmt: skip
        return Snapshot(time.time(), tuple(rows), tuple(events), tuple(errors))


def _rates(before: LagSample | None, now: LagSample) -> tuple[float | None, float | None]:
    if before is None or now.at <= before.at:
        return None, None
    seconds = now.at - before.at
    return (
        round(max(now.produced - before.produced, 0) / seconds, 2),
        round(max(now.consumed - before.consumed, 0) / seconds, 2),
    )
