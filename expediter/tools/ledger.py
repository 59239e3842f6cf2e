"""The tool ledger: every tool call's result, recorded in a compacted Kafka topic.

Workers keep no state, yet a redelivered task must not repeat a side effect (a work order opened
twice, a field irrigated twice). So each call's outcome is a record keyed
``<task_id>/<step_id>/<n>`` (``n``: the call's index within the task) in ``tools.ledger``, and a
replica that gets the task again, any replica, finds it there and reuses it.

Each ledger reads the whole topic from the beginning with manually assigned partitions (no
consumer group: every replica needs every record) into an in-memory index. :meth:`lookup` first
reads up to the end offsets as of the call, so a record that another replica wrote before the
redelivery is seen. :meth:`record` returns only once the broker has acknowledged the record
(acks=all, idempotent producer): the record exists before the task's result can commit.

What it cannot do: two replicas running the same task at the same moment (a zombie during a
rebalance) can both run a call before either records it. It prevents repeats after a record
exists, which is what a redelivery is.

Called by :class:`~expediter.tools.toolbox.ToolBox` and the worker (which calls
:meth:`ensure_topic` and enters the ledger at start).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from expediter.errors import (
    BrokerError,
    ConfigurationError,
    ExpediterError,
    PermanentError,
    RetriableError,
)
from expediter.messaging import client_options, connected
from expediter.settings import KafkaSettings

__all__ = ["LedgerEntry", "ToolLedger", "ledger_key"]

_log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
_SETTLE_SECONDS = 30.0


class LedgerEntry(BaseModel):
    """One recorded tool call; the JSON value of a ledger record."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    tool: str
    arguments: dict[str, Any]
    """The validated arguments, as JSON (``model_dump(mode="json")``)."""
    result: dict[str, Any]
    recorded_at: AwareDatetime


class _Unreadable:
    """A record under a key that does not decode: the call may have run, so it is not rerun."""

    def __init__(self, detail: str) -> None:
        self.detail = detail


def ledger_key(task_id: object, step_id: str, n: int) -> str:
    """The record key of call ``n`` of a task's step."""
    return f"{task_id}/{step_id}/{n}"


