"""``expediter demo --cluster``: a burst scaled by the real KEDA and HPA, worked off by pods.

The whole path is real: KEDA reads the lag and activates each agent's Deployment, the HPA sets
its replicas, the scheduler binds the pods, the local node runs them as workers, they drain
the lag, every workflow completes, and after the cooldown every agent is back to its minimum
with no pod and no process left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from expediter.dev import Broker
from expediter.dev.cluster import pod_processes
from tests.cluster.conftest import ROOT, Cluster
from tests.cluster.pods import pods

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

WORKFLOWS = 20


def test_the_cluster_demo_scales_the_fleet_up_works_the_burst_off_and_back_to_minimum(
    node: Cluster, kafka: Broker
) -> None:
    env = {**os.environ, "EXPEDITER_DEV_DIR": str(node.dev_dir),
           "EXPEDITER_BOOTSTRAP": kafka.bootstrap}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "expediter.cli", "demo", "--cluster", "--json",
         "--count", str(WORKFLOWS), "--cooldown", "5", "--max-replicas", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["ok"], summary
    assert (summary["submitted"], summary["done"], summary["completed"]) == (WORKFLOWS,) * 3
    # KEDA and the HPA started pods for the agents with lag; they all came back to minimum.
    assert summary["peak_replicas"]["soil-analyzer"] >= 1, summary["peak_replicas"]
    assert summary["peak_replicas"]["pest-detector"] >= 1, summary["peak_replicas"]
    assert summary["first_replica_seconds"] is not None
    assert summary["peak_seconds"] >= summary["first_replica_seconds"]
    assert summary["scaled_back"], summary
    assert summary["leftover_processes"] == 0
    namespace = summary["cluster"]["namespace"]
    assert summary["cluster"]["nodes"] == ["expediter-node"]
    assert pods(node, namespace) == []
    assert pod_processes(node.local.node_dir, namespace) == []
