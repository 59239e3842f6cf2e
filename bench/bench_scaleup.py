"""Bench: from a lag burst to the first task done by a newly started worker, against its floor.

- Scale-up: the local supervisor (``expediter up``'s engine, the soil analyzer's keda/ manifest,
  polling interval shortened) runs at 0 replicas; a burst of tasks is produced; the time runs
  until the first result of the replica the supervisor starts on that lag.
- Floor, in the same run on the same broker: the polling interval (the longest a burst can wait
  for KEDA's next poll) + a bare worker's start-to-first-result, measured by starting
  ``expediter worker`` by hand while lag exists (process start, group join and rebalance,
  first task).

``ratio`` = scale-up / floor; at or below 1 the supervisor adds nothing to what polling and a
cold worker cost. The last line is one JSON object.

``--cluster`` measures the same on the dev cluster (``expediter dev cluster``, started with its
node if none runs): the soil analyzer's manifests applied (polling interval shortened), and the
time runs from the burst to the first result of the pod KEDA started (KEDA's poll and
activation, the HPA, the scheduler, the node starting the worker, its group join, its first
task). Its floor adds the HPA's sync period: KEDA's polling interval + the HPA sync + a bare
worker's start-to-first-result. Each round also prints when the first pod was created and its
worker started (1 s resolution). With ``--tasks`` above one lagThreshold (8) the HPA starts
several pods at once, and their group's rebalances, not the cluster, dominate the time;
``--tasks 8`` measures one pod.

    .venv/bin/python bench/bench_scaleup.py [--tasks 50] [--polling-interval 2] [--rounds 3]
    .venv/bin/python bench/bench_scaleup.py --cluster [--hpa-sync-period 1]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from common import emit

from expediter.dev import provided_broker
from expediter.dev.cluster import LocalCluster, kubectl
from expediter.dev.cluster.fleet import (
    FleetOptions,
    apply_fleet,
    fleet_objects,
    remove_fleet,
    render_overlay,
)
from expediter.events import Producer, TaskEvent
from expediter.messaging import (
    TopicNames,
    apply_plan,
    client_options,
    connected,
    load_catalog,
    plan_topics,
)
from expediter.settings import DevSettings, KafkaSettings
from expediter.supervising import Supervisor, SupervisorOptions, read_scaled_agents, select_agents

ROOT = Path(__file__).resolve().parents[1]
CAPABILITY = "soil-analysis"


def tasks(count: int) -> list[TaskEvent]:
    return [
        TaskEvent(producer=Producer(name="bench", version="0"), workflow_id=f"wf-{n}",
                  step_id="soil", capability=CAPABILITY, input={"field_id": f"field-{n}"})
        for n in range(count)
    ]  # fmt: skip


async def topics(settings: KafkaSettings, prefix: str) -> None:
    plan = await plan_topics(load_catalog(ROOT / "topics" / "topics.yaml"), settings, prefix=prefix)
    await apply_plan(plan, settings)


async def burst(settings: KafkaSettings, topic: str, count: int) -> None:
    from aiokafka import AIOKafkaProducer

    from expediter.events import to_record

    async with connected(AIOKafkaProducer(**client_options(settings), linger_ms=5), settings) as p:
        for event in tasks(count):
            record = to_record(event)
            await p.send(topic, record.value, key=record.key, headers=record.headers)
        await p.flush()


async def first_result(settings: KafkaSettings, topic: str, timeout: float = 120) -> float:
    """The monotonic time the first committed record of ``topic`` is read."""
    consumer = AIOKafkaConsumer(topic, **client_options(settings), auto_offset_reset="earliest",
                                isolation_level="read_committed")  # fmt: skip
    deadline = time.monotonic() + timeout
    async with connected(consumer, settings):
        while time.monotonic() < deadline:
            if any((await consumer.getmany(timeout_ms=50)).values()):
                return time.monotonic()
    raise TimeoutError(f"no result on {topic} within {timeout:.0f}s")


def child_env(settings: KafkaSettings, prefix: str) -> dict[str, str]:
    return {**os.environ, "EXPEDITER_BOOTSTRAP": settings.bootstrap,
            "EXPEDITER_TOPIC_PREFIX": prefix, "EXPEDITER_HTTP_PORT": "0",
            "EXPEDITER_DRAIN_SECONDS": "5"}  # fmt: skip


async def scale_up(settings: KafkaSettings, count: int, polling: int) -> float:
    prefix = f"bs{uuid.uuid4().hex[:6]}."
    names = TopicNames(prefix)
    await topics(settings, prefix)
    (agent,) = select_agents(read_scaled_agents(ROOT, names), ["soil_analyzer"])
    agent = agent.with_overrides(polling_interval=polling, cooldown=60)
    with tempfile.TemporaryDirectory() as scratch:
        options = SupervisorOptions(root=ROOT, state_dir=Path(scratch), orchestrator=False,
                                    env=child_env(settings, prefix))  # fmt: skip
        supervisor = Supervisor([agent], settings, options, prefix=prefix)
        running = asyncio.create_task(supervisor.run(handle_signals=False))
        while supervisor.state.agents[0].polled_at is None:  # the first poll saw no lag
            await asyncio.sleep(0.05)
        # Land the burst at a random phase of the polling cycle, as real bursts do.
        await asyncio.sleep(polling * (uuid.uuid4().int % 1000) / 1000)
        reader = asyncio.create_task(first_result(settings, names.results))
        started = time.monotonic()
        await burst(settings, names.tasks(CAPABILITY), count)
        try:
            done = await reader
        finally:
            supervisor.request_stop()
            await running
    return done - started


async def bare_worker(settings: KafkaSettings, count: int) -> float:
    prefix = f"bw{uuid.uuid4().hex[:6]}."
    names = TopicNames(prefix)
    await topics(settings, prefix)
    await burst(settings, names.tasks(CAPABILITY), count)  # lag exists before the start
    reader = asyncio.create_task(first_result(settings, names.results))
    with tempfile.TemporaryFile() as log:
        started = time.monotonic()
        worker = subprocess.Popen(
            [sys.executable, "-m", "expediter.cli", "worker", "agents/soil_analyzer.py",
             "--instance", f"bench-{prefix}"],
            cwd=ROOT, env=child_env(settings, prefix), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            done = await reader
        finally:
            worker.terminate()
            await asyncio.to_thread(worker.wait, 30)
    return done - started


def _scaled_object_ready(kubeconfig: Path, namespace: str) -> bool:
    listed = json.loads(
        kubectl(kubeconfig, "get", "scaledobject,hpa", "-n", namespace, "-o", "json")
    )
    kinds = {item["kind"] for item in listed["items"]}
    ready = any(c["type"] == "Ready" and c["status"] == "True" for item in listed["items"]
                for c in (item.get("status") or {}).get("conditions") or []
                if item["kind"] == "ScaledObject")  # fmt: skip
    return ready and "HorizontalPodAutoscaler" in kinds


def _timeline(kubeconfig: Path, namespace: str, burst_at: float) -> dict[str, float]:
    """Seconds from the burst to the first pod's creation (KEDA's activation, the Deployment and
    ReplicaSet controllers) and to its worker's start (the scheduler and the node); the API
    server's times have 1 s resolution."""
    listed = json.loads(kubectl(kubeconfig, "get", "pods", "-n", namespace, "-o", "json"))
    pods = sorted(listed["items"], key=lambda p: p["metadata"]["creationTimestamp"])
    if not pods:
        return {}
    first = pods[0]
    running = (first["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("running")

    def since(stamp: str) -> float:
        return round(dt.datetime.fromisoformat(stamp).timestamp() - burst_at, 1)

    times = {"pod_created": since(first["metadata"]["creationTimestamp"])}
    if running:
        times["worker_started"] = since(running["startedAt"])
    return times


async def cluster_scale_up(settings: KafkaSettings, cluster: LocalCluster, count: int,
                           polling: int) -> float:  # fmt: skip
    """From a burst to the first result of the pod KEDA starts on the dev cluster."""
    prefix = f"bc{uuid.uuid4().hex[:6]}."
    names = TopicNames(prefix)
    await topics(settings, prefix)
    namespace = prefix.rstrip(".")
    kubeconfig = cluster.kubeconfig
    options = FleetOptions(namespace=namespace, bootstrap=settings.bootstrap, prefix=prefix,
                           agents=["soil_analyzer"], orchestrator=False,
                           polling_interval=polling, cooldown=60)  # fmt: skip
    apply_fleet(kubeconfig, fleet_objects(render_overlay(ROOT), options))
    try:
        while not await asyncio.to_thread(_scaled_object_ready, kubeconfig, namespace):
            await asyncio.sleep(0.2)
        # Land the burst at a random phase of KEDA's polling cycle, as real bursts do.
        await asyncio.sleep(polling * (1 + (uuid.uuid4().int % 1000) / 1000))
        reader = asyncio.create_task(first_result(settings, names.results, timeout=300))
        started, wall = time.monotonic(), time.time()
        await burst(settings, names.tasks(CAPABILITY), count)
        took = await reader - started
        emit({"pod_timeline": await asyncio.to_thread(_timeline, kubeconfig, namespace, wall),
              "first_result_seconds": round(took, 3)})  # fmt: skip
        return took
    finally:
        await asyncio.to_thread(remove_fleet, kubeconfig, namespace)


async def main(args: argparse.Namespace) -> None:
    cluster = None
    if args.cluster:
        cluster = LocalCluster(DevSettings().dir / "cluster", hpa_sync_period=args.hpa_sync_period,
                               node=True, root=ROOT)  # fmt: skip
        started_cluster = cluster.status() is None
        hpa_sync = cluster.start().hpa_sync_period
    try:
        async with provided_broker(DevSettings()) as broker:
            settings = broker.settings
            ups, bares = [], []
            for n in range(args.rounds):
                bares.append(await bare_worker(settings, args.tasks))
                if cluster is not None:
                    ups.append(await cluster_scale_up(settings, cluster, args.tasks,
                                                      args.polling_interval))  # fmt: skip
                else:
                    ups.append(await scale_up(settings, args.tasks, args.polling_interval))
                emit({"round": n, "scale_up_seconds": round(ups[-1], 3),
                      "worker_start_seconds": round(bares[-1], 3)})  # fmt: skip
    finally:
        if cluster is not None and started_cluster:
            cluster.stop()
    up, bare = statistics.median(ups), statistics.median(bares)
    floor = args.polling_interval + bare + (hpa_sync if cluster is not None else 0)
    extra = {"mode": "cluster", "hpa_sync_period": hpa_sync} if cluster is not None else {}
    emit({"ratio": round(up / floor, 3), "scale_up_seconds": round(up, 3),
          "floor_seconds": round(floor, 3), "worker_start_seconds": round(bare, 3),
          "polling_interval": args.polling_interval, "tasks": args.tasks,
          "rounds": args.rounds, **extra})  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--polling-interval", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="Measure on the dev cluster: KEDA, the HPA and the local node.",
    )
    parser.add_argument("--hpa-sync-period", type=float, default=1.0,
                        help="--cluster: the HPA sync of a cluster this bench starts.")  # fmt: skip
    asyncio.run(main(parser.parse_args()))
