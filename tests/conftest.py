"""Shared fixtures. The ``kafka`` fixture is a real Apache Kafka broker for the whole session.

It is found the way docs/architecture.md orders it (EXPEDITER_BOOTSTRAP, else Docker, else a
local KRaft broker from Maven jars; see expediter.dev.locating). A broker that cannot start is an
error, never a skip: the error carries the broker's log.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from expediter.dev import Broker, ScramUser, provided_broker
from expediter.settings import DevSettings

SCRAM_USER = ScramUser(name="agent", password="agent-pass", mechanism="SCRAM-SHA-512")
"""Added to the local broker at format time, for the SASL_PLAINTEXT tests. Test-only."""


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Broker]:
    state_dir = tmp_path_factory.mktemp("kafka")
    async with provided_broker(DevSettings(), scram_users=[SCRAM_USER], state_dir=state_dir) as b:
        yield b


@pytest.fixture
def topic_name() -> str:
    """A topic name no other test uses, so tests can share one broker."""
    return f"test.{uuid.uuid4().hex[:12]}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use the broker are integration tests whether or not their folder says so.
    for item in items:
        if "kafka" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # CI must not go green on an empty run (pytest's own exit code 5 covers most cases, but a
    # `-k` that deselects everything would still pass).
    if os.environ.get("CI") == "true" and session.testscollected == 0:
        session.exitstatus = 5
