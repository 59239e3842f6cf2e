"""An Agent's ``spec.scaling.signal`` on the real API server, KEDA and HPA (issue 18).

``expediter operator`` runs as in test_operator.py, and ``expediter scaler`` on loopback as in
test_external_scaler.py (KEDA's operator is a local process, so it reaches it there). An Agent
with ``signal: work`` gets a ScaledObject whose one trigger is the external one; KEDA takes it
(Ready, an HPA on the external metric) and scales the Deployment on pending tokens, not on the
record count; an edit to ``signal: both`` adds the lag trigger, as the agent file's
``AgentScaling`` does. No node runs, so ``spec.replicas`` is the observable.
"""

from __future__ import annotations

import asyncio
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
from expediter.messaging import client_options, connected
from expediter.scaling.estimating import EXPECTED_TOKENS_HEADER
from tests.cluster.conftest import Cluster
from tests.cluster.operators import (
    OperatorProcess,
    agent,
    agent_namespace,
    condition,
    get,
    kubectl_apply,
    wait_for,
)
from tests.support import spawn, task, terminate

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PARTITIONS = 6
TARGET_DRAIN_SECONDS = 10
TOKENS_PER_SECOND = 100
"""One replica works off 1,000 tokens within the target."""


def _serving(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _agent(namespace: str, capability: str, scaling: dict[str, Any]) -> dict[str, Any]:
    return agent(
        namespace, "planner",
        capability=capability, agent="agents/soil_analyzer.py", image="expediter:dev",
        partitions=PARTITIONS, pollingInterval=1, scaling=scaling,
    )  # fmt: skip


async def _produce(kafka: Broker, topic: str, costs: list[int]) -> None:
    async with connected(AIOKafkaProducer(**client_options(kafka.settings)), kafka.settings) as p:
        for n, tokens in enumerate(costs):
            record = to_record(task(n, f"wf-{n % 8}"))
            headers = [*record.headers, (EXPECTED_TOKENS_HEADER, str(tokens).encode())]
            await p.send(topic, record.value, key=record.key, headers=headers)
        await p.flush()


def _replicas(cluster: Cluster, namespace: str) -> int:
    found = get(cluster, "deploy", namespace, "planner") or {}
    return int(found.get("spec", {}).get("replicas") or 0)


def _triggers(cluster: Cluster, namespace: str) -> list[str]:
    found = get(cluster, "scaledobject", namespace, "planner") or {}
    return [t["type"] for t in found.get("spec", {}).get("triggers", [])]


def test_an_agent_scaled_on_pending_work_is_scaled_by_keda_on_tokens(
    cluster: Cluster, kafka: Broker, operator: OperatorProcess, tmp_path: Path
) -> None:
    namespace = agent_namespace(cluster, kafka, "op-work")
    capability = f"op-{uuid.uuid4().hex[:8]}"
    address = f"127.0.0.1:{_free_port()}"
    log = tmp_path / "scaler.log"
    scaler = spawn(["scaler", "--address", address],
                   {**os.environ, "EXPEDITER_BOOTSTRAP": kafka.bootstrap}, log)  # fmt: skip
    try:
        scaling = {"signal": "work", "scalerAddress": address,
                   "targetDrainSeconds": TARGET_DRAIN_SECONDS,
                   "tokensPerSecond": TOKENS_PER_SECOND}  # fmt: skip
        # KEDA asks the scaler for its metric spec when it builds the HPA; with the tiers'
        # Kafka triggers beside it, a scaler not yet serving would leave the work metric out
        # of the HPA (KEDA builds it from the triggers that answer) instead of a retry.
        wait_for("the scaler serving", lambda: _serving(address), timeout=60)
        result = kubectl_apply(cluster, _agent(namespace, capability, scaling))
        assert result.returncode == 0, result.stderr
        # (one per retry tier, which only wakes the agent, then the work trigger)
        wait_for("the work trigger",
                 lambda: _triggers(cluster, namespace) == ["kafka"] * 2 + ["external"])  # fmt: skip
        scaled = get(cluster, "scaledobject", namespace, "planner")
        assert scaled is not None
        metadata = scaled["spec"]["triggers"][-1]["metadata"]
        assert metadata["capability"] == capability
        assert metadata["scalerAddress"] == address

        # KEDA takes it: Ready, and an HPA of its own on the scaler's external metric.
        def ready() -> bool:
            found = get(cluster, "scaledobject", namespace, "planner") or {}
            return condition(found.get("status", {}), "Ready").get("status") == "True"

        wait_for("the ScaledObject Ready", ready, timeout=60)
        hpa = wait_for(
            "KEDA's HPA", lambda: get(cluster, "hpa", namespace, "keda-hpa-planner"), timeout=60
        )
        metrics = hpa["spec"]["metrics"]
        assert [m["type"] for m in metrics] == ["External"] * 3, metrics  # 2 tiers, work
        assert metrics[-1]["external"]["metric"]["name"].endswith("pending-work-seconds")

        # 100 tiny tasks are 500 tokens, 5 s of one replica's work: one replica (lag 100
        # would ask for all 6 at lagThreshold 2), and it stays one over several HPA syncs.
        asyncio.run(_produce(kafka, f"tasks.{capability}", [5] * 100))
        wait_for("one replica", lambda: _replicas(cluster, namespace) == 1, timeout=60)
        time.sleep(6)
        assert _replicas(cluster, namespace) == 1, log.read_text()
        # Three huge tasks, 6,000 tokens more: 65 s of work, 7 replicas' worth, so the 6 of
        # maxReplicas (the partitions) on 103 records.
        asyncio.run(_produce(kafka, f"tasks.{capability}", [2000] * 3))
        wait_for("the replicas for the work", lambda: _replicas(cluster, namespace) == PARTITIONS,
                 timeout=90)  # fmt: skip

        # An edit to both adds KEDA's lag trigger next to the work one.
        result = kubectl_apply(
            cluster, _agent(namespace, capability, {**scaling, "signal": "both"})
        )
        assert result.returncode == 0, result.stderr
        # (the lag trigger, one per retry tier, then the work trigger)
        wait_for("both triggers",
                 lambda: _triggers(cluster, namespace) == ["kafka"] * 3 + ["external"])  # fmt: skip
    finally:
        assert terminate(scaler) == 0, log.read_text()


def test_a_scaling_spec_the_server_refuses_names_the_field(
    cluster: Cluster, kafka: Broker, operator: OperatorProcess
) -> None:
    namespace = agent_namespace(cluster, kafka, "op-work-bad")
    bad = _agent(namespace, "op-bad", {"signal": "work", "gpus": 2})
    result = kubectl_apply(cluster, bad)
    assert result.returncode != 0
    assert "spec.scaling.gpus" in result.stderr
    assert "replicasPerGpu go together" in result.stderr
    bad = _agent(namespace, "op-bad", {"signal": "tokens"})
    result = kubectl_apply(cluster, bad)
    assert result.returncode != 0
    assert "spec.scaling.signal" in result.stderr
