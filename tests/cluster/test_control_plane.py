"""The local cluster is a real control plane with KEDA: what `expediter dev cluster` promises."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from expediter.dev.cluster import (
    EXTERNAL_METRICS_APISERVICE,
    KEDA_VERSION,
    KUBERNETES_VERSION,
    LocalCluster,
)
from tests.cluster.conftest import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

KEDA_CRDS = {
    "scaledobjects.keda.sh",
    "scaledjobs.keda.sh",
    "triggerauthentications.keda.sh",
    "clustertriggerauthentications.keda.sh",
}


def _cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EXPEDITER_DEV_DIR": str(cluster.dev_dir)}
    return subprocess.run(
        [sys.executable, "-m", "expediter.cli", "dev", "cluster", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_api_server_answers_with_the_pinned_version(cluster: Cluster) -> None:
    assert cluster.api.ready()
    assert cluster.api.version() == f"v{KUBERNETES_VERSION}"
    # kubectl with the written kubeconfig reaches it too, as the admin.
    assert cluster.kubectl("auth", "can-i", "create", "deployments").strip() == "yes"


def test_keda_crds_are_installed_and_served(cluster: Cluster) -> None:
    crds = json.loads(cluster.kubectl("get", "crd", "-o", "json"))["items"]
    established = {
        crd["metadata"]["name"]
        for crd in crds
        if any(
            c["type"] == "Established" and c["status"] == "True"
            for c in crd["status"]["conditions"]
        )
    }
    assert established >= KEDA_CRDS
    assert cluster.api.get("/apis/keda.sh/v1alpha1/scaledobjects").ok


def test_the_external_metrics_api_is_available(cluster: Cluster) -> None:
    assert cluster.api.apiservice_available(EXTERNAL_METRICS_APISERVICE)
    # Available is the aggregator's word; discovery through it proves it reaches the adapter.
    reply = cluster.api.get("/apis/external.metrics.k8s.io/v1beta1")
    assert reply.ok, reply.body
    assert reply.json()["groupVersion"] == "external.metrics.k8s.io/v1beta1"


def test_a_second_start_reuses_the_running_cluster(cluster: Cluster) -> None:
    again = LocalCluster(cluster.local.state_dir, hpa_sync_period=99).start(timeout=10)
    assert again.pids == cluster.state.pids
    assert again.ports == cluster.state.ports
    assert again.hpa_sync_period == cluster.state.hpa_sync_period


def test_status_reports_kubeconfig_versions_ports_pids_and_health(cluster: Cluster) -> None:
    result = _cli(cluster, "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["running"] is True
    assert status["healthy"] is True
    assert status["kubeconfig"] == cluster.state.kubeconfig
    assert status["versions"]["kubernetes"] == KUBERNETES_VERSION
    assert status["versions"]["keda"] == KEDA_VERSION
    assert status["health"]["server_version"] == f"v{KUBERNETES_VERSION}"
    assert status["pids"] == cluster.state.pids
    assert status["ports"]["kube-apiserver"] == cluster.state.ports["kube-apiserver"]


def test_cli_start_reuses_and_stop_of_another_dir_touches_nothing(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    started = _cli(cluster, "start", "--json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["reused"] is True
    # A stop from a checkout with no cluster of its own stops nothing, ours included.
    elsewhere = subprocess.run(
        [sys.executable, "-m", "expediter.cli", "dev", "cluster", "stop", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "EXPEDITER_DEV_DIR": str(tmp_path_factory.mktemp("other"))},
        timeout=60,
        check=False,
    )
    assert json.loads(elsewhere.stdout) == {"stopped": False}
    assert cluster.local.status() is not None
    assert cluster.api.ready()


def test_a_start_after_a_crash_replaces_the_survivors(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A second cluster beside the session's: ports and processes of its own.
    second = LocalCluster(tmp_path_factory.mktemp("crash") / "cluster", hpa_sync_period=2)
    first = second.start()
    try:
        assert first.ports["kube-apiserver"] != cluster.state.ports["kube-apiserver"]
        os.kill(first.pids["keda-adapter"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while second.status() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert second.status() is None  # half a cluster is not a running one
        again = second.start()
        assert set(again.pids.values()).isdisjoint(first.pids.values())
        assert not any(
            Path(f"/proc/{pid}").exists() and _alive(pid) for pid in first.pids.values()
        ), "the survivors of the crashed cluster were left running"
        assert second.api(again).apiservice_available(EXTERNAL_METRICS_APISERVICE)
        assert cluster.api.ready()  # the session's cluster never noticed
    finally:
        assert second.stop() is True
    assert second.stop() is False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"
