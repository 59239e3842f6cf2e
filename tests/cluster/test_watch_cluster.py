"""``expediter watch --kubeconfig`` against the local cluster, run as a user runs it.

The project's action agent as the local overlay deploys it (its Kafka client ConfigMap, its
Deployment and its ScaledObject, in a namespace of this test's own, on topics under a prefix of
its own) is applied to the real API server; real lag makes KEDA and the real HPA scale it. The
watch must then show KEDA's metric as the external metrics API serves it to the HPA, the
Deployment's ``spec.replicas`` as desired, and its ``status.replicas`` (and ready replicas) as
actual: each compared with what the API server answers directly, with lag and after it. No node
runs these pods (a nodeSelector no node matches), so they stay Pending: actual is the pods that
exist, none of them ready.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from expediter.dev import Broker
from expediter.messaging import client_options, connected
from tests.cluster.conforming import NO_NODE, ROOT, Kafka, Setup
from tests.cluster.conftest import Cluster
from tests.polling import until

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PARTITIONS = 4
RECORDS = 20  # 5 a partition; keda/action.yaml's lagThreshold is 8: metric 20, 3 replicas


def _objects(namespace: str, prefix: str, bootstrap: str) -> list[dict[str, Any]]:
    """The local overlay's action agent (kustomize k8s/overlays/local, as the README deploys
    it): its Kafka client ConfigMap pointed at the test broker, its Deployment, its ScaledObject
    on prefixed topics. KEDA reads the broker address from the Deployment's env, as deployed."""
    rendered = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / "local")],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
    wanted = {("ConfigMap", "expediter-kafka-client"), ("Deployment", "action"),
              ("ScaledObject", "action")}  # fmt: skip
    objects = [d for d in yaml.safe_load_all(rendered)
               if d and (d["kind"], d["metadata"]["name"]) in wanted]  # fmt: skip
    for obj in objects:
        obj["metadata"]["namespace"] = namespace
        if obj["kind"] == "ConfigMap":
            obj["data"]["EXPEDITER_BOOTSTRAP"] = bootstrap
        elif obj["kind"] == "Deployment":
            obj["spec"]["template"]["spec"]["nodeSelector"] = NO_NODE
        else:
            # Quicker than the manifest's 15 s and 300 s.
            obj["spec"].update(pollingInterval=1, cooldownPeriod=5)
            # The lag trigger alone: the test makes the task topic, not the retry tiers.
            del obj["spec"]["triggers"][1:]
            metadata = obj["spec"]["triggers"][0]["metadata"]
            metadata.update(topic=f"{prefix}{metadata['topic']}",
                            consumerGroup=f"{prefix}{metadata['consumerGroup']}")  # fmt: skip
    assert len(objects) == len(wanted)
    namespace_object = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    return [namespace_object, *objects]


def _watch(cluster: Cluster, kafka: Broker, namespace: str, prefix: str, *json_: str) -> str:
    env = {**os.environ, "EXPEDITER_BOOTSTRAP": kafka.bootstrap, "EXPEDITER_TOPIC_PREFIX": prefix,
           "COLUMNS": "220"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "expediter.cli", "watch", "--kubeconfig", str(cluster.kubeconfig),
         "--namespace", namespace, "--agents", "action", "--once", "--interval", "0.5", *json_],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def _direct(cluster: Cluster, namespace: str, metric: str) -> tuple[float, dict[str, Any]]:
    """KEDA's metric and the Deployment, straight from the API server."""
    reply = cluster.api.get(
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}"
        "?labelSelector=scaledobject.keda.sh%2Fname%3Daction"
    )
    assert reply.ok, reply.body
    deployment = cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/action")
    return float(reply.json()["items"][0]["value"]), deployment.json()


async def test_watch_shows_kedas_metric_and_the_real_desired_and_actual_replicas(
    cluster: Cluster, kafka: Broker
) -> None:
    suffix = uuid.uuid4().hex[:6]
    prefix, namespace = f"watch{suffix}.", f"watch-{suffix}"
    setup = Setup(cluster, Kafka(kafka.settings), "action", namespace, f"{prefix}tasks.action",
                  f"{prefix}agents.action")  # fmt: skip
    async with connected(AIOKafkaAdminClient(**client_options(kafka.settings)),
                         kafka.settings) as admin:  # fmt: skip
        await admin.create_topics([NewTopic(setup.topic, PARTITIONS, 1)])
    listed = {"apiVersion": "v1", "kind": "List",
              "items": _objects(namespace, prefix, kafka.bootstrap)}  # fmt: skip
    await asyncio.to_thread(
        cluster.kubectl, "apply", "--server-side", "-f", "-", stdin=json.dumps(listed)
    )
    await setup.produce({p: RECORDS // PARTITIONS for p in range(PARTITIONS)})
    hpa_path = (
        f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/keda-hpa-action"
    )

    def scaled_to(count: int) -> bool:
        hpa = cluster.api.get(hpa_path)
        deployment = cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/action")
        return (hpa.ok and deployment.ok
                and deployment.json()["spec"].get("replicas", 0) == count
                and deployment.json().get("status", {}).get("replicas", 0) == count
                and hpa.json().get("status", {}).get("desiredReplicas") == count)  # fmt: skip

    await until(
        "KEDA and the HPA scaling action to 3", lambda: asyncio.to_thread(scaled_to, 3), poll=0.5
    )
    metric = cluster.api.get(hpa_path).json()["spec"]["metrics"][0]["external"]["metric"]["name"]

    row = json.loads(await asyncio.to_thread(_watch, cluster, kafka, namespace, prefix, "--json"))
    [capability] = row["capabilities"]
    keda, deployment = await asyncio.to_thread(_direct, cluster, namespace, metric)
    status = deployment.get("status", {})
    print(json.dumps(capability, indent=1))
    assert capability["keda_metric"] == keda == RECORDS  # KEDA's own, as its HPA reads it
    assert capability["metric"] == RECORDS  # the watch's engine on the same offsets agrees
    assert capability["desired"] == deployment["spec"]["replicas"] == 3
    actual = capability["actual"]
    assert actual["source"] == "kubernetes"
    assert actual["replicas"] == status.get("replicas", 0) == 3  # the pods exist...
    assert actual["ready_replicas"] == status.get("readyReplicas", 0) == 0  # ...Pending
    assert (actual["hpa_desired"], actual["active"], actual["metric"]) == (3, True, RECORDS)
    assert actual["metric_error"] is None

    table = await asyncio.to_thread(_watch, cluster, kafka, namespace, prefix)
    print(table)
    assert "3 (0 ready)" in table
    assert "metric: KEDA's, from the external metrics API" in table
    assert "actual replicas from: kubernetes" in table

    # The group catches up: lag 0, and after cooldownPeriod (5 s) KEDA takes it to 0.
    await setup.commit({p: RECORDS // PARTITIONS for p in range(PARTITIONS)})

    def idle() -> bool:
        reply = cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/action")
        d = reply.json()
        return reply.ok and d["spec"].get("replicas") == 0 and not d["status"].get("replicas")

    await until("KEDA scaling action to 0", lambda: asyncio.to_thread(idle), poll=0.5)
    row = json.loads(await asyncio.to_thread(_watch, cluster, kafka, namespace, prefix, "--json"))
    [capability] = row["capabilities"]
    keda, deployment = await asyncio.to_thread(_direct, cluster, namespace, metric)
    assert capability["keda_metric"] == keda == 0
    assert capability["desired"] == deployment["spec"]["replicas"] == 0
    assert capability["actual"]["replicas"] == 0
    assert capability["actual"]["active"] is False
