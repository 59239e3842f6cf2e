"""Helpers the local node's tests share: a namespace each, objects applied, pods read back
(waiting is :mod:`tests.polling`)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.cluster.conftest import Cluster


def new_namespace(cluster: Cluster, stem: str) -> str:
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    apply(cluster, [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    return name


def apply(cluster: Cluster, objects: list[dict[str, Any]]) -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": objects}
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=tests",
                    "-f", "-", stdin=json.dumps(listed))  # fmt: skip


def get(cluster: Cluster, path: str) -> dict[str, Any] | None:
    reply = cluster.api.get(path)
    if reply.status == 404:
        return None
    assert reply.ok, reply.body
    found: dict[str, Any] = reply.json()
    return found


def pod(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    return get(cluster, f"/api/v1/namespaces/{namespace}/pods/{name}")


def pods(cluster: Cluster, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    query = f"?labelSelector={selector}" if selector else ""
    listed = get(cluster, f"/api/v1/namespaces/{namespace}/pods{query}") or {}
    items: list[dict[str, Any]] = listed.get("items", [])
    return items


def container(pod_: dict[str, Any], index: int = 0) -> dict[str, Any]:
    statuses: list[dict[str, Any]] = (pod_.get("status") or {}).get("containerStatuses") or []
    return statuses[index] if len(statuses) > index else {}


def ready(pod_: dict[str, Any] | None) -> bool:
    conditions = ((pod_ or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def log_of(cluster: Cluster, pod_: dict[str, Any], container_name: str, restart: int = 0) -> str:
    """A container's output, from the node's log directory (there is no `kubectl logs`)."""
    meta = pod_["metadata"]
    folder = f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
    path = cluster.local.node_dir / "logs" / folder / container_name / f"{restart}.log"
    return path.read_text() if path.exists() else ""


def pid_of(pod_: dict[str, Any], index: int = 0) -> int:
    """The container's process (its containerID is ``local://<pid>``)."""
    return int(str(container(pod_, index)["containerID"]).removeprefix("local://"))
