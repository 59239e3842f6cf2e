"""Bench: the agent worker against raw aiokafka, on the same broker, in the same run.

- Throughput: one worker with a no-op handler drains a task topic filled beforehand with
  ~300-byte tasks; the baseline is a raw aiokafka consume-to-produce echo loop over the same
  records. Both are timed the same way: from the moment they hold their partitions until a
  reader in the same event loop has read every output record (the worker's are visible when
  its transactions commit). They take turns for ``--rounds`` rounds, on fresh topics each;
  ``throughput_ratio`` = median worker / median raw (the target is >= 0.7).
- Latency: tasks at a fixed low rate; hop latency = result received - task sent. The baseline
  is raw produce-to-consume at the same rate (floors.py). ``latency_ratio`` = worker p50 / raw p50.
  ``floor_p50_ms`` is the same hop with the worker's guarantees and nothing else (floors.py: a
  raw aiokafka transactional echo, read_committed at both ends); ``latency_vs_floor`` = worker
  p50 / floor p50, what the worker adds to what exactly-once costs.
  ``hop_stages_p50_ms`` splits the hop by each task's trace (breakdown.py, HOP_STAGES): fetch,
  handler, publish, commit.
- Memory: peak RSS (VmHWM) of a worker process without a model, and with Gemma 3 270M loaded
  (EXPEDITER_ENGINE_KIND=llama; null when the [llm] extra is not installed).

Everything runs in one process, on the event loop ``expediter worker`` picks (uvloop where it
is installed; EXPEDITER_EVENT_LOOP=asyncio for asyncio's), the raw baseline included. The last
line is one JSON object; its ``ratio`` is the throughput ratio.

    .venv/bin/python bench/bench_worker.py [--tasks 20000] [--rounds 5] [--rate 20] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import NewTopic
from breakdown import medians, trace_id
from common import (
    agent_topics,
    count_until,
    emit,
    percentiles,
    raw_echo,
    scratch_topics,
    task_event,
)
from floors import exactly_once_echo, raw_one_way

from expediter import load_agent
from expediter.dev import provided_broker
from expediter.events import ResultEvent, decode, to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.reasoning import RuleEngine
from expediter.settings import DevSettings, KafkaSettings, WorkerSettings
from expediter.worker import looping
from expediter.worker.working import Worker

NOOP = Path(__file__).resolve().parent / "agents" / "noop.py"
PARTITIONS = 4


def scratch(
    settings: KafkaSettings, names: TopicNames, extra: list[str]
) -> AbstractAsyncContextManager[None]:
    """The topics of one phase, deleted after it, so that rounds do not pile up partitions."""
    extras = [NewTopic(t, PARTITIONS, 1) for t in extra]
    return scratch_topics(settings, [*agent_topics(names, "noop", PARTITIONS), *extras])


async def fill(settings: KafkaSettings, topic: str, count: int) -> int:
    size = 0
    async with connected(AIOKafkaProducer(**client_options(settings), linger_ms=5), settings) as p:
        for n in range(count):
            record = to_record(task_event(n))
            size = len(record.value)
            await p.send(topic, record.value, key=record.key, headers=record.headers)
        await p.flush()
    return size


def worker_settings(names: TopicNames) -> WorkerSettings:
    return WorkerSettings(topic_prefix=names.prefix, instance=f"bench-{uuid.uuid4().hex[:6]}",
                          http_port=0)  # fmt: skip


async def worker_throughput(settings: KafkaSettings, count: int) -> tuple[float, int]:
    names = TopicNames(prefix=f"bw{uuid.uuid4().hex[:6]}.")
    async with scratch(settings, names, []):
        size = await fill(settings, names.tasks("noop"), count)
        worker = Worker(load_agent(NOOP), RuleEngine(), kafka=settings,
                        settings=worker_settings(names))  # fmt: skip
        reader = asyncio.create_task(count_until(settings, names.results, count))
        running = asyncio.create_task(worker.run())
        while not worker.assignments:  # warm, joined, and holding its partitions
            await asyncio.sleep(0.005)
        started = time.monotonic()
        finished = await reader
        worker.request_stop()
        await running
    return count / (finished - started), size


async def raw_throughput(settings: KafkaSettings, count: int) -> float:
    names = TopicNames(prefix=f"br{uuid.uuid4().hex[:6]}.")
    echo = f"{names.prefix}echo"
    async with scratch(settings, names, [echo]):
        await fill(settings, names.tasks("noop"), count)
        options = client_options(settings)
        consumer = AIOKafkaConsumer(
            names.tasks("noop"), **options, group_id=f"{names.prefix}raw",
            auto_offset_reset="earliest", enable_auto_commit=False,
        )  # fmt: skip
        reader = asyncio.create_task(count_until(settings, echo, count))
        async with (connected(AIOKafkaProducer(**options, acks="all"), settings) as producer,
                    connected(consumer, settings)):  # fmt: skip
            await consumer.getmany(timeout_ms=0)  # join before the clock starts, as the worker did
            while not consumer.assignment():
                await asyncio.sleep(0.005)
            started = time.monotonic()
            await raw_echo(consumer, producer, echo, count)
            # The same end as the worker's: when a reader has every output record.
            finished = await reader
    return count / (finished - started)


async def paced(settings: KafkaSettings, topic: str, rate: float, seconds: float,
                make: Any) -> dict[bytes, float]:  # fmt: skip
    sent: dict[bytes, float] = {}
    async with connected(AIOKafkaProducer(**client_options(settings)), settings) as producer:
        for n in range(int(rate * seconds)):
            ident, value, key, headers = make(n)
            sent[ident] = time.monotonic()
            await producer.send_and_wait(topic, value, key=key, headers=headers)
            await asyncio.sleep(1 / rate)
    return sent


HOP_STAGES = ("fetch", "handler", "publish", "commit")
"""A worker hop's parts, per task, from its trace (breakdown.py): task sent -> handler start
(produce, broker, the worker's fetch), the handler, handler end -> the result's send in a
transaction (``publish``), and that send -> the result read, read_committed (the commit: add
partitions and offsets, commit the offsets, end the transaction, the markers, a fetch)."""


async def worker_latency(
    settings: KafkaSettings, rate: float, seconds: float
) -> tuple[list[float], list[dict[str, float]]]:
    names = TopicNames(prefix=f"lw{uuid.uuid4().hex[:6]}.")
    async with scratch(settings, names, []):
        return await _worker_latency(settings, names, rate, seconds)


async def _worker_latency(
    settings: KafkaSettings, names: TopicNames, rate: float, seconds: float
) -> tuple[list[float], list[dict[str, float]]]:
    worker = Worker(load_agent(NOOP), RuleEngine(), kafka=settings, settings=worker_settings(names))
    running = asyncio.create_task(worker.run())
    while not worker.health.warm:
        await asyncio.sleep(0.01)
    received: dict[bytes, float] = {}
    traced: dict[str, dict[str, float]] = {}
    """By trace id: the result record's timestamp, its event's creation and handler time, and
    when it was read (wall clock, seconds)."""
    total = int(rate * seconds)

    async def collect() -> None:
        consumer = AIOKafkaConsumer(
            names.results,
            **client_options(settings),
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        async with connected(consumer, settings):
            while len(received) < total:
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    now, wall = time.monotonic(), time.time()
                    for r in records:
                        result = decode(r.value, ResultEvent)
                        received[result.task_id.bytes] = now
                        trace = trace_id(r.headers)
                        if trace is not None:
                            traced[trace] = {
                                "sent": r.timestamp / 1000, "seen": wall,
                                "created": result.created_at.timestamp(),
                                "handler": result.duration_ms / 1000,
                            }  # fmt: skip

    tasks: dict[bytes, tuple[str, float]] = {}

    def make(n: int) -> tuple[bytes, bytes, bytes | None, list[tuple[str, bytes]]]:
        event = task_event(n)
        record = to_record(event)
        tasks[event.event_id.bytes] = (trace_id(record.headers) or "", time.time())
        return event.event_id.bytes, record.value, record.key, record.headers

    collector = asyncio.create_task(collect())
    sent = await paced(settings, names.tasks("noop"), rate, seconds, make)
    await asyncio.wait_for(collector, 60)
    worker.request_stop()
    await running
    stages = [hop_stages(at, traced[trace]) for trace, at in tasks.values() if trace in traced]
    return [(received[k] - sent[k]) * 1000 for k in sent], stages


def hop_stages(sent: float, result: dict[str, float]) -> dict[str, float]:
    """One task's hop by HOP_STAGES, in ms."""
    started = result["created"] - result["handler"]
    return {
        "fetch": (started - sent) * 1000,
        "handler": result["handler"] * 1000,
        "publish": (result["sent"] - result["created"]) * 1000,
        "commit": (result["seen"] - result["sent"]) * 1000,
    }


async def peak_rss_mb(settings: KafkaSettings, engine: str) -> float | None:
    if engine == "llama" and importlib.util.find_spec("llama_cpp") is None:
        return None
    names = TopicNames(prefix=f"m{uuid.uuid4().hex[:6]}.")
    async with scratch(settings, names, []):
        return await _peak_rss_mb(settings, names, engine)


async def _peak_rss_mb(settings: KafkaSettings, names: TopicNames, engine: str) -> float:
    await fill(settings, names.tasks("noop"), 500)
    env = {**os.environ, "EXPEDITER_BOOTSTRAP": settings.bootstrap, "EXPEDITER_HTTP_PORT": "0",
           "EXPEDITER_TOPIC_PREFIX": names.prefix, "EXPEDITER_ENGINE_KIND": engine}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "expediter.cli", "worker", str(NOOP)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        await asyncio.wait_for(count_until(settings, names.results, 500), 300)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peak_kb = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")
        )
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return round(peak_kb / 1024, 1)


