"""Running a single-node KRaft Apache Kafka broker from the cached Maven jars.

:class:`LocalBroker` formats a fresh log directory, starts ``kafka.Kafka`` under the local Java as
a process of its own, bound to 127.0.0.1 on free ports, and waits until it answers. Its state
(PID, addresses, version, log path) goes to ``state.json`` in the state directory, so that
another process (``expediter dev kafka status|stop``) can find it and stop it, and nobody else's.
What the storage was formatted with (addresses, version, users) goes to ``layout.json``, which
outlives a stop: ``start(keep=True)`` starts the broker again on the same data and ports, as an
operator restarting a broker would (``expediter dev kafka start --keep``, the chaos tests).
Called by :mod:`expediter.dev.locating`, the CLI and the tests' fixtures.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Literal

from expediter.dev.fetching import KAFKA_VERSION, fetch_kafka, require_tool
from expediter.errors import BrokerUnavailableError, LocalBrokerError
from expediter.messaging import api_versions, wait_for_broker
from expediter.settings import KafkaSettings

__all__ = ["BrokerState", "LocalBroker", "ScramUser"]

ScramMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class ScramUser:
    """A SCRAM user added when the broker's storage is formatted."""

    name: str
    password: str
    mechanism: ScramMechanism = "SCRAM-SHA-512"

    def __post_init__(self) -> None:
        for part in (self.name, self.password):
            if not part or any(c in part for c in ",=[]\"'"):
                raise LocalBrokerError(
                    f"SCRAM user {self.name!r}: names and passwords must be non-empty and free "
                    "of , = [ ] and quotes (Kafka's --add-scram syntax cannot escape them)"
                )


