"""The chaos tier's broker: a local broker of its own that a test may stop and restart.

The session-wide ``kafka`` fixture is shared by every other test, so stopping it would break
them. ``chaos_broker`` is a dedicated :class:`~expediter.dev.LocalBroker` for this folder (always
the local one, Docker or not: an outage needs a process this test owns, by PID). Each test gets it
running; :meth:`ChaosBroker.outage` SIGTERMs it, keeps it down, and starts it again on the same
data and ports, as an operator restarting a broker would.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from expediter.dev import BrokerState, LocalBroker
from expediter.messaging import client_options, connected
from expediter.settings import DevSettings, KafkaSettings
from tests.support import ROOT

Records = list[ConsumerRecord[bytes, bytes]]


class ChaosBroker:
    """A running local broker that a test may take down and bring back on the same data."""

    def __init__(self, local: LocalBroker, state: BrokerState) -> None:
        self.local = local
        self.state = state
        self.outages: list[float] = []
        """How long each outage kept the broker down, in seconds (measured)."""

    @property
    def bootstrap(self) -> str:
        return self.state.bootstrap

    @property
    def settings(self) -> KafkaSettings:
        return self.state.settings()

    @property
    def pid(self) -> int:
        return self.state.pid

    async def stop(self) -> None:
        """SIGTERM the broker (its PID only) and wait until it has exited."""
        assert await self.local.stop(), "the chaos broker was not running"

    async def start(self) -> None:
        """Start it again on the same data and ports; fails if the ports moved."""
        state = await self.local.start(timeout=DevSettings().start_timeout, keep=True)
        assert state.bootstrap == self.state.bootstrap, "a kept broker must keep its ports"
        self.state = state

    @asynccontextmanager
    async def down(self) -> AsyncIterator[None]:
        """The broker is stopped inside the block and running again after it."""
        await self.stop()
        stopped = time.monotonic()
        try:
            yield
        finally:
            await self.start()
            self.outages.append(time.monotonic() - stopped)

    async def outage(self, seconds: float) -> None:
        """Stop the broker, keep it down ``seconds``, and start it on the same data and ports."""
        async with self.down():
            await asyncio.sleep(seconds)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def _chaos_local(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalBroker]:
    local = LocalBroker(tmp_path_factory.mktemp("chaos-kafka"), heap_mb=DevSettings().kafka_heap_mb)
    await local.start(timeout=DevSettings().start_timeout)
    try:
        yield local
    finally:
        await local.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def chaos_broker(_chaos_local: LocalBroker) -> ChaosBroker:
    """The module's dedicated broker, running (started again if a test left it down)."""
    state = await _chaos_local.start(timeout=DevSettings().start_timeout, keep=True)
    return ChaosBroker(_chaos_local, state)


async def read_for(
    settings: KafkaSettings, topic: str, *, until: Callable[[Records], bool], timeout: float
) -> Records:
    """Committed records of ``topic`` from the start until ``until(records)`` or ``timeout``:
    unlike tests.support.read, running out of time returns what came, for the counts to say
    what is missing."""
    consumer = AIOKafkaConsumer(
        topic, **client_options(settings), auto_offset_reset="earliest",
        isolation_level="read_committed", enable_auto_commit=False,
    )  # fmt: skip
    records: Records = []
    deadline = time.monotonic() + timeout
    async with connected(consumer, settings):
        while not until(records) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
    return records


async def committed_offsets(settings: KafkaSettings, group: str) -> dict[tuple[str, int], int]:
    """The offsets ``group`` committed, by (topic, partition): what it acknowledged."""
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        offsets = await admin.list_consumer_group_offsets(group)
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn_expediter(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``expediter <args>`` as a process of its own, stdout and stderr into ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "expediter.cli", *args], cwd=ROOT, env={**os.environ, **env},
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started; any still running at the end are killed (by their PID)."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/chaos/" in str(item.path):
            item.add_marker(pytest.mark.chaos)
