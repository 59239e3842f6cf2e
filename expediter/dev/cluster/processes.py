"""The container processes the local node started, told apart from any other process.

The node records each container's PID with its start time (``/proc/<pid>/stat``), so that a
PID reused by the system later is never mistaken for one of ours. Each container is a process
group of its own (its PID is the group's id). :func:`pod_processes` counts what is still alive
of those groups and :func:`kill_pod_processes` ends them: ``expediter dev cluster stop`` calls it
after the node has stopped (or was killed), so that no container outlives the cluster. Called
by :mod:`~expediter.dev.cluster.kubelet`, :mod:`~expediter.dev.cluster.localnode` and the demo.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

__all__ = [
    "PROCESSES_FILE",
    "kill_pod_processes",
    "pod_processes",
    "process_start",
    "recorded_groups",
]

PROCESSES_FILE = "processes.json"


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None when it does not exist."""
    fields = _stat(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def recorded_groups(node_dir: Path, namespace: str | None = None) -> dict[int, int]:
    """{group id: start time of its leader} of the containers in ``processes.json``."""
    try:
        record = json.loads((node_dir / PROCESSES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    groups: dict[int, int] = {}
    for pod in (record.get("pods") or {}).values():
        if namespace is not None and pod.get("namespace") != namespace:
            continue
        for container in (pod.get("containers") or {}).values():
            groups[int(container["pid"])] = int(container.get("start") or 0)
    return groups


def _members(groups: dict[int, int]) -> list[int]:
    """Live (not zombie) processes in the recorded groups whose leader, if alive, is ours."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if not fields or fields[0] == "Z":
            continue
        group = int(fields[2])
        if group not in groups:
            continue
        leader = process_start(group)
        if leader is not None and groups[group] and leader != groups[group]:
            continue  # the group id was reused by someone else's process
        found.append(int(entry.name))
    return found


def pod_processes(node_dir: Path, namespace: str | None = None) -> list[int]:
    """PIDs still alive in the containers the node recorded (optionally one namespace's)."""
    return _members(recorded_groups(node_dir, namespace))


def kill_pod_processes(node_dir: Path) -> int:
    """SIGKILL every recorded container's group; how many processes were alive."""
    groups = recorded_groups(node_dir)
    alive = _members(groups)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(alive)
