"""Reading any range of any topic: by partition and offsets, by time, by key or by workflow id.

:class:`HistoryReader` is the one client of the history tools: a :class:`Selection` says what to
read (:mod:`expediter.replaying.selecting`), :meth:`HistoryReader.plan` turns it into exact
offset ranges per partition and refuses bad input before anything is read or written
(:mod:`expediter.replaying.planning`), and :meth:`HistoryReader.read` yields the records.

It never joins a consumer group and reads only committed records: the reading itself is
:class:`~expediter.messaging.partitionreading.PartitionReader`'s, which ``expediter status``
shares; a key's records are read from the one partition the key hashes to.

Called by the replay, trace, rerun, diff and dlq tools of this package, ``expediter replay``,
``trace``, ``diff`` and ``dlq`` (expediter.cli.replay, expediter.cli.dlq) and the replay bench.
"""

from __future__ import annotations

import difflib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, Self

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from expediter.errors import BrokerError, ConfigurationError, ExpediterError
from expediter.messaging import client_options, connected
from expediter.messaging.partitionreading import (
    FETCH_BYTES,
    PartitionReader,
    Progress,
    Record,
)
from expediter.replaying.planning import plan_ranges
from expediter.replaying.selecting import RangePlan, Selection, check_shape
from expediter.settings import KafkaSettings

__all__ = ["HistoryReader"]


class HistoryReader:
    """Reads ranges of topics without a consumer group; an async context manager.

    One admin client (configs, topic creation for re-runs) and one partition reader (metadata,
    offsets, records), reused for every plan and read, so that ``trace`` over a dozen topics
    connects once.
    """

    def __init__(self, settings: KafkaSettings, *, fetch_bytes: int = FETCH_BYTES) -> None:
        self.settings = settings
        self.fetch_bytes = fetch_bytes
        self._stack: AsyncExitStack | None = None
        self._admin: Any = None
        self._partitions: PartitionReader | None = None

    async def __aenter__(self) -> Self:
        async with AsyncExitStack() as stack:
            self._admin = await stack.enter_async_context(
                connected(AIOKafkaAdminClient(**client_options(self.settings)), self.settings)
            )
            self._partitions = await stack.enter_async_context(
                PartitionReader(self.settings, fetch_bytes=self.fetch_bytes)
            )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        stack, self._stack = self._stack, None
        self._admin = self._partitions = None
        if stack is not None:
            await stack.aclose()

    @property
    def admin(self) -> Any:
        """The started admin client (aiokafka's admin client is untyped)."""
        if self._admin is None:
            raise ExpediterError("this HistoryReader is not started: use `async with` first")
        return self._admin

    @property
    def partitions(self) -> PartitionReader:
        if self._partitions is None:
            raise ExpediterError("this HistoryReader is not started: use `async with` first")
        return self._partitions

    @property
    def consumer(self) -> AIOKafkaConsumer:
        return self.partitions.consumer

    # -- metadata -----------------------------------------------------------------------------

    async def topics(self, *, refresh: bool = False) -> dict[str, int]:
        """Every topic on the cluster and its number of partitions (all-topics metadata: see
        :class:`~expediter.messaging.topology.TopicMetadata`)."""
        return await self.partitions.metadata.topics(refresh=refresh)

    async def require(self, topic: str) -> int:
        """The partitions of ``topic``; ConfigurationError naming close names when it is missing."""
        count = await self.partitions.metadata.partitions(topic)
        if count is not None:
            return count
        known = await self.topics()
        close = difflib.get_close_matches(topic, list(known), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigurationError(
            f"topic {topic!r} does not exist on {self.settings.bootstrap}{hint}: check the name "
            "and the prefix; `expediter topics list` shows the cluster's topics"
        )

    async def retention(self, topic: str) -> tuple[int | None, str]:
        """(retention.ms, cleanup.policy) of ``topic``; retention None when it keeps for ever."""
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        try:
            (response,) = await self.admin.describe_configs([resource])
        except KafkaError as exc:
            raise BrokerError(f"reading the configs of {topic} failed: {exc!r}") from exc
        error_code, error_message, _, _, entries = response.resources[0]
        if error_code:
            raise BrokerError(
                f"reading the configs of {topic} failed (error {error_code}: {error_message})"
            )
        configs = {entry[0]: entry[1] for entry in entries}
        retention = int(configs.get("retention.ms") or -1)
        return (retention if retention >= 0 else None), str(configs.get("cleanup.policy") or "")

    # -- planning and reading -----------------------------------------------------------------

    async def plan(self, selection: Selection) -> RangePlan:
        """The offsets ``selection`` covers, or ConfigurationError saying what is wrong."""
        check_shape(selection)
        count = await self.require(selection.topic)
        return await plan_ranges(selection, count, self.partitions, self.retention)

    def read(
        self, plan: RangePlan, *, progress: Progress | None = None, batch: int = 10_000
    ) -> AsyncIterator[Record]:
        """The plan's records, each partition in offset order, key and workflow filters applied."""
        selection = plan.selection
        accept = selection.accepts if selection.match_key is not None else None
        # The partition reader's own iterator, not one wrapped around it: a replay's cost is
        # per record.
        return self.partitions.read(
            selection.topic, plan.ranges, accept=accept, progress=progress, batch=batch
        )

    def read_batches(
        self, plan: RangePlan, *, progress: Progress | None = None, batch: int = 10_000
    ) -> AsyncIterator[list[Record]]:
        """What :meth:`read` yields, a fetched batch of one partition at a time: for
        ``replay --json``, whose cost is per record (:func:`~expediter.replaying.json_lines`)."""
        selection = plan.selection
        accept = selection.accepts if selection.match_key is not None else None
        return self.partitions.read_batches(
            selection.topic, plan.ranges, accept=accept, progress=progress, batch=batch
        )

    async def records(self, plan: RangePlan, *, progress: Progress | None = None) -> list[Record]:
        return [record async for record in self.read(plan, progress=progress)]

    async def fetch(self, selection: Selection) -> list[Record]:
        """Plan and read ``selection`` in one go."""
        return await self.records(await self.plan(selection))
