"""A real Kubernetes control plane and a real KEDA on this machine, without Docker.

Built once from Go module sources into the cache (:mod:`.building`, versions in
:mod:`.versions`), then run as local processes on loopback (:mod:`.running`), with certificates
from openssl (:mod:`.certificates`) and KEDA's CRDs and metrics APIService installed
(:mod:`.installing`), each process with the flags in :mod:`.flags`. Called by
``expediter dev cluster`` and the tests' cluster fixture.
"""

from expediter.dev.cluster.building import build_cluster, built_bin, find_go
from expediter.dev.cluster.errors import ClusterError, ClusterNotBuiltError
from expediter.dev.cluster.installing import EXTERNAL_METRICS_APISERVICE, KEDA_NAMESPACE, kubectl
from expediter.dev.cluster.requesting import ApiServer
from expediter.dev.cluster.running import ClusterState, LocalCluster
from expediter.dev.cluster.versions import (
    ETCD_VERSION,
    KEDA_VERSION,
    KUBERNETES_VERSION,
    cluster_home,
)

__all__ = [
    "ETCD_VERSION",
    "EXTERNAL_METRICS_APISERVICE",
    "KEDA_NAMESPACE",
    "KEDA_VERSION",
    "KUBERNETES_VERSION",
    "ApiServer",
    "ClusterError",
    "ClusterNotBuiltError",
    "ClusterState",
    "LocalCluster",
    "build_cluster",
    "built_bin",
    "cluster_home",
    "find_go",
    "kubectl",
]
