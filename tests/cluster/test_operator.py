"""The Agent operator on the real API server, KEDA and HPA, run as ``expediter operator``.

No node runs in this module, so pods stay Pending: what is checked is what the operator and
KEDA do with the objects (``spec.replicas`` is KEDA's and the HPA's observable). The module
tests/cluster/test_operator_workers.py runs the workers for real.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from expediter.dev import Broker
from expediter.messaging import client_options, connected, describe_topics
from tests.cluster.conftest import ROOT, Cluster
from tests.cluster.operators import (
    MANAGED,
    OperatorProcess,
    agent,
    agent_namespace,
    condition,
    get,
    kubectl_apply,
    listed,
    status,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PARTITIONS = 3
LAG_THRESHOLD = 5


def _capability() -> str:
    return f"op-{uuid.uuid4().hex[:8]}"


def _agent(namespace: str, name: str, capability: str, **spec: Any) -> dict[str, Any]:
    return agent(
        namespace, name,
        **{"capability": capability, "agent": "agents/soil_analyzer.py", "image": "expediter:dev",
           "partitions": PARTITIONS, "maxReplicas": PARTITIONS, "lagThreshold": LAG_THRESHOLD,
           "pollingInterval": 1, **spec},
    )  # fmt: skip


def _create(cluster: Cluster, obj: dict[str, Any]) -> None:
    result = kubectl_apply(cluster, obj)
    assert result.returncode == 0, result.stderr


def _owned(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    return listed(cluster, ",".join(("deploy", "svc", "pdb", "scaledobject")), namespace, MANAGED)


def _replicas(cluster: Cluster, namespace: str, name: str) -> int:
    found = get(cluster, "deploy", namespace, name) or {}
    return int(found.get("spec", {}).get("replicas") or 0)


async def _lag(kafka: Broker, topic: str, records: int) -> None:
    settings = kafka.settings
    async with connected(AIOKafkaProducer(**client_options(settings)), settings) as producer:
        for n in range(records):
            await producer.send(topic, f"task {n}".encode(), partition=n % PARTITIONS)
        await producer.flush()


def test_an_agent_becomes_its_objects_and_keda_scales_it_on_real_lag(
    cluster: Cluster, kafka: Broker, operator: OperatorProcess
) -> None:
    namespace = agent_namespace(cluster, kafka, "op-create")
    capability = _capability()
    started = time.monotonic()
    _create(cluster, _agent(namespace, "scorer", capability))
    wait_for("the agent's objects", lambda: len(_owned(cluster, namespace)) == 4)
    created_in = time.monotonic() - started
    uid = get(cluster, "agent", namespace, "scorer")["metadata"]["uid"]  # type: ignore[index]
    for obj in _owned(cluster, namespace):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid, obj["kind"]
    scaled = get(cluster, "scaledobject", namespace, "scorer")
    assert scaled is not None
    assert scaled["spec"]["triggers"][0]["authenticationRef"] == {"name": "expediter-kafka"}
    assert scaled["spec"]["triggers"][0]["metadata"]["topic"] == f"tasks.{capability}"
    assert get(cluster, "triggerauthentication", namespace, "expediter-kafka") is not None
    topics = {
        t.name: t.partitions
        for t in asyncio.run(
            describe_topics(kafka.settings, [f"tasks.{capability}", f"dlq.{capability}"])
        )
    }
    assert topics[f"tasks.{capability}"] == PARTITIONS
    assert f"dlq.{capability}" in topics

    def idle_status() -> dict[str, Any] | None:
        found = status(cluster, namespace, "scorer")
        return found if found.get("phase") == "Idle" else None

    idle = wait_for("status Idle", idle_status)
    assert idle["ready"] == "0/0"
    assert idle["lag"] == 0
    print(f"the objects of a new Agent made in {created_in:.1f}s")

    # Real lag: far above the cap of partitions x lagThreshold, so KEDA (0 -> 1) and the HPA
    # take the Deployment to the partition count, and the status shows it.
    asyncio.run(_lag(kafka, f"tasks.{capability}", 100))
    wait_for(
        "replicas at the partition count",
        lambda: _replicas(cluster, namespace, "scorer") == PARTITIONS,
        timeout=90,
    )

    def scaled_status() -> dict[str, Any] | None:
        found = status(cluster, namespace, "scorer")
        return found if found.get("desiredReplicas") == PARTITIONS and found.get("lag") else None

    seen = wait_for("the status of the scaled agent", scaled_status)
    assert seen["lag"] == 100
    assert seen["kedaMetric"] == str(PARTITIONS * LAG_THRESHOLD)
    assert seen["phase"] == "Scaling"  # no node: the pods are Pending
    assert seen["ready"] == f"0/{PARTITIONS}"
    assert seen["lastScaleTime"]
    assert condition(seen, "ScalerReady")["status"] == "True"
    table = cluster.kubectl("get", "agents", "-n", namespace)
    assert table.split("\n")[0].split() == ["NAME", "PHASE", "READY", "LAG", "AGE"]
    assert table.split("\n")[1].split()[:4] == ["scorer", "Scaling", f"0/{PARTITIONS}", "100"]

    # Deleted: nothing runs, so the drain is immediate; the owned objects go, the topics stay.
    cluster.kubectl("delete", "agent", "scorer", "-n", namespace, "--timeout=60s")
    wait_for("the owned objects gone", lambda: not _owned(cluster, namespace) or None)
    assert asyncio.run(describe_topics(kafka.settings, [f"tasks.{capability}"]))[0].exists


def test_an_edited_spec_is_followed_by_the_objects(
    cluster: Cluster, kafka: Broker, operator: OperatorProcess
) -> None:
    namespace = agent_namespace(cluster, kafka, "op-edit")
    capability = _capability()
    _create(cluster, _agent(namespace, "scorer", capability))
    wait_for("the ScaledObject", lambda: get(cluster, "scaledobject", namespace, "scorer"))

    _create(
        cluster,
        _agent(namespace, "scorer", capability, maxReplicas=2, lagThreshold=7, cooldownPeriod=42,
               image="expediter:edited", model={"engine": "openai", "name": "qwen"}),
    )  # fmt: skip

    def followed() -> bool:
        scaled = get(cluster, "scaledobject", namespace, "scorer") or {}
        deployment = get(cluster, "deploy", namespace, "scorer") or {}
        spec = scaled.get("spec", {})
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        return (
            spec.get("maxReplicaCount") == 2
            and spec.get("cooldownPeriod") == 42
            and spec["triggers"][0]["metadata"]["lagThreshold"] == "7"
            and container["image"] == "expediter:edited"
            and env.get("EXPEDITER_ENGINE_KIND") == "openai"
        )

    wait_for("the objects following the edit", followed)
    generation = get(cluster, "agent", namespace, "scorer")["metadata"]["generation"]  # type: ignore[index]
    wait_for(
        "observedGeneration",
        lambda: status(cluster, namespace, "scorer").get("observedGeneration") == generation,
    )


def test_a_deleted_deployment_and_an_edited_scaled_object_are_put_back(
    cluster: Cluster, kafka: Broker, operator: OperatorProcess
) -> None:
    namespace = agent_namespace(cluster, kafka, "op-drift")
    _create(cluster, _agent(namespace, "scorer", _capability()))
    first = wait_for("the Deployment", lambda: get(cluster, "deploy", namespace, "scorer"))

    deleted_at = time.monotonic()
    cluster.kubectl("delete", "deploy", "scorer", "-n", namespace, "--wait=false")

    def replaced() -> dict[str, Any] | None:
        found = get(cluster, "deploy", namespace, "scorer")
        uid = (found or {}).get("metadata", {}).get("uid")
        return found if uid and uid != first["metadata"]["uid"] else None

    wait_for("the Deployment back", replaced)
    back_in = time.monotonic() - deleted_at

    edited_at = time.monotonic()
    cluster.kubectl(
        "patch", "scaledobject", "scorer", "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"maxReplicaCount": 1, "cooldownPeriod": 1}}),
    )  # fmt: skip

    def restored() -> bool:
        found = get(cluster, "scaledobject", namespace, "scorer") or {"spec": {}}
        spec: dict[str, Any] = found["spec"]
        return spec.get("maxReplicaCount") == PARTITIONS and spec.get("cooldownPeriod") == 300

    wait_for("the ScaledObject's fields back", restored)
    print(f"deleted Deployment back in {back_in:.1f}s, edited ScaledObject back in "
          f"{time.monotonic() - edited_at:.1f}s")  # fmt: skip
    assert len(listed(cluster, "deploy", namespace, MANAGED)) == 1


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"minReplicas": 3, "maxReplicas": 2}, "spec.maxReplicas", "must be >= minReplicas"),
        ({"maxReplicas": 6}, "spec.maxReplicas", "must be <= partitions"),
        ({"capability": "Not_A_Label"}, "spec.capability", "should match"),
        ({"maxReplica": 2}, "spec.maxReplica", "unknown field"),
    ],
    ids=["max-below-min", "max-above-partitions", "bad-capability", "unknown-field"],
)
def test_an_invalid_agent_is_refused_naming_the_field(
    cluster: Cluster, kafka: Broker, spec: dict[str, Any], field: str, words: str
) -> None:
    namespace = agent_namespace(cluster, kafka, "op-invalid")
    result = kubectl_apply(
        cluster, _agent(namespace, "scorer", **{"capability": _capability(), **spec})
    )
    assert result.returncode != 0
    assert field in result.stderr, result.stderr
    assert words in result.stderr, result.stderr
    assert get(cluster, "agent", namespace, "scorer") is None


def test_an_operator_killed_mid_reconcile_converges_on_one_set_of_objects(
    cluster: Cluster, kafka: Broker, operator: OperatorProcess
) -> None:
    namespace = agent_namespace(cluster, kafka, "op-kill")
    capability = _capability()
    _create(cluster, _agent(namespace, "scorer", capability))

    # The reconcile makes the topics (a round trip to Kafka), then the TriggerAuthentication,
    # Deployment, Service, PDB and ScaledObject in turn. Polled straight from the API server
    # (kubectl takes longer than the rest of the reconcile), the operator is killed as soon as
    # the Deployment exists: mid-reconcile, before the ScaledObject is made.
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/scorer"
    wait_for("the Deployment", lambda: cluster.api.get(path).ok, timeout=60, poll=0.01)
    operator.kill()
    before = sorted(o["kind"] for o in _owned(cluster, namespace))
    operator.start()

    def converged() -> dict[str, Any] | None:
        found = status(cluster, namespace, "scorer")
        done = condition(found, "Reconciled").get("status") == "True" and found.get("phase")
        return found if done and len(_owned(cluster, namespace)) == 4 else None

    wait_for("convergence after the restart", converged)
    kinds = sorted(o["kind"] for o in _owned(cluster, namespace))
    assert kinds == ["Deployment", "PodDisruptionBudget", "ScaledObject", "Service"]
    assert len(listed(cluster, "hpa", namespace)) <= 1
    assert len(listed(cluster, "triggerauthentication", namespace)) == 1
    print(f"killed with {before} made; converged after the restart")


def test_the_operator_serves_healthz_logs_json_and_exits_0_on_sigterm(
    operator: OperatorProcess,
) -> None:
    assert operator.healthy()
    lines = [line for line in Path(operator.log).read_text().splitlines() if line.startswith("{")]
    assert lines, operator.tail()
    assert all("message" in json.loads(line) for line in lines[-20:])
    stopped_at = time.monotonic()
    assert operator.stop() == 0, operator.tail()
    print(f"stopped in {time.monotonic() - stopped_at:.1f}s after SIGTERM")
    operator.start()  # the module's fixture stops it again


def test_the_in_cluster_install_passes_the_servers_validation(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    # The Deployment cannot run here (the local node mounts no service-account token), but the
    # API server checks it, with the CRD and RBAC, as `kubectl apply -k k8s/operator` sends it.
    out = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "--force-conflicts",
        "-k", str(ROOT / "k8s" / "operator"),
    )  # fmt: skip
    assert out.count("(server dry run)") == 5, out


def test_the_cli_refuses_a_missing_kubeconfig(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "expediter.cli", "operator", "--kubeconfig",
         str(tmp_path / "none")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--kubeconfig" in result.stderr
    assert "no such file" in result.stderr
