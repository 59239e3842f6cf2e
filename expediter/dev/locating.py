"""Finding a real Kafka broker: one code path, three ways, in a fixed order.

1. ``EXPEDITER_BOOTSTRAP`` is set: use that cluster, start nothing.
2. A Docker engine answers: testcontainers' KafkaContainer (for tests).
3. Otherwise: a :class:`~expediter.dev.running.LocalBroker` from Maven Central jars.

Called by the tests' session fixture and by ``expediter demo``. ``expediter dev kafka start``
follows the same order but uses docker-compose.yml rather than testcontainers on Docker, so
that people get the same broker the compose file's services talk to.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from expediter.dev.running import LocalBroker, ScramUser
from expediter.messaging import wait_for_broker
from expediter.settings import DevSettings, KafkaSettings

__all__ = ["Broker", "BrokerKind", "choose_kind", "docker_available", "provided_broker"]

BrokerKind = Literal["external", "docker", "local"]


@dataclass(frozen=True)
class Broker:
    """A broker someone can connect to, and how it was obtained."""

    kind: BrokerKind
    settings: KafkaSettings
    version: str
    """The broker's Apache Kafka version, or "unknown" for an external cluster."""
    sasl_bootstrap: str | None = None
    """The SASL_PLAINTEXT (SCRAM) listener, when the local broker was asked for one."""
    log: str | None = None

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap


def docker_available() -> bool:
    """True when a Docker engine answers, not merely when the client is installed."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        probe = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def choose_kind(env: Mapping[str, str] | None = None) -> BrokerKind:
    env = os.environ if env is None else env
    if env.get("EXPEDITER_BOOTSTRAP"):
        return "external"
    if env.get("EXPEDITER_NO_DOCKER") != "1" and docker_available():
        return "docker"
    return "local"


@asynccontextmanager
async def provided_broker(
    dev: DevSettings,
    *,
    scram_users: Sequence[ScramUser] = (),
    state_dir: Path | None = None,
    kind: BrokerKind | None = None,
) -> AsyncIterator[Broker]:
    """Yield a broker that answers, and stop it afterwards if this call started it."""
    kind = kind or choose_kind()
    if kind == "external":
        settings = KafkaSettings()
        await wait_for_broker(settings, timeout=dev.start_timeout)
        yield Broker(kind="external", settings=settings, version="unknown")
    elif kind == "docker":
        async with _container() as broker:
            yield broker
    else:
        local = LocalBroker(
            state_dir or dev.dir / "kafka", scram_users=scram_users, heap_mb=dev.kafka_heap_mb
        )
        # A broker someone started with `expediter dev kafka start` is theirs to stop.
        ours = local.status() is None
        try:
            state = await local.start(timeout=dev.start_timeout)
            yield Broker(
                kind="local",
                settings=state.settings(),
                version=state.version,
                sasl_bootstrap=state.sasl_bootstrap,
                log=state.log,
            )
        finally:
            if ours:
                await local.stop()


@asynccontextmanager
async def _container() -> AsyncIterator[Broker]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers before the community split
        from testcontainers.kafka import KafkaContainer
    container: Any = KafkaContainer().with_kraft()
    container.start()
    try:
        settings = KafkaSettings(bootstrap=container.get_bootstrap_server())
        await wait_for_broker(settings)
        yield Broker(kind="docker", settings=settings, version=f"container {container.image}")
    finally:
        container.stop()


def compose_file() -> Path:
    """docker-compose.yml at the repository root (the working directory when run by make)."""
    return Path("docker-compose.yml").absolute()


COMPOSE_BOOTSTRAP = "127.0.0.1:9092"
"""Where docker-compose.yml publishes the broker's host listener."""
