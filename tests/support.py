"""Helpers the worker tests share: topics under a prefix, producing tasks, reading results."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

from expediter.events import Producer, TaskEvent, to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.settings import KafkaSettings

TEST_PRODUCER = Producer(name="tests", version="0")


async def create_topics(
    settings: KafkaSettings, names: TopicNames, capability: str, *, partitions: int = 3
) -> None:
    compact = {"cleanup.policy": "compact"}
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        await admin.create_topics(
            [
                NewTopic(names.tasks(capability), partitions, 1),
                NewTopic(names.results, partitions, 1),
                NewTopic(names.dlq(capability), 1, 1),
                NewTopic(names.registry, 1, 1, topic_configs=compact),
                NewTopic(names.ledger, 1, 1, topic_configs=compact),
            ]
        )


def task(n: int, workflow: str, capability: str = "probe", **payload: Any) -> TaskEvent:
    return TaskEvent(
        producer=TEST_PRODUCER, workflow_id=workflow, step_id=f"step-{n}", capability=capability,
        input={"n": n, **payload},
    )  # fmt: skip


async def produce(
    settings: KafkaSettings,
    topic: str,
    events: Iterable[TaskEvent],
    raw: Iterable[tuple[bytes | None, bytes]] = (),
) -> None:
    async with connected(AIOKafkaProducer(**client_options(settings)), settings) as producer:
        for event in events:
            record = to_record(event)
            await producer.send(topic, record.value, key=record.key, headers=record.headers)
        for key, value in raw:
            await producer.send(topic, value, key=key)
        await producer.flush()


async def read(
    settings: KafkaSettings,
    topic: str,
    *,
    until: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    timeout: float = 60.0,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Committed records of ``topic`` from the start, until ``until(records)`` holds."""
    consumer = AIOKafkaConsumer(
        topic, **client_options(settings), auto_offset_reset="earliest",
        isolation_level="read_committed", enable_auto_commit=False,
    )  # fmt: skip
    records: list[ConsumerRecord[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    async with connected(consumer, settings):
        while not until(records):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{topic}: condition not met after {timeout:.0f}s with {len(records)} records"
                )
            batches = await consumer.getmany(timeout_ms=300)
            for batch in batches.values():
                records.extend(batch)
    return records


async def settle(seconds: float = 1.0) -> None:
    """Give a transaction or a rebalance time to show (for "nothing more arrives" checks)."""
    await asyncio.sleep(seconds)


ROOT = Path(__file__).resolve().parents[1]


def cli(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``expediter <args>`` as a separate process from the repository root; output captured."""
    return subprocess.run(
        [sys.executable, "-m", "expediter.cli", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``expediter <args>`` started in the background, stdout and stderr into ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "expediter.cli", *args], cwd=ROOT, env=env,
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def terminate(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """SIGTERM ``proc`` and wait; past ``timeout`` it is killed (no process outlives a test)."""
    proc.terminate()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{proc.args}: still running {timeout:.0f}s after SIGTERM") from None