@dataclass(frozen=True)
class BrokerState:
    """What ``state.json`` records about a running local broker."""

    pid: int
    bootstrap: str
    version: str
    log: str
    started_at: float
    sasl_bootstrap: str | None = None
    scram_users: list[str] = field(default_factory=list)

    def settings(self) -> KafkaSettings:
        """Settings for the PLAINTEXT listener."""
        return KafkaSettings(bootstrap=self.bootstrap)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the JVM binds its listeners: a closed connection in TIME_WAIT does not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cluster_id() -> str:
    # Kafka's own Uuid.randomUuid never starts with '-': kafka-storage's parser would take such
    # an id for an option ("--cluster-id: expected one argument"), one start in 64.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _is_our_broker(pid: int, config: Path) -> bool:
    """True when ``pid`` is alive and runs kafka.Kafka with our config: a reused PID is not."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"kafka.Kafka" in cmdline and str(config).encode() in cmdline


class LocalBroker:
    """A throwaway single-node Kafka broker for development and tests.

    ``start()`` and ``stop()`` are idempotent; ``async with`` starts and stops it. A start finds
    and reuses a broker already running from the same state directory. ``start()`` wipes the
    state directory and formats fresh storage; ``start(keep=True)`` starts on the data, cluster
    id and ports of the last start instead, and fails (naming the fix) when there is none.
    ``restart(down_seconds)`` is stop, a pause, and ``start(keep=True)``: a broker outage.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        version: str = KAFKA_VERSION,
        scram_users: Sequence[ScramUser] = (),
        heap_mb: int = 512,
        port: int | None = None,
        cache: Path | None = None,
    ) -> None:
        self.state_dir = state_dir.absolute()
        self.version = version
        self.scram_users = tuple(scram_users)
        self.heap_mb = heap_mb
        self.port = port
        self.cache = cache
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def _state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def _config(self) -> Path:
        return self.state_dir / "server.properties"

    @property
    def _layout_file(self) -> Path:
        return self.state_dir / "layout.json"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "broker.log"

    def status(self) -> BrokerState | None:
        """The state of the broker running from this state directory, or None."""
        try:
            state = BrokerState(**json.loads(self._state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        return state if _is_our_broker(state.pid, self._config) else None

    async def start(self, timeout: float = 120.0, *, keep: bool = False) -> BrokerState:
        """Start the broker, or return the one already running from this state directory.

        ``keep=True`` starts on the data and ports the last start formatted, rather than
        wiping them: what was committed before a stop is there after it.
        """
        running = self.status()
        if running is not None:
            return running
        java = require_tool("java")
        libs = await asyncio.to_thread(fetch_kafka, self.version, cache=self.cache)
        classpath = f"{libs}/*"
        if keep:
            state = self._kept()
        else:
            state = await asyncio.to_thread(self._prepare)
            await asyncio.to_thread(self._format, java, classpath)
            self._layout_file.write_text(json.dumps(asdict(state), indent=2))
        with self.log_path.open("ab") as log:
            # Popen returns at once; the broker outlives this process, so no asyncio subprocess.
            self._proc = subprocess.Popen(  # noqa: ASYNC220
                [
                    java,
                    f"-Xmx{self.heap_mb}m",
                    f"-Xms{min(self.heap_mb, 256)}m",
                    "-Djava.awt.headless=true",
                    f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.properties'}",
                    "-cp", classpath,
                    "kafka.Kafka",
                    str(self._config),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C on `expediter dev kafka start` must not reach it.
                start_new_session=True,
            )  # fmt: skip
        state = BrokerState(**{**asdict(state), "pid": self._proc.pid, "started_at": time.time()})
        try:
            await self._wait_ready(state, timeout)
        except BaseException:
            self._kill()
            raise
        self._state_file.write_text(json.dumps(asdict(state), indent=2))
        return state

    def _kept(self) -> BrokerState:
        """The layout of the last start, checked against this instance's arguments."""
        try:
            state = BrokerState(**json.loads(self._layout_file.read_text()))
        except (OSError, ValueError, TypeError):
            state = None
        data = self.state_dir / "data"
        if state is None or not (data / "meta.properties").is_file() or not self._config.is_file():
            raise LocalBrokerError(
                f"--keep: no broker data to keep in {self.state_dir} (never started here, or "
                "wiped); start without --keep to format a fresh broker"
            )
        _, _, port = state.bootstrap.rpartition(":")
        if self.port is not None and self.port != int(port):
            raise LocalBrokerError(
                f"--keep: the kept broker listens on port {port}, not {self.port}; drop --port "
                "(a kept broker keeps its ports) or start without --keep"
            )
        if state.version != self.version:
            raise LocalBrokerError(
                f"--keep: the kept data was written by Kafka {state.version}, not "
                f"{self.version}; start without --keep to format a fresh broker"
            )
        users = [user.name for user in self.scram_users]
        if users and users != state.scram_users:
            raise LocalBrokerError(
                f"--keep: SCRAM users are set when the storage is formatted; the kept broker "
                f"has {state.scram_users or 'none'}; start without --keep to change them"
            )
        if not _port_free(int(port)):
            raise LocalBrokerError(
                f"--keep: port {port}, where the kept broker listens, is taken by another "
                "process; stop that process, or start without --keep for fresh ports"
            )
        return state

    def _prepare(self) -> BrokerState:
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        (self.state_dir / "data").mkdir(parents=True)
        conf = resources.files("expediter.dev").joinpath("log4j2.properties").read_text()
        (self.state_dir / "log4j2.properties").write_text(conf)
        port = self.port or _free_port()
        controller = _free_port()
        listeners = [f"PLAINTEXT://127.0.0.1:{port}", f"CONTROLLER://127.0.0.1:{controller}"]
        advertised = [f"PLAINTEXT://127.0.0.1:{port}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        extra: list[str] = []
        sasl_bootstrap = None
        if self.scram_users:
            sasl_port = _free_port()
            sasl_bootstrap = f"127.0.0.1:{sasl_port}"
            listeners.append(f"SASL_PLAINTEXT://{sasl_bootstrap}")
            advertised.append(f"SASL_PLAINTEXT://{sasl_bootstrap}")
            protocols.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
            extra.append("sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512")
            login = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            for mech in ("scram-sha-256", "scram-sha-512"):
                extra.append(f"listener.name.sasl_plaintext.{mech}.sasl.jaas.config={login}")
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"listeners={','.join(listeners)}",
            f"advertised.listeners={','.join(advertised)}",
            f"listener.security.protocol.map={','.join(protocols)}",
            "inter.broker.listener.name=PLAINTEXT",
            "controller.listener.names=CONTROLLER",
            f"log.dirs={self.state_dir / 'data'}",
            # One node: every internal topic can only have one replica.
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            # Tests join groups constantly; the default 3 s delay would slow every one of them.
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            *extra,
        ]
        self._config.write_text("\n".join(lines) + "\n")
        return BrokerState(
            pid=0,
            bootstrap=f"127.0.0.1:{port}",
            version=self.version,
            log=str(self.log_path),
            started_at=time.time(),
            sasl_bootstrap=sasl_bootstrap,
            scram_users=[user.name for user in self.scram_users],
        )

    def _format(self, java: str, classpath: str) -> None:
        command = [
            java, "-cp", classpath, "kafka.tools.StorageTool", "format",
            "-t", _cluster_id(), "-c", str(self._config),
        ]  # fmt: skip
        for user in self.scram_users:
            command += [
                "--add-scram",
                f"{user.mechanism}=[name={user.name},password={user.password}]",
            ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise LocalBrokerError(
                f"formatting the broker's storage failed:\n{result.stdout}{result.stderr}"
            )

    async def _wait_ready(self, state: BrokerState, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        host, _, port = state.bootstrap.rpartition(":")
        while True:
            if self._proc.poll() is not None:
                raise LocalBrokerError(
                    f"the broker exited with code {self._proc.returncode} during start-up; "
                    f"its log ({self.log_path}) ends:\n{self.log_tail()}"
                )
            with contextlib.suppress(BrokerUnavailableError):
                if (await api_versions(host, int(port), timeout=2.0)).ok:
                    break
            if time.monotonic() > deadline:
                raise LocalBrokerError(
                    f"the broker did not answer within {timeout:.0f}s; "
                    f"its log ({self.log_path}) ends:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.2)
        await wait_for_broker(state.settings(), timeout=max(deadline - time.monotonic(), 5.0))

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    async def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the broker from this state directory (its PID only) and wait for it to exit.

        True if one was running. Its data stays until the next ``start()`` without ``keep``.
        """
        state = self.status()
        if state is None:
            self._reap()
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _is_our_broker(state.pid, self._config) and time.monotonic() < deadline:
            self._reap(block=False)
            await asyncio.sleep(0.1)
        if _is_our_broker(state.pid, self._config):
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.pid, signal.SIGKILL)
        self._reap()
        self._state_file.unlink(missing_ok=True)
        return True

    async def restart(self, down_seconds: float = 0.0, timeout: float = 120.0) -> BrokerState:
        """Stop the broker, stay down ``down_seconds``, then start it on the same data and ports."""
        await self.stop()
        await asyncio.sleep(down_seconds)
        return await self.start(timeout, keep=True)

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self._reap()

    def _reap(self, *, block: bool = True) -> None:
        # Our own child lingers as a zombie (and looks alive to kill(0)) until waited for.
        if self._proc is not None:
            if block:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=10)
            else:
                self._proc.poll()

    async def __aenter__(self) -> BrokerState:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