class ToolLedger:
    """Reads and writes tool-call records in ``topic``; an async context manager.

    ``start()`` and ``stop()`` are idempotent; a stopped ledger is not started again.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str = "tools.ledger",
        *,
        catch_up_seconds: float = 30.0,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.catch_up_seconds = catch_up_seconds
        """How long :meth:`lookup` may wait to read up to the end offsets before giving up."""
        self._index: dict[str, LedgerEntry | _Unreadable] = {}
        self._stack: AsyncExitStack | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._partitions: list[TopicPartition] = []
        # One reader at a time: concurrent tasks would otherwise race on the consumer position.
        self._reading = asyncio.Lock()
        self._starting = asyncio.Lock()
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def ensure_topic(
        self, *, partitions: int = 3, replication_factor: int | None = None
    ) -> bool:
        """Create the topic, compacted, if it is missing; True when this call created it.

        ``replication_factor`` None takes min(3, brokers), with min.insync.replicas up to 2.
        An existing topic must be compacted: with ``delete`` its records would expire and a
        late redelivery would repeat side effects.
        """
        options = client_options(self.settings)
        async with connected(AIOKafkaAdminClient(**options), self.settings) as admin:
            try:
                # Listing every topic rather than naming ours: a metadata request that names a
                # missing topic creates it on clusters with auto-creation on, uncompacted.
                if self.topic in await admin.list_topics():
                    await self._check_compacted(admin)
                    return False
                if replication_factor is None:
                    cluster: dict[str, Any] = await admin.describe_cluster()
                    replication_factor = max(1, min(3, len(cluster["brokers"])))
                configs = {
                    "cleanup.policy": "compact",
                    "min.insync.replicas": str(min(2, replication_factor)),
                }
                response = await admin.create_topics(
                    [NewTopic(self.topic, partitions, replication_factor, topic_configs=configs)]
                )
                for _, code, *rest in response.topic_errors:
                    if code == _TOPIC_ALREADY_EXISTS:  # another replica won the race
                        await self._check_compacted(admin)
                        return False
                    if code:
                        raise BrokerError(
                            f"creating the tool ledger topic {self.topic} failed (error {code}: "
                            f"{rest[0] if rest else ''}); fix the cause or create it with "
                            "`expediter topics apply`"
                        )
                await self._settle(admin)
            except KafkaError as exc:
                raise BrokerError(
                    f"creating the tool ledger topic {self.topic} failed: {exc!r}; check the "
                    "broker, or create it with `expediter topics apply`"
                ) from exc
        return True

    async def start(self) -> None:
        """Connect, assign every partition of the topic and read it up to its end."""
        async with self._starting:
            if self._stopped:
                raise ExpediterError("this ToolLedger was stopped; create a new one")
            if self._stack is None:
                await self._start()

    async def _start(self) -> None:
        options = client_options(self.settings)
        found = await self._read_partitions()
        if not found:
            raise ConfigurationError(
                f"the tool ledger topic {self.topic} does not exist: create it with "
                "`expediter topics apply` or `await ToolLedger(...).ensure_topic()` before "
                "starting the ledger"
            )
        async with AsyncExitStack() as stack:
            consumer = AIOKafkaConsumer(
                **options, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
            )
            await stack.enter_async_context(connected(consumer, self.settings))
            partitions = [TopicPartition(self.topic, p) for p in found]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
            await stack.enter_async_context(connected(producer, self.settings))
            self._consumer, self._producer, self._partitions = consumer, producer, partitions
            try:
                # Read what is there now, so that the first task does not pay for it.
                await self._catch_up()
            except BaseException:
                self._consumer = self._producer = None
                raise
            self._stack = stack.pop_all()

    async def stop(self) -> None:
        self._stopped = True
        stack, self._stack = self._stack, None
        self._consumer = self._producer = None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- reading and writing ------------------------------------------------------------------

    async def lookup(self, task_id: object, step_id: str, n: int) -> LedgerEntry | None:
        """The recorded call ``n`` of the task's step, or None if it was never recorded.

        Reads the topic up to its end offsets as of now first, so a record acknowledged to any
        replica before this call is found. Raises RetriableError when that takes longer than
        ``catch_up_seconds``, and PermanentError for a record that does not decode.
        """
        key = ledger_key(task_id, step_id, n)
        await self._catch_up()
        found = self._index.get(key)
        if isinstance(found, _Unreadable):
            raise PermanentError(
                f"the tool ledger record {key!r} in {self.topic} is unreadable ({found.detail}); "
                "the call may have run, so it is not run again: check its side effect by hand, "
                "then write a tombstone (null value) for that key to let the task run it",
                code="ledger-unreadable",
            )
        return found

    async def record(
        self,
        task_id: object,
        step_id: str,
        n: int,
        *,
        tool: str,
        arguments: dict[str, Any],
        result: dict[str, Any],
    ) -> LedgerEntry:
        """Record call ``n`` and return once the broker has acknowledged it (acks=all)."""
        producer = self._running()[1]
        key = ledger_key(task_id, step_id, n)
        entry = LedgerEntry(
            tool=tool, arguments=arguments, result=result, recorded_at=datetime.now(UTC)
        )
        value = entry.model_dump_json().encode()
        try:
            await producer.send_and_wait(self.topic, value, key=key.encode())
        except KafkaError as exc:
            # The side effect has happened and is not recorded; a retry will repeat it. Nothing
            # can close that gap but a tool that is idempotent on its own side.
            raise RetriableError(
                f"recording tool call {key!r} ({tool}) in {self.topic} failed: {exc!r}; the "
                "call ran but is unrecorded, so a retry runs it again; check the broker",
                code="ledger-unavailable",
            ) from exc
        self._index[key] = entry
        return entry

    # -- internals ----------------------------------------------------------------------------

    def _running(self) -> tuple[AIOKafkaConsumer, AIOKafkaProducer]:
        if self._consumer is None or self._producer is None:
            raise ExpediterError(
                "this ToolLedger is not started: use `async with ToolLedger(...)` or "
                "`await ledger.start()` first"
            )
        return self._consumer, self._producer

    async def _catch_up(self) -> None:
        consumer = self._running()[0]
        async with self._reading:
            try:
                ends: dict[TopicPartition, int] = await consumer.end_offsets(self._partitions)
                async with asyncio.timeout(self.catch_up_seconds):
                    while behind := [
                        tp for tp in self._partitions if await consumer.position(tp) < ends[tp]
                    ]:
                        batch = await consumer.getmany(*behind, timeout_ms=200)
                        for records in batch.values():
                            for record in records:
                                self._apply(record.key, record.value)
            except TimeoutError as exc:
                raise RetriableError(
                    f"the tool ledger could not read {self.topic} up to its end within "
                    f"{self.catch_up_seconds:.0f}s; check the broker (the task is retried)",
                    code="ledger-unavailable",
                ) from exc
            except KafkaError as exc:
                raise RetriableError(
                    f"reading the tool ledger {self.topic} failed: {exc!r}; check the broker "
                    "(the task is retried)",
                    code="ledger-unavailable",
                ) from exc

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode(errors="replace")
        if value is None:  # a tombstone: an operator cleared the record
            self._index.pop(name, None)
            return
        try:
            self._index[name] = LedgerEntry.model_validate_json(value)
        except ValidationError as exc:
            _log.warning("unreadable tool ledger record %r in %s: %s", name, self.topic, exc)
            self._index[name] = _Unreadable(str(exc).splitlines()[0])

    async def _read_partitions(self) -> list[int]:
        """The topic's partition numbers; empty when the topic does not exist."""
        options = client_options(self.settings)
        async with connected(AIOKafkaAdminClient(**options), self.settings) as admin:
            try:
                return await self._partitions_of(admin)
            except KafkaError as exc:
                raise BrokerError(
                    f"reading the metadata of the tool ledger topic {self.topic} failed: "
                    f"{exc!r}; check the broker"
                ) from exc

    async def _partitions_of(self, admin: Any) -> list[int]:
        # Named only once it is listed (see ensure_topic); a partition without a leader yet
        # counts as missing, so that a topic created a moment ago reads as not ready.
        if self.topic not in await admin.list_topics():
            return []
        (described,) = await admin.describe_topics([self.topic])
        partitions = described["partitions"]
        if described["error_code"] or any(p["leader"] < 0 for p in partitions):
            return []
        return sorted(int(p["partition"]) for p in partitions)

    async def _check_compacted(self, admin: Any) -> None:
        resource = ConfigResource(ConfigResourceType.TOPIC, self.topic)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SETTLE_SECONDS
        # A topic created a moment ago may not have its configs on every broker yet.
        while True:
            (response,) = await admin.describe_configs([resource])
            error_code, error_message, *_, entries = response.resources[0]
            configs = {entry[0]: entry[1] for entry in entries}
            if not error_code and "cleanup.policy" in configs:
                break
            if loop.time() > deadline:
                raise BrokerError(
                    f"reading the configs of the tool ledger topic {self.topic} failed (error "
                    f"{error_code}: {error_message}); check the broker"
                )
            await asyncio.sleep(0.1)
        policy = configs["cleanup.policy"] or ""
        if "compact" not in policy:
            raise ConfigurationError(
                f"the tool ledger topic {self.topic} has cleanup.policy={policy!r}: its "
                "records would expire and redelivered tasks repeat side effects; set "
                "cleanup.policy=compact on it (`kafka-configs.sh --alter`)"
            )

    async def _settle(self, admin: Any) -> None:
        # A new topic reaches every broker's metadata a moment after CreateTopics returns;
        # start() right after must find it.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SETTLE_SECONDS
        while not await self._partitions_of(admin):
            if loop.time() > deadline:
                raise BrokerError(
                    f"the tool ledger topic {self.topic} was created but has no leaders after "
                    f"{_SETTLE_SECONDS:.0f}s; check the brokers' health"
                )
            await asyncio.sleep(0.1)
