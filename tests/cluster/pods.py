"""Helpers the local node's tests share: a namespace each, objects applied, pods waited for."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.cluster.conftest import Cluster

T = TypeVar("T")


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


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.2)


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


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
