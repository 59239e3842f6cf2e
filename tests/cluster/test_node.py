"""The local node does a kubelet's part: pods bound to it run as local processes.

The real kube-scheduler binds each pod to the node; the node runs the container's command with
the pod's environment, reports phase, container states, restarts, exit codes and readiness,
and stops a deleted pod as a kubelet does (preStop, SIGTERM, SIGKILL at the grace period).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from expediter.dev.cluster import PORTS_ANNOTATION, pod_processes
from tests.cluster.conftest import Cluster
from tests.cluster.pods import (
    apply,
    container,
    get,
    log_of,
    new_namespace,
    pid_of,
    pod,
    ready,
)
from tests.polling import alive, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _pod(
    namespace: str, name: str, containers: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": containers, **spec},
    }  # fmt: skip


def _terminated(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found = pod(cluster, namespace, name)
        phase = ((found or {}).get("status") or {}).get("phase")
        return found if phase in ("Succeeded", "Failed") else None

    return wait_for(f"pod {name} terminated", done)


def test_a_pod_runs_its_command_with_the_pods_environment(node: Cluster) -> None:
    ns = new_namespace(node, "env")
    script = (
        'echo "V=$V X=$X NAME=$NAME NODE=$NODE CM=$CM_A PREFIXED=$P_b SECRET=$SEC '
        'PORT=$EXPEDITER_HTTP_PORT HOST=$EXPEDITER_HTTP_HOST DATA=$DATA HOSTNAME=$HOSTNAME"'
    )
    env = [
        {"name": "V", "value": "hello"},
        {"name": "X", "value": "$(V)-world"},
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "CM_A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "a"}}},
        {"name": "SEC", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "DATA", "value": "/var/lib/data/file"},
    ]
    apply(node, [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns},
         "data": {"a": "from-configmap", "b": "prefixed"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": ns},
         "data": {"password": base64.b64encode(b"s3cret").decode()}},
        _pod(ns, "env", [
            {"name": "shell", "image": "busybox", "command": ["sh", "-c", script], "env": env,
             "envFrom": [{"prefix": "P_", "configMapRef": {"name": "settings"}}],
             "ports": [{"name": "http", "containerPort": 8080}],
             "volumeMounts": [{"name": "data", "mountPath": "/var/lib/data"}]},
            # An Expediter image runs this checkout's `expediter` with the container's args.
            {"name": "expediter", "image": "expediter:dev", "args": ["--help"]},
        ], restartPolicy="Never", volumes=[{"name": "data", "emptyDir": {}}]),
    ])  # fmt: skip
    done = _terminated(node, ns, "env")
    assert done["status"]["phase"] == "Succeeded"
    assert done["spec"]["nodeName"] == "expediter-node"
    for index in (0, 1):
        terminated = container(done, index)["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    line = log_of(node, done, "shell")
    values = dict(part.split("=", 1) for part in line.split())
    local_port = values["PORT"]
    assert values | {"PORT": "-", "DATA": "-"} == {
        "V": "hello", "X": "hello-world", "NAME": "env", "NODE": "expediter-node",
        "CM": "from-configmap", "PREFIXED": "prefixed", "SECRET": "s3cret", "PORT": "-",
        "HOST": "127.0.0.1", "DATA": "-", "HOSTNAME": "env",
    }  # fmt: skip
    # Port 8080 of every pod cannot be bound on one machine: each pod gets a free local port.
    assert local_port != "8080"
    assert json.loads(done["metadata"]["annotations"][PORTS_ANNOTATION]) == {
        "http": int(local_port)
    }
    # The volume's path inside the container is the pod's directory on the node.
    assert values["DATA"].startswith(str(node.local.node_dir)), values["DATA"]
    assert "Usage: expediter" in log_of(node, done, "expediter")


def test_an_image_the_node_cannot_run_waits_with_the_reason(node: Cluster) -> None:
    ns = new_namespace(node, "image")
    apply(node, [_pod(ns, "nginx", [{"name": "web", "image": "nginx:1.27"}])])

    def waiting() -> dict[str, Any] | None:
        state = container(pod(node, ns, "nginx") or {}).get("state") or {}
        return (
            state.get("waiting")
            if (state.get("waiting") or {}).get("reason") != "ContainerCreating"
            else None
        )

    found = wait_for("ErrImageNeverPull", waiting)
    assert found["reason"] == "ErrImageNeverPull"
    assert "nginx:1.27" in found["message"]
    assert "command" in found["message"]


def test_a_crashing_container_is_restarted_with_back_off(node: Cluster) -> None:
    ns = new_namespace(node, "crash")
    apply(node, [_pod(ns, "crash", [
        {"name": "crash", "image": "busybox", "command": ["sh", "-c", "echo ran; exit 3"]},
    ])])  # fmt: skip

    def backing_off() -> dict[str, Any] | None:
        status = container(pod(node, ns, "crash") or {})
        waiting = (status.get("state") or {}).get("waiting") or {}
        return status if waiting.get("reason") == "CrashLoopBackOff" else None

    status = wait_for("CrashLoopBackOff", backing_off, timeout=30)
    # The first restart is immediate, the next waits 10 s, as a kubelet's.
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert "back-off 10s" in status["state"]["waiting"]["message"]
    found = pod(node, ns, "crash")
    assert found is not None
    assert found["status"]["phase"] == "Running"  # restartPolicy Always: it will run again
    node.kubectl("delete", "pod", "crash", "-n", ns, "--wait=true", "--timeout=30s")


SERVER = """
import http.server, os, pathlib
flag = pathlib.Path(os.environ["FLAG"])
class Probe(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/healthz" or flag.exists()
        self.send_response(200 if ok else 503)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["EXPEDITER_HTTP_PORT"])), Probe).serve_forever()
