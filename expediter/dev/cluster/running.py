"""Running a real Kubernetes control plane and a real KEDA as local processes on loopback.

:class:`LocalCluster` starts, from the cached build (:mod:`~expediter.dev.cluster.building`):
etcd, kube-apiserver, kube-controller-manager (deployment, replicaset and HPA controllers),
kube-scheduler, and KEDA's operator and metrics adapter, each on free loopback ports with its
own log. With ``node=True`` (``gpu_node=True`` for a GPU node too) it also runs the local node
(:mod:`~expediter.dev.cluster.kubelet`), which runs the pods bound to it as local processes;
without it pods stay Pending, and a Deployment's ``spec.replicas`` is what KEDA and the HPA
change. Its state (PIDs, ports, kubeconfig) goes to ``state.json`` in the state
directory, so that another process (``expediter dev cluster status|stop``) can find it and stop
it, by PID, and nobody else's. Called by the CLI and the tests' cluster fixture.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType

from expediter.dev.cluster.building import built_bin, crds_dir
from expediter.dev.cluster.certificates import make_pki, write_kubeconfig
from expediter.dev.cluster.errors import ClusterError
from expediter.dev.cluster.flags import (
    ADAPTER_IP,
    KUBERNETES_SERVICE_IP,
    SERVICE_RANGE,
    apiserver_flags,
    controller_manager_flags,
    etcd_flags,
    keda_adapter_flags,
    keda_env,
    keda_operator_flags,
    scheduler_flags,
)
from expediter.dev.cluster.installing import (
    EXTERNAL_METRICS_APISERVICE,
    apply_objects,
    install_crds,
    metrics_api_objects,
    require_kubectl,
)
from expediter.dev.cluster.localnode import NodeRunning, node_names
from expediter.dev.cluster.requesting import ApiServer, etcd_healthy, probe_ok
from expediter.dev.cluster.versions import ETCD_VERSION, KEDA_VERSION, KUBERNETES_VERSION

__all__ = ["ClusterState", "LocalCluster"]

_ORDER = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "keda-operator",
    "keda-adapter",
)


@dataclass(frozen=True)
class ClusterState:
    """What ``state.json`` records about a running local cluster."""

    server: str
    kubeconfig: str
    pids: dict[str, int]
    ports: dict[str, int]
    logs: str
    started_at: float
    hpa_sync_period: float
    versions: dict[str, str] = field(
        default_factory=lambda: {
            "kubernetes": KUBERNETES_VERSION,
            "keda": KEDA_VERSION,
            "etcd": ETCD_VERSION,
        }
    )
    nodes: list[str] = field(default_factory=list)
    """The Nodes the local node serves (none when it does not run)."""


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (the kernel may hand out a just-closed one again)."""
    ports: list[int] = []
    while len(ports) < count:
        port = _free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _is_ours(pid: int, marker: Path) -> bool:
    """True when ``pid`` is alive and its command line names our state directory."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie (state Z) has exited; only its parent's wait is missing.
    return f"{marker}/".encode() in cmdline and stat.rpartition(")")[2].split()[0] != "Z"


class LocalCluster(NodeRunning):
    """A throwaway Kubernetes control plane with KEDA, for development and tests.

    ``start()`` and ``stop()`` are idempotent; ``with`` starts and stops it. A start finds and
    reuses a cluster already running from the same state directory, and starts a fresh one (its
    etcd data wiped) otherwise.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        hpa_sync_period: float = 15.0,
        cache: Path | None = None,
        node: bool = False,
        gpu_node: bool = False,
        root: Path | None = None,
    ) -> None:
        """``node``: run the local node too (``gpu_node``: with a GPU node beside it), whose
        pods run from ``root`` (the checkout; default the working directory)."""
        if hpa_sync_period <= 0:
            raise ClusterError(f"hpa_sync_period must be positive, got {hpa_sync_period}")
        self.state_dir = state_dir.absolute()
        self.hpa_sync_period = hpa_sync_period
        self.cache = cache
        self.node = node or gpu_node
        self.gpu_node = gpu_node
        self.root = (root or Path.cwd()).absolute()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def _ours(self, pid: int) -> bool:
        return _is_ours(pid, self.state_dir)

    def _recorded(self) -> ClusterState | None:
        try:
            return ClusterState(**json.loads(self._state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def status(self) -> ClusterState | None:
        """The state of the cluster running from this state directory, or None.

        None as well when only some of its processes are alive: ``stop()`` ends those.
        """
        state = self._recorded()
        if state is None or not set(_ORDER) <= set(state.pids):
            return None
        alive = all(_is_ours(state.pids[name], self.state_dir) for name in _ORDER)
        return state if alive else None

    def api(self, state: ClusterState | None = None) -> ApiServer:
        """A client of this cluster's API server, as the admin."""
        state = state or self.status()
        if state is None:
            raise ClusterError("no local cluster is running: `expediter dev cluster start`")
        return ApiServer(state.server, self.pki)

    def start(self, timeout: float = 180.0) -> ClusterState:
        """Start the cluster, or return the one already running from this state directory."""
        running = self.status()
        if running is not None:
            wanted = node_names(self.gpu_node)
            if self.node and not (self.node_running(running) and set(wanted) <= set(running.nodes)):
                return self.start_node(gpu_node=self.gpu_node)
            return running
        bin_dir = built_bin(self.cache)
        require_kubectl()
        self.stop()  # whatever is left of a start that failed half-way, or of a crash
        self._procs = {}  # those of an earlier start by this instance are gone now
        deadline = time.monotonic() + timeout
        state = self._prepare()
        try:
            self._launch(bin_dir, state, deadline)
        except BaseException:
            self._kill_started()
            raise
        state = self._record(state)
        if self.node:
            try:
                return self.start_node(gpu_node=self.gpu_node, timeout=timeout)
            except BaseException:
                self.stop()
                raise
        return state

    def _prepare(self) -> ClusterState:
        if self.state_dir.exists():
            for stale in ("etcd", "pki", "logs", "node"):
                _remove(self.state_dir / stale)
        self.logs.mkdir(parents=True)
        try:
            adapter = _free_port(ADAPTER_IP)
        except OSError as exc:
            raise ClusterError(
                f"cannot bind {ADAPTER_IP} ({exc}): KEDA's adapter must listen inside the "
                f"loopback service range {SERVICE_RANGE}; on Linux all of 127/8 is local, "
                "elsewhere add the address to the loopback interface"
            ) from exc
        make_pki(self.pki, service_ip=KUBERNETES_SERVICE_IP, adapter_ip=ADAPTER_IP)
        names = (
            "etcd",
            "etcd-peer",
            "kube-apiserver",
            "keda-operator-grpc",
            "keda-operator-metrics",
            "keda-operator-probe",
            "keda-adapter-metrics",
        )
        ports = dict(zip(names, _free_ports(len(names)), strict=True))
        ports["keda-adapter"] = adapter
        server = f"https://127.0.0.1:{ports['kube-apiserver']}"
        write_kubeconfig(self.kubeconfig, server=server, pki=self.pki)
        return ClusterState(
            server=server,
            kubeconfig=str(self.kubeconfig),
            pids={},
            ports=ports,
            logs=str(self.logs),
            started_at=time.time(),
            hpa_sync_period=self.hpa_sync_period,
        )

    def _launch(self, bin_dir: Path, state: ClusterState, deadline: float) -> None:
        ports, pki, kubeconfig = state.ports, self.pki, self.kubeconfig
        api = ApiServer(state.server, pki)
        spawn = partial(self._spawn, bin_dir=bin_dir, state=state)
        spawn("etcd", etcd_flags(self.state_dir / "etcd", ports))
        etcd = f"http://127.0.0.1:{ports['etcd']}"
        self._wait("etcd", lambda: etcd_healthy(etcd), deadline)
        spawn("kube-apiserver", apiserver_flags(pki, ports))
        self._wait("kube-apiserver", api.ready, deadline)
        spawn("kube-controller-manager", controller_manager_flags(kubeconfig, self.hpa_sync_period))
        spawn("kube-scheduler", scheduler_flags(kubeconfig))
        install_crds(kubeconfig, crds_dir(self.cache))
        spawn("keda-operator", keda_operator_flags(pki, ports), env=keda_env(kubeconfig))
        spawn("keda-adapter", keda_adapter_flags(pki, kubeconfig, ports), env=keda_env(kubeconfig))
        apply_objects(kubeconfig, metrics_api_objects(ADAPTER_IP, ports["keda-adapter"]))
        probe = f"http://127.0.0.1:{ports['keda-operator-probe']}/readyz"
        self._wait("keda-operator", lambda: probe_ok(probe), deadline)
        self._wait(
            "keda-adapter", lambda: api.apiservice_available(EXTERNAL_METRICS_APISERVICE), deadline
        )

    def _spawn(
        self,
        name: str,
        args: list[str],
        *,
        bin_dir: Path,
        state: ClusterState,
        env: dict[str, str] | None = None,
    ) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            self._procs[name] = subprocess.Popen(
                [str(bin_dir / name), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                # Its own session: Ctrl-C on `expediter dev cluster start` must not reach it.
                start_new_session=True,
            )
        state.pids[name] = self._procs[name].pid
        # Recorded at once, so that a stop after a start that died half-way finds it.
        self._state_file.write_text(json.dumps(asdict(state), indent=2))

    def _wait(self, name: str, ready: Callable[[], bool], deadline: float) -> None:
        while True:
            for started, proc in self._procs.items():
                if proc.poll() is not None:
                    raise ClusterError(
                        f"{started} exited with code {proc.returncode} during start-up"
                        f"{self._explain(started)}"
                    )
            if ready():
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} was not ready in time{self._explain(name)}")
            time.sleep(0.2)

    def _explain(self, name: str) -> str:
        tail = self.log_tail(name)
        hint = ""
        if "address already in use" in tail:
            hint = (
                "\nA port it was given was taken meanwhile by another process: run "
                "`expediter dev cluster start` again (it picks fresh free ports)."
            )
        return f"; its log ({self.logs / name}.log) ends:\n{tail}{hint}"

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = (self.logs / f"{name}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _record(self, state: ClusterState) -> ClusterState:
        self._state_file.write_text(json.dumps(asdict(state), indent=2))
        return state

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM each process of this cluster (its PIDs only) in turn, KEDA first, etcd last.

        One at a time: signalled all at once, the clients hang on an API server that is already
        going away. Each gets ``timeout`` seconds, then SIGKILL. True if any was running.
        """
        stopped = self.stop_node()  # first: it deletes its pods through the API server
        state = self._recorded()
        if state is None:
            return stopped
        for name in reversed(_ORDER):
            pid = state.pids.get(name)
            if pid is None or not _is_ours(pid, self.state_dir):
                continue
            stopped = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _is_ours(pid, self.state_dir) and time.monotonic() < deadline:
                self._reap(block=False)
                time.sleep(0.05)
            if _is_ours(pid, self.state_dir):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._reap(block=True)
        self._state_file.unlink(missing_ok=True)
        return stopped

    def _kill_started(self) -> None:
        for proc in reversed(list(self._procs.values())):
            if proc.poll() is None:
                proc.kill()
        self._reap(block=True)
        self._state_file.unlink(missing_ok=True)

    def _reap(self, *, block: bool) -> None:
        # Our own children linger as zombies until waited for.
        for proc in self._procs.values():
            if block:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
            else:
                proc.poll()

    def __enter__(self) -> ClusterState:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
