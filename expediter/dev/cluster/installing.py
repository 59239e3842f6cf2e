"""Installing KEDA into the local API server: its namespace, its CRDs, its metrics APIService.

The metrics adapter must be registered as the APIService ``v1beta1.external.metrics.k8s.io``,
but Endpoints and EndpointSlices refuse loopback addresses. What gets past it (CLUSTER.md):

- the adapter's Service has a fixed clusterIP inside the loopback service range, and the
  adapter binds there; with aggregator routing off, the aggregator dials the clusterIP itself;
- a hand-made ready EndpointSlice, with a TEST-NET address that is never dialed, lets the
  availability check pass;
- the APIService skips TLS verification (the adapter's certificate is our own anyway).

Everything goes through kubectl (server-side apply: some CRDs are too big for client-side).
Called by :mod:`~expediter.dev.cluster.running` during a start.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from expediter.dev.cluster.errors import ClusterError
from expediter.errors import ToolMissingError

__all__ = [
    "ADAPTER_SERVICE",
    "EXTERNAL_METRICS_APISERVICE",
    "KEDA_NAMESPACE",
    "apply_objects",
    "install_crds",
    "kubectl",
    "metrics_api_objects",
    "require_kubectl",
]

KEDA_NAMESPACE = "keda"
ADAPTER_SERVICE = "keda-metrics-apiserver"
EXTERNAL_METRICS_APISERVICE = "v1beta1.external.metrics.k8s.io"
_NEVER_DIALED = "192.0.2.1"  # TEST-NET-1 (RFC 5737): only there so the slice counts as ready.
_MANAGER = "expediter-dev-cluster"


def require_kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        raise ToolMissingError(
            "`kubectl` not found on PATH: install it (https://kubernetes.io/docs/tasks/tools/; "
            "any version from 1.32 works); the local cluster installs KEDA's CRDs with it"
        )
    return path


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    """Run kubectl against the local cluster; its stdout, or a ClusterError with its stderr."""
    command = [require_kubectl(), "--kubeconfig", str(kubeconfig), *args]
    result = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise ClusterError(
            f"`kubectl {' '.join(args)}` failed: {(result.stderr or result.stdout).strip()}"
        )
    return result.stdout


def apply_objects(kubeconfig: Path, objects: list[dict[str, Any]]) -> None:
    """Server-side apply a list of objects (as one JSON ``List``)."""
    listed = {"apiVersion": "v1", "kind": "List", "items": objects}
    kubectl(kubeconfig, "apply", "--server-side", f"--field-manager={_MANAGER}", "-f", "-",
            stdin=json.dumps(listed))  # fmt: skip


def install_crds(kubeconfig: Path, crds: Path) -> None:
    """KEDA's namespace and CRDs, and wait until the API server serves the CRDs."""
    if not any(crds.glob("*.yaml")):
        raise ClusterError(
            f"no KEDA CRDs in {crds}: the build is incomplete; run `expediter dev cluster build`"
        )
    apply_objects(
        kubeconfig,
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KEDA_NAMESPACE}}],
    )
    kubectl(kubeconfig, "apply", "--server-side", f"--field-manager={_MANAGER}", "-f", str(crds))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
            "-f", str(crds))  # fmt: skip


def metrics_api_objects(adapter_ip: str, adapter_port: int) -> list[dict[str, Any]]:
    """The Service, EndpointSlice and APIService that register KEDA's adapter (see above)."""
    port = {"name": "https", "port": adapter_port, "protocol": "TCP"}
    metadata = {"name": ADAPTER_SERVICE, "namespace": KEDA_NAMESPACE}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {
                "type": "ClusterIP",
                "clusterIP": adapter_ip,
                "ports": [{**port, "targetPort": adapter_port}],
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{ADAPTER_SERVICE}-local",
                "namespace": KEDA_NAMESPACE,
                "labels": {
                    "kubernetes.io/service-name": ADAPTER_SERVICE,
                    "endpointslice.kubernetes.io/managed-by": _MANAGER,
                },
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [_NEVER_DIALED], "conditions": {"ready": True}}],
            "ports": [port],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": EXTERNAL_METRICS_APISERVICE},
            "spec": {
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "service": {**metadata, "port": adapter_port},
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]
