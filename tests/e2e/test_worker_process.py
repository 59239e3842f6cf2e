"""`expediter worker` as a process: SIGTERM drains, kill -9 loses nothing and duplicates
nothing, a crashed internal task exits non-zero, and a hung drain is ended by the deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import pytest_asyncio

from expediter.dev import Broker
from expediter.events import ResultEvent, decode
from expediter.messaging import TopicNames
from tests.support import create_topics, produce, read, settle, task

PROBE = str(Path(__file__).resolve().parents[1] / "agents" / "probe.py")
pytestmark = pytest.mark.slow


@pytest_asyncio.fixture
async def names(kafka: Broker) -> TopicNames:
    names = TopicNames(prefix=f"p{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe", partitions=4)
    return names


def spawn(kafka: Broker, names: TopicNames, instance: str, **env: str) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "EXPEDITER_BOOTSTRAP": kafka.bootstrap,
        "EXPEDITER_TOPIC_PREFIX": names.prefix,
        "EXPEDITER_HTTP_PORT": "0",
        "EXPEDITER_SESSION_TIMEOUT_MS": "6000",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "expediter.cli", "worker", PROBE, "--instance", instance],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


async def exit_code(proc: subprocess.Popen[str], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"still running after {timeout}s:\n{proc.communicate()[0]}")
        await asyncio.sleep(0.1)
    return proc.returncode


def unique_results(records: list[object]) -> Counter[uuid.UUID]:
    return Counter(decode(r.value, ResultEvent).task_id for r in records)  # type: ignore[attr-defined]


async def test_kill_9_mid_batch_loses_nothing_and_applies_nothing_twice(
    kafka: Broker, names: TopicNames
) -> None:
    events = [task(n, f"wf-{n % 20}", sleep=0.02) for n in range(200)]
    await produce(kafka.settings, names.tasks("probe"), events)
    first = spawn(kafka, names, "worker-a")
    try:
        await read(kafka.settings, names.results, until=lambda r: len(r) >= 30, timeout=90)
    finally:
        first.send_signal(signal.SIGKILL)
    assert await exit_code(first, 10) == -signal.SIGKILL
    second = spawn(kafka, names, "worker-a")  # same instance: fences the dead one's transaction
    try:
        records = await read(
            kafka.settings, names.results, until=lambda r: len(r) >= 200, timeout=120
        )
        await settle(3.0)
        records = await read(kafka.settings, names.results, until=lambda r: len(r) >= 200)
    finally:
        second.send_signal(signal.SIGTERM)
    assert await exit_code(second, 60) == 0
    counts = unique_results(records)
    assert set(counts) == {e.event_id for e in events}, "a task was lost"
    assert max(counts.values()) == 1, "a result was committed twice"
    assert len(records) == 200


async def test_sigterm_drains_in_flight_tasks_and_exits_0(kafka: Broker, names: TopicNames) -> None:
    events = [task(n, f"wf-{n}", sleep=1.5) for n in range(4)]
    proc = spawn(kafka, names, "drainer", EXPEDITER_DRAIN_SECONDS="20")
    try:
        await asyncio.sleep(0.5)
        await produce(kafka.settings, names.tasks("probe"), events)
        await asyncio.sleep(4.0)  # joined and started the tasks, which take 1.5 s each
    finally:
        proc.send_signal(signal.SIGTERM)
    code = await exit_code(proc, 30)
    output = proc.communicate()[0]
    assert code == 0, output
    assert "draining" in output
    records = await read(kafka.settings, names.results, until=lambda r: len(r) >= 4)
    assert set(unique_results(records)) == {e.event_id for e in events}


async def test_a_crashed_internal_task_exits_non_zero(kafka: Broker, names: TopicNames) -> None:
    await produce(kafka.settings, names.tasks("probe"), [task(1, "wf-boom", mode="boom")])
    proc = spawn(kafka, names, "crasher")
    code = await exit_code(proc, 60)
    output = proc.communicate()[0]
    assert code != 0, output
    assert "Boom" in output


async def test_the_hard_deadline_ends_a_drain_that_hangs(kafka: Broker, names: TopicNames) -> None:
    proc = spawn(
        kafka, names, "hanger", EXPEDITER_DRAIN_SECONDS="1", EXPEDITER_HARD_DEADLINE_SECONDS="1"
    )
    try:
        await produce(kafka.settings, names.tasks("probe"), [task(1, "wf-block", mode="block")])
        await asyncio.sleep(8.0)  # joined, and the handler now blocks the event loop
    finally:
        proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = await exit_code(proc, 20)
    assert code == 70, proc.communicate()[0]
    assert time.monotonic() - started < 6
