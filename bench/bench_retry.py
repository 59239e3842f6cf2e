"""Bench: head-of-line delay behind one retrying task, retried in place vs. through delay tiers.

One partition holds the tasks of many workflows. One task fails retriably twice and succeeds on
its third try; the other workflows' tasks arrive behind it at a steady rate while it retries.

- ``in-place``: the worker retries in its partition, backing off 1 s then 2 s
  (``EXPEDITER_RETRY_BACKOFF_SECONDS=1``, ``MAX_ATTEMPTS=3``, no tiers). Offsets commit in
  order, so the results of the tasks behind it wait for it, and the partition's next batches
  wait behind its batch.
- ``tiers``: the same 1 s and 2 s as delay tiers (``retry.flaky.1s``, ``retry.flaky.2s``,
  ``MAX_ATTEMPTS=1``): the failing task moves to a tier and the partition goes on.

Latency = result read (read_committed) - task sent, per task. The retrying task takes about 3 s
either way; what changes is the other workflows' p50. The last line's ``ratio`` is in-place
p50 / tiers p50 of the other workflows (how many times longer they wait behind one retrying
task when it holds the partition), medians over ``--rounds`` rounds.

    .venv/bin/python bench/bench_retry.py [--others 100] [--rate 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import NewTopic
from common import agent_topics, emit, percentiles, scratch_topics

from expediter import load_agent
from expediter.dev import provided_broker
from expediter.events import Producer, ResultEvent, TaskEvent, decode, to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.reasoning import RuleEngine
from expediter.settings import DevSettings, KafkaSettings, WorkerSettings
from expediter.worker.working import Worker

FLAKY = Path(__file__).resolve().parent / "agents" / "flaky.py"
WARMUP = 5
TIERS = [1, 2]
"""The tiers' delays match the in-place backoffs (1 s, then 2 s): the same wait either way."""


def task(n: int, fail: bool) -> TaskEvent:
    return TaskEvent(
        producer=Producer(name="bench", version="0"), workflow_id=f"wf-{n:05d}",
        step_id="s", capability="flaky", input={"n": n, "fail": fail},
    )  # fmt: skip


async def round_(settings: KafkaSettings, mode: str, others: int, rate: float) -> dict[str, Any]:
    names = TopicNames(prefix=f"bt{uuid.uuid4().hex[:6]}.")
    tiers = [f"{names.prefix}retry.flaky.{n}s" for n in TIERS]
    topics = [*agent_topics(names, "flaky", 1), *(NewTopic(t, 1, 1) for t in tiers)]
    async with scratch_topics(settings, topics):
        return await _measure(settings, names, mode, others, rate)


async def _measure(
    settings: KafkaSettings, names: TopicNames, mode: str, others: int, rate: float
) -> dict[str, Any]:
    overrides: dict[str, Any] = (
        {"max_attempts": 3, "retry_backoff_seconds": 1.0, "retry_tiers": []}
        if mode == "in-place" else {"max_attempts": 1, "retry_tiers": TIERS}
    )  # fmt: skip
    worker = Worker(
        load_agent(FLAKY), RuleEngine(), kafka=settings,
        settings=WorkerSettings(topic_prefix=names.prefix, http_port=0,
                                instance=f"bench-{uuid.uuid4().hex[:6]}", **overrides),
    )  # fmt: skip
    running = asyncio.create_task(worker.run())
    while not worker.assignments:
        await asyncio.sleep(0.01)
    sent: dict[str, float] = {}
    got: dict[str, float] = {}
    options = client_options(settings)
    async with connected(AIOKafkaProducer(**options, acks="all"), settings) as producer:
        # Warm up first (leaders elected, the worker's producer and transactions going), so
        # that both modes start measuring from the same steady state.
        warm: dict[str, float] = {}
        reader = asyncio.create_task(_read(settings, names.results, WARMUP, warm))
        for n in range(WARMUP):
            record = to_record(task(100_000 + n, fail=False))
            await producer.send_and_wait(names.tasks("flaky"), record.value, key=record.key,
                                         headers=record.headers)  # fmt: skip
        await asyncio.wait_for(reader, 120)
        reader = asyncio.create_task(_read(settings, names.results, WARMUP + others + 1, got))
        for n in range(others + 1):
            event = task(n, fail=n == 0)
            record = to_record(event)
            sent[str(event.event_id)] = time.monotonic()
            await producer.send_and_wait(names.tasks("flaky"), record.value, key=record.key,
                                         headers=record.headers)  # fmt: skip
            await asyncio.sleep(1 / rate)
    await asyncio.wait_for(reader, 120)
    worker.request_stop()
    await running
    ids = list(sent)
    retrying = got[ids[0]] - sent[ids[0]]
    behind = [(got[i] - sent[i]) * 1000 for i in ids[1:]]
    p50, p99 = percentiles(behind)
    return {"mode": mode, "others_p50_ms": round(p50, 1), "others_p99_ms": round(p99, 1),
            "retrying_task_s": round(retrying, 2)}  # fmt: skip


async def _read(settings: KafkaSettings, topic: str, count: int, got: dict[str, float]) -> None:
    consumer = AIOKafkaConsumer(topic, **client_options(settings), auto_offset_reset="earliest",
                                isolation_level="read_committed")  # fmt: skip
    async with connected(consumer, settings):
        while len(got) < count:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batches.values():
                for record in records:
                    got.setdefault(str(decode(record.value, ResultEvent).task_id), now)


async def main(args: argparse.Namespace) -> None:
    async with provided_broker(DevSettings(dir=Path(".expediter/bench"))) as broker:
        emit({"broker": broker.kind, "version": broker.version, "bootstrap": broker.bootstrap})
        rounds: dict[str, list[dict[str, Any]]] = {"in-place": [], "tiers": []}
        for n in range(args.rounds):
            for mode in rounds:  # taking turns, so a noisy neighbour hits both alike
                result = await round_(broker.settings, mode, args.others, args.rate)
                rounds[mode].append(result)
                emit({"round": n + 1, **result})
        med = {
            mode: statistics.median(r["others_p50_ms"] for r in rs) for mode, rs in rounds.items()
        }
        retrying = {
            mode: statistics.median(r["retrying_task_s"] for r in rs) for mode, rs in rounds.items()
        }
        emit({
            "bench": "retry",
            "others": args.others,
            "rate": args.rate,
            "rounds": args.rounds,
            "in_place_others_p50_ms": med["in-place"],
            "tiers_others_p50_ms": med["tiers"],
            "in_place_retrying_task_s": retrying["in-place"],
            "tiers_retrying_task_s": retrying["tiers"],
            "ratio": round(med["in-place"] / med["tiers"], 2),
        })  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--others", type=int, default=100, help="other workflows' tasks")
    parser.add_argument("--rate", type=float, default=40.0, help="tasks sent per second")
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
