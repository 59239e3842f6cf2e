"""How many replicas one agent should run: KEDA's scale loop and HPA on live samples.

:class:`AgentScaler` pairs a :class:`~expediter.supervising.scaledobjects.ScaledAgent` with a
:class:`expediter.scaling.Simulation` (the same engine as ``expediter keda simulate``) and a
polling schedule. :meth:`AgentScaler.decide` takes one :class:`LagSample` at time ``t`` (seconds
since the supervisor started) and returns a :class:`Decision`; a change of count comes with the
engine's explanation as its reason. The scaler never touches processes: the supervisor applies
``desired``. An agent with a work-based trigger steps on the scaler's reading too
(:class:`~expediter.supervising.workreading.WorkStepper`). One step is one KEDA poll and one HPA
sync, so with a shortened polling interval the HPA syncs as often (a cluster's HPA syncs every
15 s).

Who calls it: :class:`expediter.supervising.running.Supervisor`; ``expediter watch`` uses it to
show what KEDA would want.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from expediter.errors import ConfigurationError
from expediter.scaling import LagReading, Seconds, Simulation, StepResult
from expediter.supervising.sampling import LagSample
from expediter.supervising.scaledobjects import ScaledAgent
from expediter.supervising.workreading import WorkReading, WorkStepper

__all__ = ["AgentScaler", "Decision"]


@dataclass(frozen=True)
class Decision:
    """One poll's outcome for one agent."""

    agent: str
    t: Seconds
    previous: int
    desired: int
    reading: LagReading
    step: StepResult
    work: WorkReading | None = None
    """The scaler's reading, for an agent with a work-based trigger."""

    @property
    def changed(self) -> bool:
        return self.desired != self.previous

    @property
    def reason(self) -> str:
        """Why: KEDA's part (activation, cooldown) or the HPA's (metric, windows, policies)."""
        step = self.step
        if step.keda_changed and step.keda:
            return f"KEDA: {step.keda}"
        if step.hpa is not None and self.work is not None:
            return f"HPA: work {self.work.text()}, lag {self.reading.lag}, {step.hpa.reason}"
        if step.hpa is not None:
            return f"HPA: metric {self.reading.metric}, {step.hpa.reason}"
        return step.keda or "no change"


class AgentScaler:
    """One agent's KEDA + HPA, polled every ``agent.spec.polling_interval`` seconds."""

    def __init__(self, agent: ScaledAgent, replicas: int = 0) -> None:
        self.agent = agent
        also = [trigger for trigger, _ in agent.also]
        self._work: WorkStepper | None = None
        if agent.work is not None:  # the work trigger, alone or next to the lag one
            lag = agent.trigger if agent.uses_lag else None
            self._work = WorkStepper(agent.work, lag, agent.spec, replicas, also=also)
            self.simulation = self._work.simulation
        else:
            self.simulation = Simulation(agent.trigger, agent.spec, replicas, also=also)
        self._next_poll: Seconds = 0

    @property
    def replicas(self) -> int:
        return self.simulation.replicas

    def due(self, t: Seconds) -> bool:
        """Whether a poll is due at ``t`` (the first one is due at once)."""
        return t >= self._next_poll

    def decide(
        self,
        t: Seconds,
        sample: LagSample,
        also: Sequence[LagSample] = (),
        work: WorkReading | None = None,
    ) -> Decision:
        """Step the engine on ``sample`` (and ``also``, one for each of ``agent.also``, in
        order; ``work``, the scaler's reading, for an agent with a work trigger); the next poll
        is due one polling interval later."""
        previous = self.simulation.replicas
        offsets = [(s.latest, s.committed) for s in also]
        if self._work is not None:
            if work is None:
                raise ConfigurationError(
                    f"{self.agent.name} scales on pending work: pass the scaler's reading"
                )
            step = self._work.step(t, sample.latest, sample.committed, work, offsets)
        else:
            step = self.simulation.step(t, sample.latest, sample.committed, offsets)
        self._next_poll = t + max(self.agent.spec.polling_interval, 0.1)
        return Decision(self.agent.name, t, previous, step.replicas, step.reading, step, work)
