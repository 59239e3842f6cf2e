"""A worker's entry in the registry: its agent card, the heartbeat that renews its lease, and
the tombstone that removes it.

The card (:class:`~expediter.events.AgentCard`, keyed ``<capability>/<instance>`` in the
compacted ``registry`` topic) says what this instance serves: capability, version, schemas,
resources, engine and model. It carries a lease: ``expires_at`` is ``lease_seconds`` after it
was published, and the worker publishes it again every third of the lease, so two heartbeats
may be lost before readers count it stale (:mod:`expediter.messaging.discovering`). A clean stop
publishes a tombstone; a worker killed with -9 cannot, and its card goes stale after the lease.

Every publication is a transaction of the worker's producer under the committer's lock (the
producer is transactional, and transactions of one producer cannot overlap). A heartbeat that
fails is logged and retried at the next beat: the registry is advisory, and the committer
replaces a broken producer. Called by :mod:`expediter.worker.working`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from expediter.authoring.agents import Agent
from expediter.events import AgentCard, Producer, to_record
from expediter.reasoning.protocol import ReasoningEngine
from expediter.worker.transacting import TransactionFailed, Transactions

__all__ = ["Registration", "default_instance", "engine_model"]


def default_instance(environ: dict[str, str] | None = None, pid: int | None = None) -> str:
    """This worker's instance name when neither ``--instance`` nor ``EXPEDITER_INSTANCE`` gives
    one. It names the registry card and makes the transactional id (``<group>.<instance>``),
    and a producer that starts with an id fences the one that had it before.

    - On Kubernetes (``KUBERNETES_SERVICE_HOST`` set): ``$HOSTNAME``, the pod's name. Unique per
      pod, and the same when a container restarts in its pod, so the restart fences its
      predecessor at once and aborts the transaction it left open (with a new id, that
      transaction would hold read_committed readers of its partitions until the broker's
      transaction timeout, 60 s).
    - Elsewhere: ``<host>-<pid>``. The host name alone was the same for every worker on a
      machine, so a second worker started without ``--instance`` fenced the first. A restarted
      process gets a new pid, so its predecessor's open transaction, if it was killed mid-way,
      is aborted by the broker's transaction timeout rather than by fencing. Give
      ``--instance`` (as ``expediter up`` does, ``<agent>-<n>``) where restarts should fence.
    """
    env = os.environ if environ is None else environ
    hostname = env.get("HOSTNAME") or socket.gethostname()
    if env.get("KUBERNETES_SERVICE_HOST") and env.get("HOSTNAME"):
        return env["HOSTNAME"]
    return f"{hostname}-{os.getpid() if pid is None else pid}"


def engine_model(engine: ReasoningEngine) -> str | None:
    """The model an engine runs, for the card: a GGUF file's name, or a served model's name."""
    path = getattr(engine, "model_path", None)
    if isinstance(path, str | Path):
        return Path(path).name
    model = getattr(engine, "model", None)
    return model if isinstance(model, str) else None


class Registration:
    """Publishes, renews and removes one worker's card; see the module docstring."""

    def __init__(
        self,
        agent: Agent[Any, Any],
        engine: ReasoningEngine,
        *,
        instance: str,
        topic: str,
        producer: Producer,
        lease_seconds: float,
        lock: asyncio.Lock,
        log: logging.Logger,
    ) -> None:
        self.agent = agent
        self.engine = engine
        self.instance = instance
        self.topic = topic
        self.producer = producer
        self.lease_seconds = lease_seconds
        self.lock = lock
        self.log = log
        self.beats = 0
        """Cards published, the first included."""

    @property
    def key(self) -> bytes:
        return f"{self.agent.capability}/{self.instance}".encode()

    def card(self, now: datetime | None = None) -> AgentCard:
        now = now or datetime.now(UTC)
        return AgentCard(
            producer=self.producer,
            created_at=now,
            name=self.agent.name,
            capability=self.agent.capability,
            version=self.agent.version,
            instance=self.instance,
            input_schema=self.agent.input_model.model_json_schema(),
            output_schema=self.agent.output_model.model_json_schema(),
            resources=self.agent.resources,
            engine=self.engine.name,
            model=engine_model(self.engine),
            lease_seconds=self.lease_seconds,
            expires_at=now + timedelta(seconds=self.lease_seconds),
        )

    async def publish(self, transactions: Transactions) -> None:
        """Publish a fresh card (a new lease); raises TransactionFailed if it did not commit."""
        record = to_record(self.card())

        async def send(producer: AIOKafkaProducer) -> list[asyncio.Future[Any]]:
            return [await producer.send(
                self.topic, record.value, key=record.key, headers=record.headers
            )]  # fmt: skip

        async with self.lock:
            await transactions.run(send)
        self.beats += 1

    async def heartbeat(self, transactions: Transactions, stopping: asyncio.Event) -> None:
        """Renew the lease every third of it until ``stopping`` is set."""
        interval = self.lease_seconds / 3
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), interval)
                return
            except TimeoutError:
                pass
            try:
                await self.publish(transactions)
            except TransactionFailed as exc:
                self.log.warning("could not renew this worker's registry card: %s", exc)

    async def remove(self, transactions: Transactions) -> None:
        """Publish the tombstone; a failure is logged (the card then expires with its lease)."""

        async def send(producer: AIOKafkaProducer) -> list[asyncio.Future[Any]]:
            return [await producer.send(self.topic, None, key=self.key)]

        async with self.lock:
            try:
                await transactions.run(send)
            except TransactionFailed as exc:
                self.log.warning("could not remove this worker's registry card: %s", exc)
