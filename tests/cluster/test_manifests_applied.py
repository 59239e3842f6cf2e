"""The project's manifests, applied to a real API server with KEDA's real CRDs.

``k8s/overlays/local`` is applied for real (server-side, as kubectl would in a deploy), and
``keda/`` on its own is validated by the server (``--dry-run=server``): both go through the API
server's schemas, KEDA's CRD schemas and admission. The KafkaTopics are the exception: they
are Strimzi's kind, whose CRD this cluster does not have (Strimzi is the Kafka operator of a
real deployment; its CRDs come with it), so they are left out and counted.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.conftest import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NEEDS_STRIMZI = "KafkaTopic"


def _rendered(folder: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _as_list(objects: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


def test_the_local_overlay_is_accepted_and_keda_takes_its_scaled_objects(
    cluster: Cluster,
) -> None:
    objects = _rendered(ROOT / "k8s" / "overlays" / "local")
    applied = [obj for obj in objects if obj["kind"] != NEEDS_STRIMZI]
    assert len(applied) < len(objects), "the overlay renders KafkaTopics: they are left out"
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=tests", "-f", "-", stdin=_as_list(applied)
    )
    # Everything sent is stored, under the same kind, namespace and name.
    got = json.loads(cluster.kubectl("get", "-o", "json", "-f", "-", stdin=_as_list(applied)))
    assert sorted(map(_key, got["items"])) == sorted(map(_key, applied))

    # KEDA's operator reconciles each ScaledObject into an HPA of its own: it accepted them.
    scaled = [obj["metadata"]["name"] for obj in applied if obj["kind"] == "ScaledObject"]
    assert scaled
    namespace = next(
        obj["metadata"]["namespace"] for obj in applied if obj["kind"] == "ScaledObject"
    )
    wanted = {f"keda-hpa-{name}" for name in scaled}
    deadline = time.monotonic() + 60
    while True:
        hpas = json.loads(cluster.kubectl("get", "hpa", "-n", namespace, "-o", "json"))["items"]
        have = {hpa["metadata"]["name"] for hpa in hpas}
        if wanted <= have or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert wanted <= have, f"KEDA made no HPA for {sorted(wanted - have)}"


def test_the_keda_folder_passes_the_servers_validation(cluster: Cluster) -> None:
    objects = _rendered(ROOT / "keda")
    assert {obj["kind"] for obj in objects} == {"ScaledObject", "TriggerAuthentication"}
    namespaces = {obj["metadata"]["namespace"] for obj in objects}
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=tests", "-f", "-",
        stdin=_as_list([
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            for name in namespaces
        ]),
    )  # fmt: skip
    out = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "--field-manager=tests-keda",
        "--force-conflicts", "-f", "-", stdin=_as_list(objects),
    )  # fmt: skip
    assert out.count("(server dry run)") == len(objects), out