"""


def test_readiness_follows_the_readiness_probe_once_the_startup_probe_passes(
    node: Cluster, tmp_path: Path
) -> None:
    ns = new_namespace(node, "ready")
    flag = tmp_path / "ready"
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1,
             "failureThreshold": 1}  # fmt: skip
    apply(node, [_pod(ns, "web", [
        {"name": "web", "image": "python", "command": ["python", "-c", SERVER],
         "env": [{"name": "FLAG", "value": str(flag)}],
         "ports": [{"name": "http", "containerPort": 8080}],
         "startupProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
         "readinessProbe": probe},
    ], terminationGracePeriodSeconds=5)])  # fmt: skip
    started = wait_for("started", lambda: container(pod(node, ns, "web") or {}).get("started"))
    assert started
    time.sleep(2)
    assert not ready(pod(node, ns, "web")), "ready before /readyz said so"
    flag.touch()
    wait_for("Ready", lambda: ready(pod(node, ns, "web")), timeout=15)
    flag.unlink()
    wait_for("not Ready", lambda: not ready(pod(node, ns, "web")), timeout=15)


def test_a_deleted_pod_gets_pre_stop_then_sigterm_then_sigkill_at_its_grace_period(
    node: Cluster, tmp_path: Path
) -> None:
    ns = new_namespace(node, "grace")
    out = tmp_path / "out"
    # It notes SIGTERM and carries on: only SIGKILL at the end of the grace period ends it.
    script = (
        f"trap 'echo term >> {out}' TERM; echo started >> {out}; while true; do sleep 0.1; done"
    )
    apply(node, [_pod(ns, "stubborn", [
        {"name": "main", "image": "busybox", "command": ["sh", "-c", script],
         "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", f"echo pre-stop >> {out}"]}}}},
    ], terminationGracePeriodSeconds=3)])  # fmt: skip

    def started() -> dict[str, Any] | None:
        found = pod(node, ns, "stubborn")
        return found if out.exists() and container(found or {}).get("containerID") else None

    running = wait_for("Running", started)
    pid = pid_of(running)
    began = time.monotonic()
    node.kubectl("delete", "pod", "stubborn", "-n", ns, "--wait=false")
    wait_for("pod removed", lambda: pod(node, ns, "stubborn") is None, timeout=30)
    took = time.monotonic() - began
    assert out.read_text().split() == ["started", "pre-stop", "term"]
    assert 3 <= took < 8, f"removed {took:.1f}s after the delete; its grace period is 3 s"
    assert not alive(pid)


def test_stopping_the_node_stops_every_pod_and_leaves_no_process(node: Cluster) -> None:
    ns = new_namespace(node, "stop")
    script = "trap '' TERM; while true; do sleep 0.1; done"  # deaf to SIGTERM: SIGKILL ends it
    apply(node, [_pod(ns, f"p{n}", [{"name": "main", "image": "busybox",
                                      "command": ["sh", "-c", script]}],
                      terminationGracePeriodSeconds=2) for n in range(2)])  # fmt: skip
    for name in ("p0", "p1"):

        def started(name: str = name) -> bool:
            return bool(container(pod(node, ns, name) or {}).get("started"))

        wait_for(f"{name} running", started)
    assert pod_processes(node.local.node_dir, ns)
    assert node.local.stop_node()
    assert pod_processes(node.local.node_dir) == []
    assert get(node, f"/api/v1/namespaces/{ns}/pods/p0") is None
    assert get(node, "/api/v1/nodes/expediter-node") is None
    assert not node.local.node_running()
