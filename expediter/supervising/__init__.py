"""The local supervisor: KEDA's scaling of agent workers, on one machine (``expediter up``).

It reads the SAME keda/ ScaledObjects a cluster uses (:mod:`~.scaledobjects`), samples live lag
from the broker (:mod:`~.sampling`), steps :mod:`expediter.scaling`'s engine per agent
(:mod:`~.deciding`), runs the worker replicas and the orchestrator as processes
(:mod:`~.replicas`), and writes its state for ``expediter watch`` (:mod:`~.state`);
:mod:`~.running` ties them together. It starts the worker and the orchestrator as processes and
imports neither. Called by the CLI (``up``, ``watch``, ``demo``), the bench and the tests.
"""

from expediter.supervising.deciding import AgentScaler, Decision
from expediter.supervising.replicas import Exit, Replica, ReplicaSet, signal_group
from expediter.supervising.running import Report, Supervisor, SupervisorOptions, worker_env
from expediter.supervising.sampling import LagSample, LagSampler, MissingTopicError
from expediter.supervising.scaledobjects import (
    DEFAULT_GRACE_SECONDS,
    ScaledAgent,
    read_scaled_agents,
    select_agents,
)
from expediter.supervising.state import (
    STATE_FILE,
    AgentState,
    ScaleEvent,
    SupervisorState,
    read_state,
    write_state,
)

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "STATE_FILE",
    "AgentScaler",
    "AgentState",
    "Decision",
    "Exit",
    "LagSample",
    "LagSampler",
    "MissingTopicError",
    "Replica",
    "ReplicaSet",
    "Report",
    "ScaleEvent",
    "ScaledAgent",
    "Supervisor",
    "SupervisorOptions",
    "SupervisorState",
    "read_scaled_agents",
    "read_state",
    "select_agents",
    "signal_group",
    "worker_env",
    "write_state",
]
