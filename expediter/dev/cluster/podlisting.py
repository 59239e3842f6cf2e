"""What runs on the dev cluster: its Nodes, and each pod's phase, restarts and why it waits.

:func:`cluster_pods` reads the Nodes and pods from the API server (as the admin) into plain
dicts; a pod the scheduler cannot place carries the scheduler's own words (``PodScheduled``
False, reason ``Unschedulable``, e.g. ``0/1 nodes are available: 1 node(s) didn't match Pod's
node affinity/selector``) and a container that waits its reason (``CrashLoopBackOff``...).
:func:`pod_lines` writes them for people. Called by ``expediter dev cluster status`` and the
cluster demo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from expediter.dev.cluster.requesting import ApiServer

__all__ = ["cluster_pods", "describe_pod", "pod_lines"]


def describe_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """One pod as ``status`` shows it: where, phase, ready, restarts, and why it waits."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    described: dict[str, Any] = {
        "namespace": meta.get("namespace"),
        "name": meta["name"],
        "node": spec.get("nodeName"),
        "phase": "Terminating" if meta.get("deletionTimestamp") else status.get("phase"),
        "ready": bool(containers) and all(c.get("ready") for c in containers),
        "restarts": sum(int(c.get("restartCount") or 0) for c in containers),
    }
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            described["reason"] = condition.get("reason")
            described["message"] = condition.get("message")
    for container in containers:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating"):
            described["reason"] = waiting.get("reason")
            described["message"] = waiting.get("message")
    return described


def cluster_pods(api: ApiServer, namespace: str | None = None) -> dict[str, Any]:
    """``{"nodes": [...], "pods": [...]}`` (every namespace but the cluster's own, or one)."""
    nodes: list[dict[str, Any]] = []
    reply = api.get("/api/v1/nodes")
    for node in reply.json().get("items", []) if reply.ok else []:
        conditions = (node.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        capacity = (node.get("status") or {}).get("capacity") or {}
        nodes.append({"name": node["metadata"]["name"], "ready": ready, "capacity": capacity})
    path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
    reply = api.get(path)
    pods = [
        describe_pod(pod)
        for pod in (reply.json().get("items", []) if reply.ok else [])
        if pod["metadata"].get("namespace") not in ("kube-system", "keda")
    ]
    for node in nodes:
        node["pods"] = sum(1 for p in pods if p["node"] == node["name"])
    return {"nodes": nodes, "pods": pods}


def pod_lines(listing: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{"nodes": [...], "pods": [...]}`` as lines of text."""
    nodes = [
        f"{n['name']}: {'Ready' if n['ready'] else 'NotReady'}, {n['pods']} pods"
        + (
            f", nvidia.com/gpu {n['capacity']['nvidia.com/gpu']}"
            if "nvidia.com/gpu" in n["capacity"]
            else ""
        )
        for n in listing["nodes"]
    ]
    pods = []
    for p in listing["pods"]:
        line = (
            f"{p['namespace']}/{p['name']}: {p['phase']}"
            f"{' ready' if p['ready'] else ''} on {p['node'] or '(no node)'}, "
            f"{p['restarts']} restarts"
        )
        if p.get("reason"):
            line += f"; {p['reason']}: {p.get('message') or ''}"
        pods.append(line)
    return {"nodes": nodes, "pods": pods}
