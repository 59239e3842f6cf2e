"""The supervisor's state file: what runs now and the last scale events, as one JSON document.

:class:`SupervisorState` is written atomically (a temporary file in the same folder, then
``os.replace``) at each poll, so a reader never sees half a document. ``expediter watch`` reads
it for the actual replicas; scripts may too. The document::

    {"version": 1, "pid": 1234, "started_at": 1700000000.0, "updated_at": ..., "running": true,
     "prefix": "", "orchestrator": {"pids": [1240], "restarts": 0} or null,
     "agents": [{"name": "soil-analyzer", "capability": "soil-analysis",
                 "agent_file": "agents/soil_analyzer.py", "topic": ..., "group": ...,
                 "min_replicas": 0, "max_replicas": 6, "polling_interval": 2, "cooldown": 10,
                 "replicas": 2, "desired": 2, "lag": 40, "metric": 40, "active": true,
                 "partitions": 6, "pids": [..], "stopping_pids": [..], "restarts": 0,
                 "polled_at": ...}],
     "events": [{"time": ..., "agent": "soil-analyzer", "capability": "soil-analysis",
                 "from": 0, "to": 1, "reason": "KEDA: active at 0 replicas ..."}]}

``replicas`` counts running processes not asked to stop; ``desired`` is the engine's count.
Times are Unix seconds. Who calls it: :class:`expediter.supervising.running.Supervisor` writes,
``expediter watch`` and the demo read (:func:`read_state`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from expediter.errors import ConfigurationError

__all__ = [
    "STATE_FILE",
    "AgentState",
    "ScaleEvent",
    "SupervisorState",
    "read_state",
    "write_state",
]

STATE_FILE = "supervisor.json"
STATE_VERSION = 1
EVENTS_KEPT = 50


@dataclass
class ScaleEvent:
    time: float
    agent: str
    capability: str
    from_: int
    to: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"time": self.time, "agent": self.agent, "capability": self.capability,
                "from": self.from_, "to": self.to, "reason": self.reason}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScaleEvent:
        return cls(float(d["time"]), str(d["agent"]), str(d["capability"]), int(d["from"]),
                   int(d["to"]), str(d.get("reason", "")))  # fmt: skip


@dataclass
class AgentState:
    name: str
    capability: str
    agent_file: str
    topic: str
    group: str
    min_replicas: int
    max_replicas: int
    polling_interval: int
    cooldown: int
    replicas: int = 0
    desired: int = 0
    lag: int | None = None
    metric: int | None = None
    active: bool | None = None
    partitions: int | None = None
    pids: list[int] = field(default_factory=list)
    stopping_pids: list[int] = field(default_factory=list)
    restarts: int = 0
    polled_at: float | None = None
    error: str | None = None
    """The last sampling error (a missing topic, an unreachable broker), or None."""
    work_tokens: float | None = None
    """Pending tokens, for an agent with the work-based trigger (expediter scaler)."""
    work_metric: float | None = None
    """Its metric: seconds of one replica's work, what the HPA reads."""


@dataclass
class SupervisorState:
    pid: int
    started_at: float
    updated_at: float
    running: bool = True
    prefix: str = ""
    orchestrator: dict[str, Any] | None = None
    agents: list[AgentState] = field(default_factory=list)
    events: list[ScaleEvent] = field(default_factory=list)

    def agent(self, name: str) -> AgentState | None:
        return next((a for a in self.agents if name in (a.name, a.capability)), None)

    def record(self, event: ScaleEvent) -> None:
        self.events.append(event)
        del self.events[:-EVENTS_KEPT]

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION, "pid": self.pid, "started_at": self.started_at,
            "updated_at": self.updated_at, "running": self.running, "prefix": self.prefix,
            "orchestrator": self.orchestrator, "agents": [asdict(a) for a in self.agents],
            "events": [e.as_dict() for e in self.events],
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SupervisorState:
        if d.get("version") != STATE_VERSION:
            raise ConfigurationError(
                f"supervisor state version {d.get('version')!r} is not {STATE_VERSION}; restart "
                "`expediter up` with this version of expediter"
            )
        return cls(
            pid=int(d["pid"]), started_at=float(d["started_at"]),
            updated_at=float(d["updated_at"]), running=bool(d.get("running", False)),
            prefix=str(d.get("prefix", "")), orchestrator=d.get("orchestrator"),
            agents=[AgentState(**a) for a in d.get("agents", [])],
            events=[ScaleEvent.from_dict(e) for e in d.get("events", [])],
        )  # fmt: skip


def write_state(path: Path, state: SupervisorState) -> None:
    """Replace ``path`` with ``state`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(state.as_dict(), out, indent=1, sort_keys=True)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_state(path: Path) -> SupervisorState | None:
    """The state at ``path``, or None when there is none; a corrupt file raises
    ConfigurationError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return SupervisorState.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(
            f"{path}: not a supervisor state file ({exc}); delete it or restart `expediter up`"
        ) from exc
