"""Starting and stopping the local node's process: :class:`NodeRunning`, part of ``LocalCluster``.

The node (:mod:`~expediter.dev.cluster.kubelet`) is one Python process of the venv the cluster
was started from, serving the Node ``expediter-node`` and, with ``gpu_node``, the Node
``expediter-gpu-node`` too. Its state lives in ``<cluster dir>/node`` (container logs, pod
volumes, ``processes.json``) and its own log in ``<cluster dir>/logs/expediter-node.log``.
A start returns once every Node is Ready; a stop gives it time to stop its pods (SIGTERM, their
grace period, at most ``stop_grace`` s), then kills it and whatever container it left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from expediter.dev.cluster.errors import ClusterError
from expediter.dev.cluster.nodes import cpu_node, gpu_node
from expediter.dev.cluster.processes import kill_pod_processes
from expediter.dev.cluster.requesting import ApiServer

if TYPE_CHECKING:
    from expediter.dev.cluster.running import ClusterState

__all__ = [
    "NODE_PROCESS",
    "NodeRunning",
    "node_command",
    "node_names",
    "nodes_ready",
    "require_venv_entry_point",
    "spawn_node",
    "stop_node_process",
]

NODE_PROCESS = "expediter-node"
"""The node's name among the cluster's processes (state.json's ``pids``)."""
NODE_STOP_GRACE = 15.0
"""The longest a pod's processes get to stop when the node stops."""


def node_names(gpu_node_too: bool) -> list[str]:
    return [cpu_node().name, *([gpu_node().name] if gpu_node_too else [])]


def node_command(*, server: str, pki: Path, node_dir: Path, root: Path, gpu: bool) -> list[str]:
    return [
        sys.executable,
        "-m",
        "expediter.dev.cluster.kubelet",
        f"--server={server}",
        f"--pki={pki}",
        f"--node-dir={node_dir}",
        f"--root={root}",
        f"--gpus={1 if gpu else 0}",
        f"--stop-grace={NODE_STOP_GRACE:g}",
    ]


def nodes_ready(api: ApiServer, names: list[str]) -> bool:
    for name in names:
        reply = api.get(f"/api/v1/nodes/{name}")
        if not reply.ok:
            return False
        conditions = reply.json().get("status", {}).get("conditions", [])
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return False
    return True


def stop_node_process(pid: int, node_dir: Path, is_alive: Callable[[], bool]) -> None:
    """SIGTERM the node, wait for its pods to stop, SIGKILL it if need be, then end whatever
    container it left behind. ``is_alive()`` says whether ``pid`` is still our node."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + NODE_STOP_GRACE + 15
    while is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    kill_pod_processes(node_dir)


def spawn_node(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session, like the cluster's other processes: Ctrl-C does not reach it.
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def require_venv_entry_point() -> None:
    if not (Path(sys.executable).parent / "expediter").exists():
        raise ClusterError(
            f"no `expediter` next to {sys.executable}: the local node runs Expediter's images "
            "as that entry point; install the project into this environment (`make install`)"
        )


class NodeRunning:
    """The node's part of :class:`~expediter.dev.cluster.running.LocalCluster` (a mixin: it
    uses the cluster's state file, process table and waiting)."""

    root: Path
    state_dir: Path
    _procs: dict[str, subprocess.Popen[bytes]]

    if TYPE_CHECKING:

        @property
        def pki(self) -> Path: ...

        @property
        def logs(self) -> Path: ...

        def status(self) -> ClusterState | None: ...

        def _recorded(self) -> ClusterState | None: ...

        def _record(self, state: ClusterState) -> ClusterState: ...

        def _wait(self, name: str, ready: Callable[[], bool], deadline: float) -> None: ...

        def _reap(self, *, block: bool) -> None: ...

        def _ours(self, pid: int) -> bool: ...

    @property
    def node_dir(self) -> Path:
        """The local node's pods: container logs, volumes, ``processes.json``."""
        return self.state_dir / "node"

    def node_running(self, state: ClusterState | None = None) -> bool:
        """Whether the local node's process of this cluster is alive."""
        state = state or self._recorded()
        pid = state.pids.get(NODE_PROCESS) if state else None
        return pid is not None and self._ours(pid)

    def start_node(
        self, *, gpu_node: bool = False, timeout: float = 60.0, root: Path | None = None
    ) -> ClusterState:
        """Run the local node (``expediter-node``; ``expediter-gpu-node`` too with ``gpu_node``)
        on the running cluster, its pods from ``root`` (default: the cluster's); a node already
        running with other Nodes is stopped first. Returns once every Node is Ready."""
        if root is not None:
            self.root = root.absolute()
        state = self.status()
        if state is None:
            raise ClusterError("no local cluster is running: `expediter dev cluster start`")
        names = node_names(gpu_node)
        if self.node_running(state):
            if sorted(state.nodes) == sorted(names):
                return state
            self.stop_node()
            state = self.status() or state
        require_venv_entry_point()
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        command = node_command(
            server=state.server, pki=self.pki, node_dir=self.node_dir, root=self.root, gpu=gpu_node
        )
        self._procs[NODE_PROCESS] = spawn_node(command, self.logs / f"{NODE_PROCESS}.log")
        state.pids[NODE_PROCESS] = self._procs[NODE_PROCESS].pid
        state.nodes[:] = names
        self._record(state)
        api = ApiServer(state.server, self.pki)
        try:
            self._wait(NODE_PROCESS, lambda: nodes_ready(api, names), time.monotonic() + timeout)
        except BaseException:
            self.stop_node()
            raise
        return state

    def stop_node(self) -> bool:
        """Stop the local node: its pods' processes end (SIGTERM, then SIGKILL), its pods and
        Nodes leave the API; nothing it started is left. True if it was running."""
        state = self._recorded()
        if state is None or NODE_PROCESS not in state.pids:
            return False
        pid = state.pids[NODE_PROCESS]
        running = self._ours(pid)

        def alive() -> bool:
            self._reap(block=False)
            return self._ours(pid)

        if running:
            stop_node_process(pid, self.node_dir, alive)
        kill_pod_processes(self.node_dir)  # what a node that died left behind
        proc = self._procs.pop(NODE_PROCESS, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        del state.pids[NODE_PROCESS]
        state.nodes.clear()
        self._record(state)
        return running
