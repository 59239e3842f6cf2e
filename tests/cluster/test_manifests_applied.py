"""The project's manifests, applied to a real API server with KEDA's real CRDs.

``k8s/overlays/local`` is applied for real (server-side, as kubectl would in a deploy), and
``keda/`` on its own is validated by the server (``--dry-run=server``): both go through the API
server's schemas, KEDA's CRD schemas and admission. The KafkaTopics are the exception: they
are Strimzi's kind, whose CRD this cluster does not have (Strimzi is the Kafka operator of a
real deployment; its CRDs come with it), so they are left out and counted.

KEDA reads the broker address from the Deployment's env and connects before it makes an HPA,
so the overlay's ConfigMap is pointed at the test broker: otherwise every ScaledObject stays
``Ready=False`` on ``expediter-kafka-bootstrap.kafka.svc``, a name only a real cluster resolves.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from expediter.dev import Broker
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


def _point_at(objects: list[dict[str, Any]], bootstrap: str) -> int:
    """Aim the overlay's Kafka client settings at the test broker; how many were changed."""
    changed = 0
    for obj in objects:
        if obj["kind"] == "ConfigMap" and "EXPEDITER_BOOTSTRAP" in obj.get("data", {}):
            obj["data"]["EXPEDITER_BOOTSTRAP"] = bootstrap
            changed += 1
    return changed


def _ready(scaled_object: dict[str, Any]) -> bool:
    conditions = scaled_object.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def test_the_local_overlay_is_accepted_and_keda_takes_its_scaled_objects(
    cluster: Cluster, kafka: Broker
) -> None:
    objects = _rendered(ROOT / "k8s" / "overlays" / "local")
    applied = [obj for obj in objects if obj["kind"] != NEEDS_STRIMZI]
    assert len(applied) < len(objects), "the overlay renders KafkaTopics: they are left out"
    # KEDA connects to the broker named by the Deployment's env (bootstrapServersFromEnv)
    # before it makes an HPA: the in-cluster name cannot resolve here, the test broker can.
    assert _point_at(applied, kafka.bootstrap) == 1
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=tests", "-f", "-", stdin=_as_list(applied)
    )
    # Everything sent is stored, under the same kind, namespace and name.
    got = json.loads(cluster.kubectl("get", "-o", "json", "-f", "-", stdin=_as_list(applied)))
    assert sorted(map(_key, got["items"])) == sorted(map(_key, applied))

    # KEDA's operator takes each ScaledObject (Ready) and makes it an HPA of its own.
    scaled = {obj["metadata"]["name"] for obj in applied if obj["kind"] == "ScaledObject"}
    assert scaled
    (namespace,) = {
        obj["metadata"]["namespace"] for obj in applied if obj["kind"] == "ScaledObject"
    }
    wanted = {f"keda-hpa-{name}" for name in scaled}
    deadline = time.monotonic() + 60
    while True:
        listed = json.loads(
            cluster.kubectl("get", "scaledobject,hpa", "-n", namespace, "-o", "json")
        )
        ready = {
            o["metadata"]["name"]
            for o in listed["items"]
            if o["kind"] == "ScaledObject" and _ready(o)
        }
        hpas = {
            o["metadata"]["name"] for o in listed["items"] if o["kind"] == "HorizontalPodAutoscaler"
        }
        if (ready == scaled and wanted <= hpas) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert ready == scaled, f"not Ready: {sorted(scaled - ready)}"
    assert wanted <= hpas, f"KEDA made no HPA for {sorted(wanted - hpas)}"


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
