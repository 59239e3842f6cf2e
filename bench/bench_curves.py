"""Bench: the worker's throughput curve over partitions and processes, against raw aiokafka.

For each task topic of 1, 2 and 4 partitions, ``expediter worker`` runs as 1 and as 2
processes (separate interpreters, one consumer group, as ``expediter up`` or a Deployment runs
them) with the no-op agent. Once the group is Stable with every process in it, ``--tasks``
~300-byte tasks (encoded beforehand) are produced, and the clock runs from the first send
until a read_committed reader has every result: a pipeline's throughput, the produce
included. The baseline in the same run is a raw aiokafka echo loop (one consumer, its own
group, joined before the first send, produce-and-commit per batch, no transactions) timed the
same way on a topic with the same partitions.

Each point prints one JSON line: tasks/s both ways, their ratio, and ``last_join_seconds``, the
last process's time from its start to a Stable group holding it (processes start one after
another, so with 2 it is a replica joining a group that has a member: the scale-up case). The
last line's ``ratio`` is the 4-partition, 2-process worker over the raw echo on 4 partitions. On
a 2-core machine the broker, the producer, the reader and the workers share the cores, so a
second process can only show how much of a core the first left idle; the curve means more on a
machine with cores to spare.

    .venv/bin/python bench/bench_curves.py [--tasks 5000] [--partitions 1,2,4] [--processes 1,2]
                                     [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from common import agent_topics, count_until, emit, raw_echo, scratch_topics, task_event

from expediter.dev import provided_broker
from expediter.events import OutgoingRecord, to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.settings import DevSettings, KafkaSettings

NOOP = Path(__file__).resolve().parent / "agents" / "noop.py"
JOIN_TIMEOUT = 120.0


@contextlib.asynccontextmanager
async def topics(settings: KafkaSettings, names: TopicNames, partitions: int) -> AsyncIterator[str]:
    """A point's topics (tasks, results, dlq, registry, echo), deleted after it; yields echo."""
    echo = f"{names.prefix}echo"
    created = [*agent_topics(names, "noop", partitions), NewTopic(echo, partitions, 1)]
    async with scratch_topics(settings, created):
        yield echo


def encoded(count: int) -> list[OutgoingRecord]:
    """The tasks, encoded before any clock starts: the curve is the consumers', not the codec's."""
    return [to_record(task_event(n)) for n in range(count)]


async def produce(settings: KafkaSettings, topic: str, records: list[OutgoingRecord]) -> None:
    async with connected(AIOKafkaProducer(**client_options(settings), linger_ms=5), settings) as p:
        for record in records:
            await p.send(topic, record.value, key=record.key, headers=record.headers)
        await p.flush()


async def stable_members(settings: KafkaSettings, group: str) -> int:
    """How many members the group has while it is Stable (0 while it rebalances or is empty)."""
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        (described,) = await admin.describe_consumer_groups([group])
    (found,) = described.groups
    _error, _group, state, _protocol_type, _protocol, members = found[:6]
    return len(members) if state == "Stable" else 0


async def timed(settings: KafkaSettings, tasks: str, out: str, count: int) -> float:
    """Tasks per second from the first send until every output record is read."""
    records = encoded(count)
    reader = asyncio.create_task(count_until(settings, out, count))
    started = time.monotonic()
    await produce(settings, tasks, records)
    return count / (await reader - started)


def spawn(env: dict[str, str], log: Path, instance: str) -> subprocess.Popen[bytes]:
    """``expediter worker`` on the no-op agent, its stderr to ``log``."""
    command = [sys.executable, "-m", "expediter.cli", "worker", str(NOOP), "--instance", instance]
    with log.open("wb") as err:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)


async def worker_point(
    settings: KafkaSettings, partitions: int, processes: int, count: int, logs: Path
) -> tuple[float, float]:
    """Tasks per second, and the seconds the last process took from its start to a Stable
    group that holds it (a replica joining a group that already has members)."""
    names = TopicNames(prefix=f"bc{uuid.uuid4().hex[:6]}.")
    env = {
        **os.environ, "EXPEDITER_BOOTSTRAP": settings.bootstrap,
        "EXPEDITER_TOPIC_PREFIX": names.prefix, "EXPEDITER_HTTP_PORT": "0",
    }  # fmt: skip
    workers: list[subprocess.Popen[bytes]] = []
    async with topics(settings, names, partitions):
        try:
            joined = 0.0
            for n in range(processes):
                workers.append(spawn(env, logs / f"{names.prefix}w{n}.log", f"w{n}"))
                started = time.monotonic()
                while await stable_members(settings, names.group("noop")) < n + 1:
                    if started + JOIN_TIMEOUT < time.monotonic() or workers[-1].poll() is not None:
                        raise SystemExit(f"the workers did not join; logs under {logs}")
                    await asyncio.sleep(0.05)
                joined = time.monotonic() - started
            return await timed(settings, names.tasks("noop"), names.results, count), joined
        finally:
            for w in workers:
                w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(60)


async def raw_point(settings: KafkaSettings, partitions: int, count: int) -> float:
    names = TopicNames(prefix=f"bcr{uuid.uuid4().hex[:6]}.")
    async with topics(settings, names, partitions) as echo:
        options = client_options(settings)
        consumer = AIOKafkaConsumer(
            names.tasks("noop"), **options, group_id=f"{names.prefix}raw",
            auto_offset_reset="earliest", enable_auto_commit=False,
        )  # fmt: skip
        async with (connected(AIOKafkaProducer(**options, acks="all"), settings) as producer,
                    connected(consumer, settings)):  # fmt: skip
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            echoing = asyncio.create_task(raw_echo(consumer, producer, echo, count))
            try:
                return await timed(settings, names.tasks("noop"), echo, count)
            finally:
                await echoing


async def main(args: argparse.Namespace) -> None:
    partitions = [int(p) for p in args.partitions.split(",")]
    processes = [int(p) for p in args.processes.split(",")]
    logs = Path(tempfile.mkdtemp(prefix="bench_curves-"))
    last: dict[str, float] = {}
    async with provided_broker(DevSettings()) as broker:
        for p in partitions:
            for n in processes:
                # Worker and raw take turns, on fresh topics each round; medians of the rounds.
                rounds = [
                    (await raw_point(broker.settings, p, args.tasks),
                     *await worker_point(broker.settings, p, n, args.tasks, logs))
                    for _ in range(args.rounds)
                ]  # fmt: skip
                raw, worker, joined = (
                    statistics.median(column) for column in zip(*rounds, strict=True)
                )
                last = {"partitions": p, "processes": n, "worker_tasks_per_s": round(worker),
                        "raw_tasks_per_s": round(raw), "last_join_seconds": round(joined, 2),
                        "ratio": round(worker / raw, 3)}  # fmt: skip
                emit({"bench": "curves_point", **last})
    # The workers' logs are kept only when a point fails (its message names the folder).
    shutil.rmtree(logs, ignore_errors=True)
    emit({"bench": "curves", "tasks": args.tasks, **last})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per point")
    parser.add_argument("--partitions", default="1,2,4", help="task topic partition counts")
    parser.add_argument("--processes", default="1,2", help="worker process counts")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per point (medians)")
    asyncio.run(main(parser.parse_args()))
