"""A real Kubernetes control plane and a real KEDA on this machine, without Docker.

Built once from Go module sources into the cache (:mod:`.building`, versions in
:mod:`.versions`), then run as local processes on loopback (:mod:`.running`), with certificates
from openssl (:mod:`.certificates`) and KEDA's CRDs and metrics APIService installed
(:mod:`.installing`), each process with the flags in :mod:`.flags`. The local node
(:mod:`.kubelet`, started by :mod:`.localnode`) does a kubelet's part: it registers Nodes
(:mod:`.nodes`) and runs the pods bound to them as local processes (:mod:`.podrunning`,
:mod:`.containerrunning`, :mod:`.launching`, :mod:`.probing`, :mod:`.podstatus`). Called by
``expediter dev cluster`` and the tests' cluster fixture.
"""

from expediter.dev.cluster.building import build_cluster, built_bin, find_go
from expediter.dev.cluster.errors import ClusterError, ClusterNotBuiltError
from expediter.dev.cluster.installing import EXTERNAL_METRICS_APISERVICE, KEDA_NAMESPACE, kubectl
from expediter.dev.cluster.localnode import NODE_PROCESS
from expediter.dev.cluster.nodes import GPU_LABEL, GPU_RESOURCE, GPU_TAINT, cpu_node, gpu_node
from expediter.dev.cluster.podrunning import PORTS_ANNOTATION
from expediter.dev.cluster.processes import pod_processes
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
    "GPU_LABEL",
    "GPU_RESOURCE",
    "GPU_TAINT",
    "KEDA_NAMESPACE",
    "KEDA_VERSION",
    "KUBERNETES_VERSION",
    "NODE_PROCESS",
    "PORTS_ANNOTATION",
    "ApiServer",
    "ClusterError",
    "ClusterNotBuiltError",
    "ClusterState",
    "LocalCluster",
    "build_cluster",
    "built_bin",
    "cluster_home",
    "cpu_node",
    "find_go",
    "gpu_node",
    "kubectl",
    "pod_processes",
]