async def main(args: argparse.Namespace) -> None:
    event_loop = looping.loop_kind(WorkerSettings().event_loop)
    async with provided_broker(DevSettings(dir=Path(".expediter/bench"))) as broker:
        settings = broker.settings
        emit({"broker": broker.kind, "version": broker.version, "bootstrap": broker.bootstrap,
              "event_loop": event_loop})  # fmt: skip
        # Worker and raw take turns, and the medians count: the machines are shared, and a
        # neighbour's burst during one phase would otherwise decide the ratio.
        worker_rates, raw_rates = [], []
        for n in range(args.rounds):
            worker_rate, size = await worker_throughput(settings, args.tasks)
            raw_rate = await raw_throughput(settings, args.tasks)
            worker_rates.append(worker_rate)
            raw_rates.append(raw_rate)
            emit({"phase": "throughput", "round": n + 1, "task_bytes": size,
                  "worker_per_s": round(worker_rate), "raw_echo_per_s": round(raw_rate),
                  "ratio": round(worker_rate / raw_rate, 3)})  # fmt: skip
        worker_rate, raw_rate = statistics.median(worker_rates), statistics.median(raw_rates)
        hops, hop_parts = await worker_latency(settings, args.rate, args.seconds)
        w50, w99 = percentiles(hops)
        count = int(args.rate * args.seconds)
        raw = await raw_one_way(settings, partitions=PARTITIONS, rate=args.rate, count=count)
        r50, r99 = percentiles(raw)
        echo = await exactly_once_echo(settings, partitions=PARTITIONS, rate=args.rate, count=count)
        f50, f99 = percentiles(echo)
        parts = medians(hop_parts)
        emit({"phase": "latency", "worker_p50_ms": round(w50, 2), "worker_p99_ms": round(w99, 2),
              "raw_p50_ms": round(r50, 2), "raw_p99_ms": round(r99, 2),
              "floor_p50_ms": round(f50, 2), "floor_p99_ms": round(f99, 2),
              "hop_stages_p50_ms": parts, "traced": len(hop_parts)})  # fmt: skip
        rss = await peak_rss_mb(settings, "rules")
        rss_llama = None if args.no_model else await peak_rss_mb(settings, "llama")
        emit(
            {
                "bench": "worker",
                "tasks": args.tasks,
                "rounds": args.rounds,
                "event_loop": event_loop,
                "task_bytes": size,
                "worker_per_s": round(worker_rate),
                "raw_echo_per_s": round(raw_rate),
                "throughput_ratio": round(worker_rate / raw_rate, 3),
                "worker_p50_ms": round(w50, 2),
                "worker_p99_ms": round(w99, 2),
                "raw_p50_ms": round(r50, 2),
                "raw_p99_ms": round(r99, 2),
                "latency_ratio": round(w50 / r50, 3),
                "floor_p50_ms": round(f50, 2),
                "floor_p99_ms": round(f99, 2),
                "floor_vs_raw": round(f50 / r50, 3),
                "latency_vs_floor": round(w50 / f50, 3),
                "hop_stages_p50_ms": {name: parts.get(name) for name in HOP_STAGES},
                "peak_rss_mb_no_model": rss,
                "peak_rss_mb_gemma": rss_llama,
                "ratio": round(worker_rate / raw_rate, 3),
            }
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds (medians)")
    parser.add_argument("--rate", type=float, default=20.0, help="tasks per second, latency phase")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the latency phase")
    parser.add_argument("--no-model", action="store_true", help="skip the Gemma RSS measurement")
    looping.run(main(parser.parse_args()), WorkerSettings().event_loop)
