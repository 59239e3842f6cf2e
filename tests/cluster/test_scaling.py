"""Real lag on a real topic drives a Deployment's replicas through the real KEDA and HPA.

No kubelet runs, so the pods stay Pending: ``spec.replicas``, which KEDA (0 -> 1, activation)
and the HPA (1 -> N) set, is what is observed. The ScaledObject is shaped like the project's
(``allowIdleConsumers: false``, ``maxReplicaCount`` above the partition count) and so also shows
KEDA's cap of the lag metric at partitions x lagThreshold: max 6 on 4 partitions is never reached.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from expediter.dev import Broker
from expediter.messaging import client_options, connected
from tests.cluster.conftest import HPA_SYNC_SECONDS, Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PARTITIONS = 4
LAG_THRESHOLD = 10
RECORDS = 100  # 25 a partition: far above the cap of PARTITIONS * LAG_THRESHOLD = 40


def _objects(namespace: str, bootstrap: str, topic: str) -> list[dict[str, Any]]:
    labels = {"app": "consumer"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "consumer", "namespace": namespace},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "consumer", "image": "expediter:dev"}]},
                },
            },
        },
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "consumer", "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"name": "consumer"},
                "minReplicaCount": 0,
                "maxReplicaCount": 6,
                "pollingInterval": 1,
                "cooldownPeriod": 300,
                "triggers": [
                    {
                        "type": "kafka",
                        "metadata": {
                            "bootstrapServers": bootstrap,
                            "consumerGroup": f"{topic}.group",
                            "topic": topic,
                            "lagThreshold": str(LAG_THRESHOLD),
                            "offsetResetPolicy": "earliest",
                            "allowIdleConsumers": "false",
                        },
                    }
                ],
            },
        },
    ]


async def _create_topic(kafka: Broker, topic: str) -> None:
    settings = kafka.settings
    admin = AIOKafkaAdminClient(**client_options(settings))
    async with connected(admin, settings):
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])


async def _make_lag(kafka: Broker, topic: str) -> None:
    settings = kafka.settings
    producer = AIOKafkaProducer(**client_options(settings))
    async with connected(producer, settings):
        for n in range(RECORDS):
            await producer.send(topic, f"task {n}".encode(), partition=n % PARTITIONS)
        await producer.flush()


def _replicas(cluster: Cluster, namespace: str) -> int:
    deployment = json.loads(
        cluster.kubectl("get", "deploy/consumer", "-n", namespace, "-o", "json")
    )
    return int(deployment["spec"].get("replicas", 0))


async def test_real_lag_scales_from_zero_up_to_the_partition_cap(
    cluster: Cluster, kafka: Broker, topic_name: str
) -> None:
    await _create_topic(kafka, topic_name)
    namespace = f"scale-{uuid.uuid4().hex[:8]}"
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": _objects(namespace, kafka.bootstrap, topic_name),
    }
    await asyncio.to_thread(
        cluster.kubectl, "apply", "--server-side", "-f", "-", stdin=json.dumps(listed)
    )
    # No lag yet: KEDA polls (every second) and keeps the Deployment at zero.
    for _ in range(3):
        await asyncio.sleep(1)
        assert await asyncio.to_thread(_replicas, cluster, namespace) == 0

    await _make_lag(kafka, topic_name)
    seen: list[int] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        replicas = await asyncio.to_thread(_replicas, cluster, namespace)
        if not seen or seen[-1] != replicas:
            seen.append(replicas)
        if replicas >= PARTITIONS:
            break
        await asyncio.sleep(0.5)
    assert seen[0] == 0, f"spec.replicas went {seen}"
    assert seen[-1] == PARTITIONS, f"spec.replicas went {seen}"

    # KEDA's metric, through the aggregated API as the HPA reads it: the lag capped.
    hpa = json.loads(
        await asyncio.to_thread(
            cluster.kubectl, "get", "hpa/keda-hpa-consumer", "-n", namespace, "-o", "json"
        )
    )
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]["name"]
    reply = await asyncio.to_thread(
        cluster.api.get,
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}"
        "?labelSelector=scaledobject.keda.sh%2Fname%3Dconsumer",
    )
    assert reply.ok, reply.body
    assert [item["value"] for item in reply.json()["items"]] == [str(PARTITIONS * LAG_THRESHOLD)]

    # Several HPA syncs later it has not gone past the cap toward maxReplicaCount 6.
    await asyncio.sleep(4 * HPA_SYNC_SECONDS)
    assert await asyncio.to_thread(_replicas, cluster, namespace) == PARTITIONS
