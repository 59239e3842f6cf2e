"""keda/examples/ (the reasoning agent on lag and pending work, and expediter scaler's objects)
through the real API server's validation: KEDA's CRD schemas and admission for the
ScaledObject with its external trigger, Kubernetes' for the scaler's RBAC, Deployment, Service
and NetworkPolicy (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_the_work_examples_pass_the_servers_validation(cluster: Cluster) -> None:
    objects: list[dict[str, Any]] = [
        document
        for path in sorted((ROOT / "keda" / "examples").glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document
    ]
    kinds = {obj["kind"] for obj in objects}
    assert {"ScaledObject", "Deployment", "Service", "Role", "NetworkPolicy"} <= kinds
    (scaled,) = [obj for obj in objects if obj["kind"] == "ScaledObject"]
    assert "external" in {t["type"] for t in scaled["spec"]["triggers"]}
    namespaces = {obj["metadata"]["namespace"] for obj in objects}
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=tests", "-f", "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            for name in namespaces]}),
    )  # fmt: skip
    listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
    out = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "--field-manager=tests-work",
        "--force-conflicts", "-f", "-", stdin=listed,
    )  # fmt: skip
    assert out.count("(server dry run)") == len(objects), out
