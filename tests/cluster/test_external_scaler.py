"""The real KEDA scales a Deployment on pending tokens through ``expediter scaler``.

A ScaledObject with an ``external`` trigger points KEDA's operator (a local process) at
``expediter scaler`` on loopback, which KEDA calls over gRPC (externalscaler.proto) as it would
on a cluster. The tasks carry the producer's ``expediter-expected-tokens`` header. First many
tiny tasks: hundreds of records, which lag would count as many replicas' worth, but little work,
so one replica. Then a few huge tasks: a handful of records, and the replicas follow the tokens.
``spec.replicas`` (KEDA 0 -> 1, then the real HPA) is the observable, as in test_scaling.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from expediter.dev import Broker
from expediter.events import to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.scaling.estimating import EXPECTED_TOKENS_HEADER
from tests.cluster.conftest import Cluster
from tests.support import create_topics, spawn, task, terminate

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TARGET_DRAIN_SECONDS = 10
TOKENS_PER_SECOND = 100
"""One replica works off 1,000 tokens within the target: the HPA's unit."""


def _objects(namespace: str, address: str) -> list[dict[str, Any]]:
    labels = {"app": "planner"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "planner", "namespace": namespace},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "planner", "image": "expediter:dev"}]},
                },
            },
        },
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "planner", "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"name": "planner"},
                "minReplicaCount": 0,
                "maxReplicaCount": 20,
                "pollingInterval": 1,
                "cooldownPeriod": 300,
                "triggers": [
                    {
                        "type": "external",
                        "metadata": {
                            "scalerAddress": address,
                            "capability": "probe",
                            "targetDrainSeconds": str(TARGET_DRAIN_SECONDS),
                            "tokensPerSecond": str(TOKENS_PER_SECOND),
                        },
                    }
                ],
            },
        },
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _produce(kafka: Broker, topic: str, costs: list[int]) -> None:
    async with connected(AIOKafkaProducer(**client_options(kafka.settings)), kafka.settings) as p:
        for n, tokens in enumerate(costs):
            record = to_record(task(n, f"wf-{n % 8}"))
            headers = [*record.headers, (EXPECTED_TOKENS_HEADER, str(tokens).encode())]
            await p.send(topic, record.value, key=record.key, headers=headers)
        await p.flush()


def _replicas(cluster: Cluster, namespace: str) -> int:
    deployment = json.loads(cluster.kubectl("get", "deploy/planner", "-n", namespace, "-o", "json"))
    return int(deployment["spec"].get("replicas", 0))


async def _watch(cluster: Cluster, namespace: str, seconds: float, until: int | None) -> list[int]:
    seen: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        replicas = await asyncio.to_thread(_replicas, cluster, namespace)
        if not seen or seen[-1] != replicas:
            seen.append(replicas)
        if until is not None and replicas >= until:
            break
        await asyncio.sleep(0.5)
    return seen


async def test_keda_scales_on_pending_tokens_through_the_external_scaler(
    cluster: Cluster, kafka: Broker, tmp_path: Path
) -> None:
    names = TopicNames(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe", partitions=4)
    address = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "EXPEDITER_BOOTSTRAP": kafka.bootstrap,
           "EXPEDITER_TOPIC_PREFIX": names.prefix}  # fmt: skip
    log = tmp_path / "scaler.log"
    scaler = spawn(["scaler", "--address", address], env, log)
    try:
        namespace = f"work-{uuid.uuid4().hex[:8]}"
        listed = {"apiVersion": "v1", "kind": "List", "items": _objects(namespace, address)}
        await asyncio.to_thread(
            cluster.kubectl, "apply", "--server-side", "-f", "-", stdin=json.dumps(listed)
        )
        # No work yet: KEDA asks IsActive every second and keeps the Deployment at zero.
        assert await _watch(cluster, namespace, 4, None) == [0], log.read_text()

        # 200 tiny tasks, 900 tokens: lag 200 (20 replicas at lagThreshold 10), one replica's work.
        await _produce(kafka, names.tasks("probe"), [5] * 180 + [0] * 20)
        seen = await _watch(cluster, namespace, 20, None)
        # KEDA may activate (0 -> 1) before the first look: what matters is one and no more.
        assert seen in ([0, 1], [1]), f"spec.replicas went {seen}\n{log.read_text()}"

        # 4 huge tasks: 8,000 more tokens, 8,900 pending: ceil(89 s / 10 s) = 9 replicas.
        await _produce(kafka, names.tasks("probe"), [2000] * 4)
        seen = await _watch(cluster, namespace, 90, 9)
        assert seen[-1] == 9, f"spec.replicas went {seen}\n{log.read_text()}"
        await asyncio.sleep(6)  # three HPA syncs: no more than the work asks for
        assert await asyncio.to_thread(_replicas, cluster, namespace) == 9
    finally:
        assert terminate(scaler) == 0, log.read_text()  # SIGTERM: a clean stop
