"""A pod's status as a kubelet reports it: phase, conditions and each container's state.

:class:`ContainerStatus` is what the node knows of one container (waiting with a reason,
running since, or terminated with an exit code; restarts; the last termination; started and
ready from the probes). :func:`pod_status` makes the pod's ``status`` from them, by the
kubelet's rules (pkg/kubelet/kubelet_pods.go ``getPhase``): Pending while a container has
never run, Running while one runs or will be restarted, and, when none will run again,
Succeeded if all exited 0 and Failed otherwise. It keeps the conditions others own (the
scheduler's PodScheduled, a DisruptionTarget) and sets the kubelet's own. Pure; called by
:mod:`~expediter.dev.cluster.podrunning`.
"""

from __future__ import annotations

import datetime as dt
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from expediter.dev.cluster.nodes import NODE_IP, rfc3339

__all__ = ["KUBELET_CONDITIONS", "ContainerStatus", "exit_reason", "pod_status"]

KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def exit_reason(returncode: int) -> tuple[int, str, str | None]:
    """(exitCode, reason, message) of a process's return code (negative: killed by a signal)."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return 128 - returncode, "Error", f"killed by {name}"
    return returncode, "Completed" if returncode == 0 else "Error", None


@dataclass
class ContainerStatus:
    name: str
    image: str
    state: str = "waiting"
    """``waiting``, ``running`` or ``terminated``."""
    reason: str | None = "ContainerCreating"
    message: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    exit_code: int | None = None
    last: dict[str, Any] | None = None
    """The previous termination (``lastState.terminated``)."""
    restart_count: int = 0
    started: bool = False
    ready: bool = False
    pid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def terminated(self) -> dict[str, Any]:
        done: dict[str, Any] = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "containerID": f"local://{self.pid}",
        }
        if self.message:
            done["message"] = self.message
        if self.started_at:
            done["startedAt"] = rfc3339(self.started_at)
        if self.finished_at:
            done["finishedAt"] = rfc3339(self.finished_at)
        return done

    def as_dict(self) -> dict[str, Any]:
        state: dict[str, Any]
        if self.state == "running":
            state = {"running": {"startedAt": rfc3339(self.started_at or dt.datetime.now(dt.UTC))}}
        elif self.state == "terminated":
            state = {"terminated": self.terminated()}
        else:
            waiting = {"reason": self.reason or "ContainerCreating"}
            state = {"waiting": {**waiting, "message": self.message} if self.message else waiting}
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "state": state,
            "lastState": {"terminated": self.last} if self.last else {},
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
        }
        if self.pid is not None and self.state != "waiting":
            status["containerID"] = f"local://{self.pid}"
        return status


def _phase(containers: Sequence[ContainerStatus], restart_policy: str, stopped: bool) -> str:
    never_ran = sum(1 for c in containers if c.state == "waiting" and c.last is None)
    if never_ran:
        return "Pending"
    if any(c.state == "running" for c in containers):
        return "Running"
    if any(c.state == "waiting" for c in containers):  # in back-off: it will run again
        return "Running"
    failed = any(c.exit_code != 0 for c in containers)
    # A deleted pod whose processes all ended is terminal, whatever its policy (kubelet 1.27+).
    if stopped:
        return "Failed" if failed else "Succeeded"
    if restart_policy == "Always" or (restart_policy == "OnFailure" and failed):
        return "Running"
    return "Failed" if failed else "Succeeded"


def pod_status(
    pod: Mapping[str, Any],
    containers: Sequence[ContainerStatus],
    *,
    start_time: dt.datetime,
    now: dt.datetime,
    stopped: bool = False,
) -> dict[str, Any]:
    """The pod's ``status`` (for a merge patch: lists are sent whole); ``stopped``: the pod is
    being deleted and will not run again."""
    policy = pod["spec"].get("restartPolicy", "Always")
    old = pod.get("status") or {}
    previous = {c["type"]: c for c in old.get("conditions") or []}
    ready = bool(containers) and all(c.ready for c in containers)
    wanted = {
        "PodReadyToStartContainers": True,
        "Initialized": True,
        "ContainersReady": ready,
        "Ready": ready,
    }
    conditions = [c for t, c in previous.items() if t not in KUBELET_CONDITIONS]
    for kind, value in wanted.items():
        status = "True" if value else "False"
        before = previous.get(kind)
        since = (
            (before or {}).get("lastTransitionTime")
            if (before or {}).get("status") == status
            else None
        )
        condition = {"type": kind, "status": status, "lastTransitionTime": since or rfc3339(now)}
        if kind in ("ContainersReady", "Ready") and not value:
            unready = sorted(c.name for c in containers if not c.ready)
            condition |= {
                "reason": "ContainersNotReady",
                "message": f"containers with unready status: [{' '.join(unready)}]",
            }
        conditions.append(condition)
    return {
        "phase": _phase(containers, policy, stopped),
        "conditions": conditions,
        "hostIP": NODE_IP,
        "hostIPs": [{"ip": NODE_IP}],
        "podIP": NODE_IP,
        "podIPs": [{"ip": NODE_IP}],
        "startTime": rfc3339(start_time),
        "containerStatuses": [c.as_dict() for c in containers],
    }
