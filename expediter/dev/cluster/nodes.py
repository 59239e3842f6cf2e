"""The Nodes the local node presents, and their heartbeats: the Node object, its status, its Lease.

A :class:`NodeSpec` says what one Node declares: its name, capacity (cpu, memory, pods and, for a
GPU node, ``nvidia.com/gpu``), labels and taints. The GPU node carries what the ``gpu`` overlay
(k8s/overlays/gpu, rendered by :mod:`expediter.deploying.overlays`) asks of a node: the label
``nvidia.com/gpu.present=true`` for its nodeSelector, the ``nvidia.com/gpu`` resource for its
limit, and the ``nvidia.com/gpu:NoSchedule`` taint that only its toleration passes, so that the
real kube-scheduler places GPU pods there and nothing else.

Capacity is declared, not measured: the defaults (16 cpu, 64Gi) let the fleet's requests fit
on a small machine whose workers mostly wait on Kafka. Everything here is pure (dicts in the
API server's shape); :mod:`~expediter.dev.cluster.kubelet` sends them.
"""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from expediter.dev.cluster.versions import KUBERNETES_VERSION

__all__ = [
    "GPU_LABEL",
    "GPU_RESOURCE",
    "GPU_TAINT",
    "LEASE_NAMESPACE",
    "LEASE_SECONDS",
    "NODE_IP",
    "NodeSpec",
    "cpu_node",
    "gpu_node",
    "lease_object",
    "micro_time",
    "node_object",
    "node_status",
    "rfc3339",
]

GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABEL = "nvidia.com/gpu.present"
GPU_TAINT: Mapping[str, str] = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
"""The kubelet's default lease duration; it renews every quarter of it."""
NODE_IP = "127.0.0.1"
"""The node's and every pod's address: the pods are processes on loopback."""
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True)
class NodeSpec:
    """What one Node declares to the scheduler."""

    name: str
    cpu: str = "16"
    memory: str = "64Gi"
    pods: int = 110
    gpus: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Mapping[str, str], ...] = ()

    @property
    def capacity(self) -> dict[str, str]:
        capacity = {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": str(self.pods),
            "ephemeral-storage": "100Gi",
        }
        if self.gpus:
            capacity[GPU_RESOURCE] = str(self.gpus)
        return capacity

    @property
    def all_labels(self) -> dict[str, str]:
        arch = _ARCH.get(platform.machine(), platform.machine())
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch,
            "expediter.io/local-node": "true",
            **self.labels,
        }


def cpu_node(name: str = "expediter-node") -> NodeSpec:
    return NodeSpec(name=name)


def gpu_node(name: str = "expediter-gpu-node", gpus: int = 1) -> NodeSpec:
    """A node with ``gpus`` of ``nvidia.com/gpu``, labelled and tainted as GPU nodes are."""
    return NodeSpec(name=name, gpus=gpus, labels={GPU_LABEL: "true"}, taints=(GPU_TAINT,))


def rfc3339(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(at: dt.datetime) -> str:
    """A Lease's MicroTime."""
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_object(spec: NodeSpec) -> dict[str, Any]:
    """The Node to create (its status is sent apart, to the status subresource)."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": spec.all_labels,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"taints": [dict(t) for t in spec.taints]},
    }


def node_status(spec: NodeSpec, *, now: dt.datetime, since: dt.datetime) -> dict[str, Any]:
    """The Node's status: capacity, Ready with a heartbeat at ``now``, the pressures off."""

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": rfc3339(now),
            "lastTransitionTime": rfc3339(since),
        }

    capacity = spec.capacity
    if not spec.gpus:
        capacity[GPU_RESOURCE] = None  # type: ignore[assignment]  # merge patch: remove it
    return {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "the local node declares its memory",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "the local node declares its disk",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "the local node declares its PIDs",
            ),
            condition(
                "Ready",
                "True",
                "KubeletReady",
                "expediter's local node runs pods as processes on this machine",
            ),
        ],
        "addresses": [
            {"type": "InternalIP", "address": NODE_IP},
            {"type": "Hostname", "address": spec.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": platform.release(),
            "osImage": "expediter local node",
            "containerRuntimeVersion": "local://processes",
            "kubeletVersion": f"v{KUBERNETES_VERSION}",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": spec.all_labels["kubernetes.io/arch"],
        },
    }


def lease_object(name: str, *, now: dt.datetime, node_uid: str | None) -> dict[str, Any]:
    """The node's Lease in kube-node-lease, renewed at ``now`` (owned by its Node)."""
    metadata: dict[str, Any] = {"name": name, "namespace": LEASE_NAMESPACE}
    if node_uid:
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid}
        ]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_time(now),
        },
    }
