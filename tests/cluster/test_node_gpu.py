"""GPU agents' pods go to the GPU node only, placed by the real kube-scheduler.

The gpu overlay (k8s/overlays/gpu) gives GPU agents a nodeSelector (nvidia.com/gpu.present),
a toleration of the nvidia.com/gpu taint and an nvidia.com/gpu limit. Without a GPU node such a
pod stays Pending, and ``expediter dev cluster status`` shows the scheduler's reason; once the
node presents one (``--gpu-node``) it runs there, while CPU agents never land on it (its taint).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from expediter.dev import Broker
from expediter.dev.cluster import GPU_LABEL, GPU_RESOURCE
from expediter.dev.cluster.fleet import FleetOptions, fleet_objects, remove_fleet, render_overlay
from tests.cluster.conftest import ROOT, Cluster
from tests.cluster.pods import apply, container, pods
from tests.polling import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

GPU_AGENT, CPU_AGENT = "crop-mapper", "soil-analyzer"


def _one_pod(cluster: Cluster, ns: str, app: str) -> dict[str, Any] | None:
    found = [p for p in pods(cluster, ns, f"app.kubernetes.io/name={app}")
             if not p["metadata"].get("deletionTimestamp")]  # fmt: skip
    return found[0] if len(found) == 1 else None


def _status(cluster: Cluster) -> dict[str, Any]:
    env = {**os.environ, "EXPEDITER_DEV_DIR": str(cluster.dev_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "expediter.cli", "dev", "cluster", "status", "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = json.loads(done.stdout)
    return status


def test_a_gpu_agent_waits_for_a_gpu_node_and_runs_only_there(node: Cluster, kafka: Broker) -> None:
    ns = f"gpu-{uuid.uuid4().hex[:6]}"
    # The gpu overlay is the production one (SASL_SSL, a Secret): aimed at the test broker here.
    options = FleetOptions(namespace=ns, bootstrap=kafka.bootstrap, prefix=f"{ns}.",
                           agents=[GPU_AGENT, CPU_AGENT], orchestrator=False,
                           env={"EXPEDITER_SECURITY_PROTOCOL": "PLAINTEXT"})  # fmt: skip
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "expediter-kafka", "namespace": ns},
              "stringData": {"username": "-", "password": "-", "ca": "-"}}  # fmt: skip
    objects = [*fleet_objects(render_overlay(ROOT, "gpu"), options), secret]
    for obj in objects:
        if obj["kind"] == "Deployment":
            obj["spec"]["replicas"] = 1
            for env in obj["spec"]["template"]["spec"]["containers"][0].get("env", []):
                if env["name"] == "EXPEDITER_ENGINE_KIND":
                    env["value"] = "rules"  # placement is the point here, not llama.cpp
    gpu_spec = next(o for o in objects if o["metadata"]["name"] == GPU_AGENT
                    and o["kind"] == "Deployment")["spec"]["template"]["spec"]  # fmt: skip
    assert gpu_spec["nodeSelector"] == {GPU_LABEL: "true"}
    assert gpu_spec["containers"][0]["resources"]["limits"][GPU_RESOURCE] == "1"
    apply(node, [o for o in objects if o["kind"] != "ScaledObject"])  # the replicas are ours
    try:
        # No GPU node: the scheduler refuses it, and says why.
        def unschedulable() -> dict[str, Any] | None:
            found = _one_pod(node, ns, GPU_AGENT)
            conditions = ((found or {}).get("status") or {}).get("conditions") or []
            return next((c for c in conditions if c["type"] == "PodScheduled"
                         and c.get("reason") == "Unschedulable"), None)  # fmt: skip

        refused = wait_for("the GPU pod refused", unschedulable)
        assert "didn't match Pod's node affinity/selector" in refused["message"], refused
        listed = {p["name"]: p for p in _status(node)["pods"] if p["namespace"] == ns}
        (waiting,) = [p for n, p in listed.items() if n.startswith(GPU_AGENT)]
        assert (waiting["phase"], waiting["reason"]) == ("Pending", "Unschedulable")
        assert waiting["message"] == refused["message"]
        cpu = wait_for("the CPU pod placed", lambda: (_one_pod(node, ns, CPU_AGENT) or {})
                       .get("spec", {}).get("nodeName"))  # fmt: skip
        assert cpu == "expediter-node"

        # A GPU node appears: the pending pod is placed there and runs; CPU pods stay off it.
        node.local.start_node(gpu_node=True)

        def running_on_gpu() -> dict[str, Any] | None:
            found = _one_pod(node, ns, GPU_AGENT)
            return found if container(found or {}).get("started") else None

        placed = wait_for("the GPU pod running", running_on_gpu, timeout=90)
        assert placed["spec"]["nodeName"] == "expediter-gpu-node"
        assert placed["status"]["phase"] == "Running"
        cpu = wait_for("the CPU pod placed again", lambda: (_one_pod(node, ns, CPU_AGENT) or {})
                       .get("spec", {}).get("nodeName"))  # fmt: skip
        assert cpu == "expediter-node"
    finally:
        remove_fleet(node.kubeconfig, ns, timeout=60)
