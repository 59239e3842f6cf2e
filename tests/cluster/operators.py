"""Helpers the operator's cluster tests share: the operator as a real process under its own
service account, a namespace ready for Agents, Agents and what they became.

The operator runs as ``expediter operator --kubeconfig FILE`` where FILE holds a token of the
``expediter-operator`` service account bound to k8s/operator/rbac.yaml's ClusterRole, so every
test also checks that the committed RBAC is enough. A namespace for Agents gets what k8s/base
gives one: the Kafka client ConfigMap (pointed at the test broker, PLAINTEXT) and the Secret the
TriggerAuthentication and the workers read (``sasl: none``, ``tls: disable``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from expediter.dev import Broker
from tests.cluster.conftest import ROOT, Cluster
from tests.polling import wait_for

OPERATOR_NAMESPACE = "expediter"
SERVICE_ACCOUNT = "expediter-operator"
OWNED_KINDS = ("deployment", "service", "poddisruptionbudget", "scaledobject")
MANAGED = "app.kubernetes.io/managed-by=expediter-operator"
RESYNC_SECONDS = 2.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def install(cluster: Cluster, work: Path) -> Path:
    """The CRD and the operator's RBAC, applied as committed; returns a kubeconfig that
    authenticates as the operator's service account."""
    cluster.kubectl("apply", "--server-side", "-k", str(ROOT / "k8s" / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/agents.expediter.io")
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(namespace))
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "k8s" / "operator" / "rbac.yaml"))
    token = cluster.kubectl(
        "create", "token", SERVICE_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration=2h"
    ).strip()
    config = json.loads(cluster.kubeconfig.read_text())
    config["users"] = [{"name": SERVICE_ACCOUNT, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = SERVICE_ACCOUNT
    path = work / "operator-kubeconfig"
    path.write_text(json.dumps(config))
    return path


@dataclass
class OperatorProcess:
    """``expediter operator`` as a subprocess; :meth:`start` again after a stop or a kill."""

    kubeconfig: Path
    bootstrap: str
    log: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts}\n".encode())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "expediter.cli", "operator",
             "--kubeconfig", str(self.kubeconfig), "--bootstrap", self.bootstrap,
             "--resync-seconds", str(RESYNC_SECONDS), "--health-port", str(self.port),
             "--catalog", str(ROOT / "topics" / "topics.yaml"), "--json-logs"],
            cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for("the operator's /healthz", self.healthy, timeout=60)

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the operator exited {self.proc.returncode}:\n{self.tail()}")
        try:
            url = f"http://127.0.0.1:{self.port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; its exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"the operator ignored SIGTERM for {timeout:.0f}s") from None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_operator(cluster: Cluster, kafka: Broker, work: Path) -> Iterator[OperatorProcess]:
    operator = OperatorProcess(install(cluster, work), kafka.bootstrap, work / "operator.log")
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def agent_namespace(cluster: Cluster, kafka: Broker, stem: str) -> str:
    """A fresh namespace with the Kafka client ConfigMap and Secret an Agent's objects read."""
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "expediter-kafka-client", "namespace": name},
            "data": {"EXPEDITER_BOOTSTRAP": kafka.bootstrap,
                     "EXPEDITER_SECURITY_PROTOCOL": "PLAINTEXT"},
        },
        {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "expediter-kafka", "namespace": name},
            "stringData": {"sasl": "none", "tls": "disable", "username": "", "password": "",
                           "ca": ""},
        },
    ]  # fmt: skip
    cluster.kubectl(
        "apply", "--server-side", "-f", "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
    )  # fmt: skip
    return name


def agent(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "expediter.io/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def kubectl_apply(cluster: Cluster, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """``kubectl apply`` as a person runs it (client-side, YAML); the result, not raised."""
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "apply", "-f", "-"],
        input=yaml.safe_dump(obj), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def get(cluster: Cluster, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", kind, name, "-n", namespace,
         "-o", "json", "--ignore-not-found"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return json.loads(out) if out.strip() else None


def listed(
    cluster: Cluster, kinds: str, namespace: str, selector: str = ""
) -> list[dict[str, Any]]:
    args = ["get", kinds, "-n", namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    items: list[dict[str, Any]] = json.loads(cluster.kubectl(*args))["items"]
    return items


def status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    found = get(cluster, "agent", namespace, name) or {}
    result: dict[str, Any] = found.get("status") or {}
    return result


def condition(found: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in found.get("conditions", []) if c["type"] == kind), {})
