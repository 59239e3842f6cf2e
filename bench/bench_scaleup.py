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

    .venv/bin/python bench/bench_scaleup.py [--tasks 50] [--polling-interval 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
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


async def main(args: argparse.Namespace) -> None:
    async with provided_broker(DevSettings()) as broker:
        settings = broker.settings
        ups, bares = [], []
        for n in range(args.rounds):
            bares.append(await bare_worker(settings, args.tasks))
            ups.append(await scale_up(settings, args.tasks, args.polling_interval))
            emit({"round": n, "scale_up_seconds": round(ups[-1], 3),
                  "worker_start_seconds": round(bares[-1], 3)})  # fmt: skip
    up, bare = statistics.median(ups), statistics.median(bares)
    floor = args.polling_interval + bare
    emit({"ratio": round(up / floor, 3), "scale_up_seconds": round(up, 3),
          "floor_seconds": round(floor, 3), "worker_start_seconds": round(bare, 3),
          "polling_interval": args.polling_interval, "tasks": args.tasks,
          "rounds": args.rounds})  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--polling-interval", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
