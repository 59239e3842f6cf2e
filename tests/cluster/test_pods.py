"""Worker pods on the local node lose no task and apply none twice: deleted, crashed, scaled down.

The project's own agent manifests (the soil analyzer's Deployment and ScaledObject from
``k8s/overlays/local``), with one change: the container runs the probe test agent
(``tests/agents/probe.py``), whose tasks choose how long they take, so that they are still
running when the pod goes. Results are read ``read_committed`` and counted by task id; the
probe's output carries the PID that ran it, which tells the pods apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from expediter.dev import Broker
from expediter.dev.cluster.fleet import FleetOptions, fleet_objects, remove_fleet, render_overlay
from expediter.dev.cluster.nodeclient import NodeClient
from expediter.events import to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.settings import KafkaSettings
from tests.cluster.conftest import ROOT, Cluster
from tests.cluster.pods import apply, container, pid_of, pods, ready
from tests.polling import wait_for
from tests.support import create_topics, produce, task

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

AGENT = "soil-analyzer"
SELECTOR = f"app.kubernetes.io/name={AGENT}"
CAPABILITY = "probe"


def _probe_fleet(
    ns: str,
    bootstrap: str,
    *,
    scaled: bool,
    drain: int | None = None,
    lag_threshold: int = 2,
    env: dict[str, str] | None = None,
    cooldown: int = 5,
    scale_down_window: int = 0,
) -> list[dict[str, Any]]:
    """The soil analyzer's manifests, running the probe agent on ``ns``'s topics; ``drain``
    shortens the worker's drain (the manifest's is 65 s: every task fetched would finish)."""
    objects = render_overlay(ROOT, "local")
    for obj in objects:
        if obj["metadata"]["name"] != AGENT:
            continue
        if obj["kind"] == "Deployment":
            worker = obj["spec"]["template"]["spec"]["containers"][0]
            worker["args"] = ["worker", "tests/agents/probe.py"]
            for env in worker["env"]:
                if env["name"] == "EXPEDITER_DRAIN_SECONDS" and drain is not None:
                    env["value"] = str(drain)
        if obj["kind"] == "ScaledObject":
            # The lag trigger alone: this test makes the task topic, not the retry tiers that
            # the other Kafka triggers read (a trigger on a missing topic fails in KEDA).
            del obj["spec"]["triggers"][1:]
            trigger = obj["spec"]["triggers"][0]["metadata"]
            trigger |= {
                "topic": f"tasks.{CAPABILITY}",
                "consumerGroup": f"agents.{CAPABILITY}",
                "lagThreshold": str(lag_threshold),
            }
            behavior = obj["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
            behavior["scaleDown"] = {
                "stabilizationWindowSeconds": scale_down_window,
                "policies": [{"type": "Pods", "value": 4, "periodSeconds": 1}],
            }
    options = FleetOptions(
        namespace=ns,
        bootstrap=bootstrap,
        prefix=f"{ns}.",
        agents=[AGENT],
        orchestrator=False,
        env=env or {},
        polling_interval=1,
        cooldown=cooldown,
        max_replicas=2,
    )
    fleet = fleet_objects(objects, options)
    if not scaled:
        fleet = [o for o in fleet if o["kind"] != "ScaledObject"]
        for obj in fleet:
            if obj["kind"] == "Deployment":
                obj["spec"]["replicas"] = 1
    return fleet


async def _setup(
    cluster: Cluster, kafka: Broker, stem: str, **options: Any
) -> tuple[str, TopicNames]:
    ns = f"{stem}-{uuid.uuid4().hex[:6]}"
    names = TopicNames(f"{ns}.")
    await create_topics(kafka.settings, names, CAPABILITY, partitions=2)
    await asyncio.to_thread(apply, cluster, _probe_fleet(ns, kafka.bootstrap, **options))
    return ns, names


Results = list[dict[str, Any]]


async def _results(
    settings: KafkaSettings,
    topic: str,
    until: Callable[[Results], bool],
    *,
    settle: float = 0.0,
    timeout: float = 180,
) -> Results:
    """Committed results from the start, until ``until(results)`` holds, then ``settle`` s more
    (so that a result applied twice would show). Each carries its record's time in ``_at``."""
    consumer = AIOKafkaConsumer(
        topic,
        **client_options(settings),
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    found: Results = []
    deadline = time.monotonic() + timeout
    async with connected(consumer, settings):
        settled: float | None = None
        while settled is None or time.monotonic() < settled:
            assert time.monotonic() < deadline, f"only {len(found)} results in {timeout:.0f}s"
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                found += [
                    {**json.loads(record.value), "_at": record.timestamp / 1000} for record in batch
                ]
            if settled is None and until(found):
                settled = time.monotonic() + settle
    return found


def _one_each(tasks: int) -> Callable[[Results], bool]:
    return lambda found: len({r["task_id"] for r in found}) >= tasks


def _exactly_once(results: list[dict[str, Any]], tasks: int) -> Counter[int]:
    counts = Counter(r["task_id"] for r in results)
    assert len(counts) == tasks, f"{len(counts)} of {tasks} tasks have a result"
    assert set(counts.values()) == {1}, f"applied twice: {[t for t, n in counts.items() if n > 1]}"
    assert {r["status"] for r in results} == {"succeeded"}
    return Counter(r["output"]["pid"] for r in results)


def _running_pod(cluster: Cluster, ns: str) -> dict[str, Any]:
    def one() -> dict[str, Any] | None:
        found = [
            p
            for p in pods(cluster, ns, SELECTOR)
            if container(p).get("started") and not p["metadata"].get("deletionTimestamp")
        ]
        return found[0] if len(found) == 1 else None

    return wait_for("one running worker pod", one, timeout=120)


async def test_a_worker_pod_deleted_mid_tasks_loses_none_and_applies_none_twice(
    node: Cluster, kafka: Broker
) -> None:
    # A drain shorter than the work fetched: the worker hands the rest back, for the new pod.
    ns, names = await _setup(node, kafka, "delete", scaled=False, drain=3)
    try:
        first = await asyncio.to_thread(_running_pod, node, ns)
        tasks = [task(n, f"wf-{n}", CAPABILITY, sleep=1.5) for n in range(40)]
        await produce(kafka.settings, names.tasks(CAPABILITY), tasks)
        await _results(kafka.settings, names.results, bool)
        # As `kubectl delete pod` does: the node runs the preStop hook, SIGTERMs the worker, which
        # drains; the ReplicaSet's new pod takes the partitions over.
        await asyncio.to_thread(
            node.kubectl, "delete", "pod", first["metadata"]["name"], "-n", ns, "--wait=false"
        )
        by_pid = _exactly_once(
            await _results(kafka.settings, names.results, _one_each(len(tasks)), settle=3),
            len(tasks),
        )
        assert pid_of(first) in by_pid, "the deleted pod did none of the tasks"
        assert len(by_pid) == 2, f"the tasks were done by {dict(by_pid)}: not two pods"
    finally:
        await asyncio.to_thread(remove_fleet, node.kubeconfig, ns)


async def test_a_crashed_worker_is_restarted_in_its_pod_and_its_tasks_finish(
    node: Cluster, kafka: Broker
) -> None:
    # The crashed member's partitions move once its session expires (the worker's 45 s, shortened).
    ns, names = await _setup(
        node, kafka, "crash", scaled=False, env={"EXPEDITER_SESSION_TIMEOUT_MS": "10000"}
    )
    try:
        first = await asyncio.to_thread(_running_pod, node, ns)
        tasks = [task(n, f"wf-{n}", CAPABILITY, sleep=1.5) for n in range(40)]
        await produce(kafka.settings, names.tasks(CAPABILITY), tasks)
        await _results(kafka.settings, names.results, bool)
        os.kill(pid_of(first), signal.SIGKILL)  # as the OOM killer would

        def restarted() -> dict[str, Any] | None:
            found = [
                p
                for p in pods(node, ns, SELECTOR)
                if p["metadata"]["uid"] == first["metadata"]["uid"]
            ]
            status = container(found[0]) if found else {}
            return status if status.get("restartCount") == 1 and status.get("started") else None

        status = await asyncio.to_thread(wait_for, "the container restarted", restarted, 60)
        assert status["lastState"]["terminated"]["exitCode"] == 128 + signal.SIGKILL
        by_pid = _exactly_once(
            await _results(kafka.settings, names.results, _one_each(len(tasks)), settle=3),
            len(tasks),
        )
        assert int(status["containerID"].removeprefix("local://")) in by_pid
    finally:
        await asyncio.to_thread(remove_fleet, node.kubeconfig, ns)


async def _first_deleted(cluster: Cluster, ns: str) -> tuple[float, dict[str, Any]]:
    """The first pod removed from ``ns``: when its deletion was asked for, and its last state
    (its DELETED event's object)."""
    asked: dict[str, float] = {}
    async with NodeClient(cluster.state.server, cluster.local.pki) as client:
        path = f"/api/v1/namespaces/{ns}/pods"
        version = str((await client.get(path))["metadata"]["resourceVersion"])
        while True:
            async for event in client.watch(path, version):
                meta = event["object"]["metadata"]
                version = str(meta.get("resourceVersion") or version)
                if meta.get("deletionTimestamp") and meta["uid"] not in asked:
                    # When the grace period ends: the delete came that much earlier.
                    end = dt.datetime.fromisoformat(meta["deletionTimestamp"]).timestamp()
                    asked[meta["uid"]] = end - int(meta["deletionGracePeriodSeconds"])
                if event["type"] == "DELETED":
                    return asked[meta["uid"]], dict(event["object"])


async def _chains(settings: KafkaSettings, topic: str, links: int, seconds: float) -> list[Any]:
    """One workflow per partition (0 and 1), ``links`` tasks each: they run one after another."""
    events = [
        task(100 * p + n, f"chain-{p}", CAPABILITY, sleep=seconds)
        for n in range(links)
        for p in (0, 1)
    ]
    async with connected(AIOKafkaProducer(**client_options(settings)), settings) as producer:
        for event in events:
            record = to_record(event)
            await producer.send(
                topic,
                record.value,
                key=record.key,
                headers=record.headers,
                partition=int(event.workflow_id[-1]),
            )
    return events


async def test_a_scale_down_during_long_tasks_waits_for_the_drain_and_loses_no_task(
    node: Cluster, kafka: Broker
) -> None:
    # A cooldown and a scale-down window long enough to keep the two pods between the rounds.
    ns, names = await _setup(
        node,
        kafka,
        "down",
        scaled=True,
        cooldown=60,
        scale_down_window=60,
        env={"EXPEDITER_SESSION_TIMEOUT_MS": "10000"},
    )
    topic = names.tasks(CAPABILITY)
    try:
        removed = asyncio.create_task(_first_deleted(node, ns))
        # Round one: lag 8 over lagThreshold 2; KEDA and the HPA run two pods (maxReplicaCount).
        # (2 s each, so that the lag lasts until the HPA has seen it.)
        warm = [task(n, f"wf-{n}", CAPABILITY, sleep=2) for n in range(8)]
        await produce(kafka.settings, topic, warm)

        def both_ready() -> bool:
            found = pods(node, ns, SELECTOR)
            return len(found) == 2 and all(ready(p) for p in found)

        await asyncio.to_thread(wait_for, "two ready pods", both_ready, 150)
        # Round two, once both are in the group: a chain of long tasks on each partition, and
        # while they run, the operator lowers maxReplicaCount: the HPA removes one pod.
        chains = await _chains(kafka.settings, topic, links=6, seconds=3)
        every = len(warm) + len(chains)
        await asyncio.to_thread(
            node.kubectl,
            "patch",
            "scaledobject",
            AGENT,
            "-n",
            ns,
            "--type=merge",
            "-p",
            '{"spec": {"maxReplicaCount": 1}}',
        )
        deleted_at, gone = await asyncio.wait_for(removed, 120)
        results = await _results(kafka.settings, names.results, _one_each(every), settle=3)
        _exactly_once(results, every)
        pid = pid_of(gone)
        after = [r for r in results if r["output"]["pid"] == pid and r["_at"] > deleted_at + 1]
        times = sorted(
            round(r["_at"] - deleted_at, 1) for r in results if r["output"]["pid"] == pid
        )
        assert after, f"the pod scaled down ({pid}) finished no task after the delete: {times}"
        # It drained and exited by itself, within terminationGracePeriodSeconds (no SIGKILL).
        terminated = container(gone)["state"]["terminated"]
        assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed"), terminated
    finally:
        await asyncio.to_thread(remove_fleet, node.kubeconfig, ns)
