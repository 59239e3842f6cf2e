"""The command line of each process of the local cluster: the flags CLUSTER.md measured.

Everything listens on loopback. The notable choices, each explained where it is made: the
service range inside 127/8, aggregator routing off, the ServiceAccount admission plugin off
(no token controller), only the three controllers scaling needs, and KEDA told to leave the
certificates and APIService that :mod:`~expediter.dev.cluster.installing` made alone. Called by
:mod:`~expediter.dev.cluster.running`.
"""

from __future__ import annotations

from pathlib import Path

from expediter.dev.cluster.installing import KEDA_NAMESPACE

__all__ = [
    "ADAPTER_IP",
    "KUBERNETES_SERVICE_IP",
    "SERVICE_RANGE",
    "apiserver_flags",
    "controller_manager_flags",
    "etcd_flags",
    "keda_adapter_flags",
    "keda_env",
    "keda_operator_flags",
    "scheduler_flags",
]

SERVICE_RANGE = "127.100.0.0/16"
"""Service IPs inside loopback, so that the aggregator can dial the adapter's clusterIP."""
KUBERNETES_SERVICE_IP = "127.100.0.1"
"""The first IP of the range: the ``kubernetes`` Service's, in the API server's certificate."""
ADAPTER_IP = "127.100.0.50"
"""The adapter's fixed clusterIP, which it binds to (Linux routes all of 127/8 to lo)."""

Ports = dict[str, int]


def etcd_flags(data_dir: Path, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports['etcd']}"
    peer = f"http://127.0.0.1:{ports['etcd-peer']}"
    return [
        "--name=expediter",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=expediter={peer}",
        # A throwaway cluster: fsync on a loaded disk is where etcd's latency would go.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_flags(pki: Path, ports: Ports) -> list[str]:
    return [
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={ports['kube-apiserver']}",
        f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        # No token controller runs, so pods could never get their service-account token.
        "--disable-admission-plugins=ServiceAccount",
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        f"--service-cluster-ip-range={SERVICE_RANGE}",
        # The aggregator then dials the adapter's clusterIP, not an endpoint address.
        "--enable-aggregator-routing=false",
        "--endpoint-reconciler-type=none",
        f"--cert-dir={pki / 'apiserver-generated'}",
    ]


def controller_manager_flags(kubeconfig: Path, hpa_sync_period: float) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        # What scaling needs; no kubelet runs, so the node and pod controllers have no work.
        # The garbage collector deletes what an owner reference ties to a deleted owner (an
        # Agent's Deployment, a Deployment's ReplicaSets and pods).
        "--controllers=deployment-controller,replicaset-controller,"
        "horizontal-pod-autoscaler-controller,garbage-collector-controller",
        "--leader-elect=false",
        "--secure-port=0",
        f"--horizontal-pod-autoscaler-sync-period={hpa_sync_period:g}s",
    ]


def scheduler_flags(kubeconfig: Path) -> list[str]:
    return [f"--kubeconfig={kubeconfig}", "--leader-elect=false", "--secure-port=0"]


def keda_env(kubeconfig: Path) -> dict[str, str]:
    """KEDA out of a cluster: every namespace watched, its own objects in ``keda``."""
    return {
        "WATCH_NAMESPACE": "",
        "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
        "POD_NAMESPACE": KEDA_NAMESPACE,
        "KUBECONFIG": str(kubeconfig),
    }


def keda_operator_flags(pki: Path, ports: Ports) -> list[str]:
    certs = pki / "keda"
    return [
        f"--metrics-bind-address=127.0.0.1:{ports['keda-operator-metrics']}",
        f"--health-probe-bind-address=127.0.0.1:{ports['keda-operator-probe']}",
        f"--metrics-service-bind-address=127.0.0.1:{ports['keda-operator-grpc']}",
        f"--cert-dir={certs}",
        f"--ca-dir={certs}",
        "--enable-cert-rotation=false",
        # Our certificates and APIService are made by us; KEDA must leave them be.
        "--enable-webhook-patching=false",
        "--enable-apiservice-patching=false",
        "--leader-elect=false",
    ]


def keda_adapter_flags(pki: Path, kubeconfig: Path, ports: Ports) -> list[str]:
    certs = pki / "keda"
    return [
        f"--secure-port={ports['keda-adapter']}",
        f"--bind-address={ADAPTER_IP}",
        f"--tls-cert-file={certs / 'tls.crt'}",
        f"--tls-private-key-file={certs / 'tls.key'}",
        f"--lister-kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--metrics-service-address=127.0.0.1:{ports['keda-operator-grpc']}",
        # Where the adapter finds ca.crt, tls.crt and tls.key for its gRPC client.
        f"--cert-dir={certs}",
        f"--port={ports['keda-adapter-metrics']}",
    ]
