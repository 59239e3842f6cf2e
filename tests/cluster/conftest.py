"""The ``cluster`` fixture: a real Kubernetes control plane and a real KEDA for the session.

The ``node`` fixture adds the local node (``expediter-node``) to it for one test module: the
pods bound to it run as local processes, and none is left when the module ends. The
``operator`` fixture runs the operator against it for one test module (a module whose operator
needs more, the local node or topics, defines its own).

Started from the cached build (``expediter dev cluster build``). Without one, a cluster test
fails in CI (``CI=true``) and is skipped elsewhere, with a message naming the command that
builds it. A cluster that is built but cannot start is an error, never a skip: the error
carries the log of the process that failed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from expediter.dev.cluster import (
    ApiServer,
    ClusterNotBuiltError,
    ClusterState,
    LocalCluster,
    built_bin,
    kubectl,
)

if TYPE_CHECKING:
    from expediter.dev import Broker
    from tests.cluster.operators import OperatorProcess

ROOT = Path(__file__).resolve().parents[2]
HPA_SYNC_SECONDS = 2.0
"""The HPA controller's sync period in tests: Kubernetes' 15 s default would slow every
scaling assertion by up to 15 s."""


@dataclass(frozen=True)
class Cluster:
    """A running local cluster, as the tests see it."""

    local: LocalCluster
    state: ClusterState
    api: ApiServer
    dev_dir: Path
    """``EXPEDITER_DEV_DIR`` under which ``expediter dev cluster`` finds this cluster."""

    @property
    def kubeconfig(self) -> Path:
        return Path(self.state.kubeconfig)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return kubectl(self.kubeconfig, *args, stdin=stdin)


def require_built_cluster() -> None:
    try:
        built_bin()
    except ClusterNotBuiltError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the local cluster: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_built_cluster()
    dev_dir = tmp_path_factory.mktemp("dev")
    local = LocalCluster(dev_dir / "cluster", hpa_sync_period=HPA_SYNC_SECONDS)
    try:
        state = local.start()
        yield Cluster(local=local, state=state, api=local.api(state), dev_dir=dev_dir)
    finally:
        local.stop()


@pytest.fixture(scope="module")
def operator(
    cluster: Cluster, kafka: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """``expediter operator`` running against the session's cluster, for one test module."""
    # Imported here, not at the top: tests.cluster.operators imports this conftest.
    from tests.cluster.operators import running_operator

    with running_operator(cluster, kafka, tmp_path_factory.mktemp("operator")) as running:
        yield running


@pytest.fixture(scope="module")
def node(cluster: Cluster) -> Iterator[Cluster]:
    """The session's cluster with its local node running, for one test module."""
    cluster.local.start_node(root=ROOT)
    try:
        yield cluster
    finally:
        cluster.local.stop_node()
