"""The Agent operator with workers that really run: the local node runs each pod of an Agent's
Deployment as ``expediter worker tests/agents/probe.py`` against the test broker.

- The status reports the replicas the node made ready and the lag they work off.
- Deleting an Agent while its tasks are in flight drains it: KEDA is held at zero, each
  worker finishes its tasks on SIGTERM, commits and leaves; only then is the Agent released and
  its Deployment, ScaledObject, Service and PDB removed.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from expediter.dev import Broker
from expediter.messaging import apply_plan, load_catalog, plan_topics
from expediter.supervising import LagSampler
from tests.cluster.conftest import ROOT, Cluster
from tests.cluster.operators import (
    MANAGED,
    OperatorProcess,
    agent,
    agent_namespace,
    get,
    kubectl_apply,
    listed,
    running_operator,
    status,
    wait_for,
)
from tests.support import produce, read, task

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CAPABILITY = "probe"  # tests/agents/probe.py's; the node runs the file from this checkout
PARTITIONS = 2


@pytest.fixture(scope="module")
def operator(
    node: Cluster, kafka: Broker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    # The workers need the shared topics (results, registry, the tool ledger) besides their own.
    catalog = load_catalog(ROOT / "topics" / "topics.yaml")
    asyncio.run(_apply_catalog(kafka, catalog))
    with running_operator(node, kafka, tmp_path_factory.mktemp("operator")) as running:
        yield running


async def _apply_catalog(kafka: Broker, catalog: Any) -> None:
    await apply_plan(await plan_topics(catalog, kafka.settings), kafka.settings)


@pytest.fixture
def namespace(node: Cluster, kafka: Broker) -> Iterator[str]:
    name = agent_namespace(node, kafka, "op-work")
    try:
        yield name
    finally:
        # No worker of this test may stay in the group for the next one.
        node.kubectl("delete", "agents", "--all", "-n", name, "--timeout=120s")


def _probe_agent(namespace: str, name: str) -> dict[str, Any]:
    return agent(
        namespace, name,
        capability=CAPABILITY, agent="tests/agents/probe.py", image="expediter:dev",
        concurrency=4, maxTaskSeconds=30, partitions=PARTITIONS, minReplicas=1,
        maxReplicas=PARTITIONS, pollingInterval=1,
    )  # fmt: skip


def _ready_one(node: Cluster, namespace: str, name: str) -> dict[str, Any]:
    result = kubectl_apply(node, _probe_agent(namespace, name))
    assert result.returncode == 0, result.stderr

    def running() -> dict[str, Any] | None:
        found = status(node, namespace, name)
        return found if found.get("phase") == "Running" and found.get("ready") == "1/1" else None

    return wait_for("one ready worker", running, timeout=120)


async def _results(kafka: Broker, workflows: set[str]) -> dict[str, Any]:
    """The first result of each of ``workflows``, with its record's timestamp (ms)."""
    found: dict[str, Any] = {}

    def done(records: list[Any]) -> bool:
        for record in records:
            document = json.loads(record.value)
            if document["workflow_id"] in workflows:
                assert found.get(document["workflow_id"], {}).get("task_id") in (
                    None, document["task_id"]
                ), "two results for one task"  # fmt: skip
                found.setdefault(document["workflow_id"], {**document, "at": record.timestamp})
        return len(found) == len(workflows)

    await read(kafka.settings, "results", until=done, timeout=120)
    return found


async def _group_lag(kafka: Broker) -> int:
    async with LagSampler(kafka.settings) as sampler:
        sample = await sampler.sample(f"tasks.{CAPABILITY}", f"agents.{CAPABILITY}")
    return sum(latest - (committed or 0) for latest, committed in zip(
        sample.latest, sample.committed, strict=True))  # fmt: skip


def test_the_status_shows_ready_workers_and_the_lag_they_work_off(
    node: Cluster, kafka: Broker, operator: OperatorProcess, namespace: str
) -> None:
    started = time.monotonic()
    ready = _ready_one(node, namespace, "prober")
    print(f"Agent to a ready worker in {time.monotonic() - started:.1f}s")
    assert ready["desiredReplicas"] == ready["readyReplicas"] == 1

    run = uuid.uuid4().hex[:8]
    workflows = {f"{run}-{n}" for n in range(8)}
    events = [task(n, f"{run}-{n}", CAPABILITY, sleep=2.0) for n in range(8)]
    asyncio.run(produce(kafka.settings, f"tasks.{CAPABILITY}", events))
    seen_lag = wait_for(
        "lag in the status", lambda: status(node, namespace, "prober").get("lag"), timeout=30
    )
    results = asyncio.run(_results(kafka, workflows))
    assert {r["status"] for r in results.values()} == {"succeeded"}
    wait_for("lag 0 in the status", lambda: status(node, namespace, "prober").get("lag") == 0)
    table = node.kubectl("get", "agents", "-n", namespace, "--no-headers").split()
    assert table[:4] == ["prober", "Running", "1/1", "0"]
    print(f"status lag seen: {seen_lag}; 8 tasks answered")


def test_deleting_an_agent_with_tasks_in_flight_lets_them_finish_then_removes_everything(
    node: Cluster, kafka: Broker, operator: OperatorProcess, namespace: str
) -> None:
    _ready_one(node, namespace, "drained")
    (pod,) = listed(node, "pods", namespace, "app.kubernetes.io/name=drained")
    run = uuid.uuid4().hex[:8]
    workflows = {f"{run}-{n}" for n in range(4)}
    # Four tasks of 8 s: the worker runs them all at once (concurrency 4).
    events = [task(n, f"{run}-{n}", CAPABILITY, sleep=8.0) for n in range(4)]
    asyncio.run(produce(kafka.settings, f"tasks.{CAPABILITY}", events))
    time.sleep(2.0)  # taken by the worker, 6 s from done

    deleted_at = time.time()
    node.kubectl("delete", "agent", "drained", "-n", namespace, "--wait=false")
    terminating = wait_for(
        "phase Terminating",
        lambda: status(node, namespace, "drained").get("phase") == "Terminating",
        timeout=30,
    )
    assert terminating
    wait_for("the Agent gone", lambda: get(node, "agent", namespace, "drained") is None, 120)
    gone_at = time.time()

    results = asyncio.run(_results(kafka, workflows))
    assert {r["status"] for r in results.values()} == {"succeeded"}
    finished = sorted(r["at"] / 1000 for r in results.values())
    # Finished after the delete (they were in flight), and before the Agent was released.
    assert deleted_at < finished[0] <= finished[-1] < gone_at, (deleted_at, finished, gone_at)
    assert asyncio.run(_group_lag(kafka)) == 0
    wait_for(
        "the owned objects and pods gone",
        lambda: not listed(node, "deploy,svc,pdb,scaledobject,pods", namespace) or None,
        timeout=60,
    )
    assert not listed(node, "deploy", namespace, MANAGED)
    print(
        f"deleted with 4 tasks in flight on {pod['metadata']['name']}: last finished "
        f"{finished[-1] - deleted_at:.1f}s after the delete, Agent released after "
        f"{gone_at - deleted_at:.1f}s"
    )
