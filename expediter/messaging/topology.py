"""Where records live: how many partitions each topic has, and which partition a key goes to.

:func:`partition_for_key` is Kafka's default partitioner for a keyed record (murmur2 of the key,
as the Java client and aiokafka compute it): every record of one workflow id lands in that one
partition, so a reader that knows the key reads one partition, not the topic.

:class:`TopicMetadata` reads the partitions of every topic from all-topics metadata, never from
a request naming one topic: on clusters with auto-creation on, naming a missing topic would
create it with the broker's defaults, and a typo would become a topic. What it read is kept
(for ``max_age`` seconds, or until a refresh); a concurrent caller waits for the read under way
instead of sending its own, and a topic not found is looked up once more before it is missing
(one created a moment ago takes a while to show).

Called by ``expediter submit`` and ``expediter status`` (expediter.orchestrator.submitting), the
worker's start-up topic check (expediter.worker.working), the lag sampler
(expediter.supervising.sampling) and the partition reader
(:mod:`expediter.messaging.partitionreading`).
"""

from __future__ import annotations

import asyncio
import difflib
import time
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from expediter.errors import BrokerError, ConfigurationError

__all__ = ["MissingTopicError", "TopicMetadata", "partition_count", "partition_for_key"]


class MissingTopicError(ConfigurationError):
    """A topic that should exist does not (yet)."""


def partition_for_key(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions``:
    ``toPositive(murmur2(key)) % partitions``, as ``BuiltInPartitioner.partitionForKey`` in the
    Java client and aiokafka's ``DefaultPartitioner`` compute it."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


class TopicMetadata:
    """The partition count of every topic on the cluster, read through ``client`` and kept.

    ``client`` is a started aiokafka client (``producer.client``, a consumer's ``_client``).
    ``max_age``: seconds a read is used before the next call reads again; None keeps it until
    :meth:`topics` is called with ``refresh`` (or a topic is not found).
    """

    def __init__(self, client: Any, *, max_age: float | None = None) -> None:
        self.client = client
        self.max_age = max_age
        self._topics: dict[str, int] | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    async def topics(self, *, refresh: bool = False) -> dict[str, int]:
        """Every topic on the cluster and its number of partitions."""
        asked = time.monotonic()
        async with self._lock:
            # A read that ended after this call began (another caller's, awaited on the lock)
            # is as fresh as one this call would send.
            fresh = self._topics is not None and (
                self._read_at >= asked
                or (not refresh and (self.max_age is None or asked - self._read_at < self.max_age))
            )
            if not fresh:
                self._topics = await self._read()
                self._read_at = time.monotonic()
            assert self._topics is not None
            return self._topics

    async def partitions(self, topic: str) -> int | None:
        """The partitions of ``topic``; None when it does not exist, after a fresh read."""
        known = await self.topics()
        if topic not in known:
            known = await self.topics(refresh=True)
        return known.get(topic)

    async def require(self, topic: str) -> int:
        """The partitions of ``topic``; :class:`MissingTopicError` naming close names if none."""
        count = await self.partitions(topic)
        if count is not None:
            return count
        close = difflib.get_close_matches(topic, list(await self.topics()), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise MissingTopicError(
            f"topic {topic} does not exist{hint}: run `expediter topics apply` (with --prefix "
            "when EXPEDITER_TOPIC_PREFIX is set)"
        )

    async def _read(self) -> dict[str, int]:
        try:
            cluster = await self.client.fetch_all_metadata()
        except KafkaError as exc:
            raise BrokerError(f"reading the cluster's topics failed: {exc!r}") from exc
        # Only topics the broker answered without an error (aiokafka leaves the others out);
        # internal ones too, so that `expediter replay __consumer_offsets` finds its topic.
        return {
            topic: len(cluster.partitions_for_topic(topic) or ())
            for topic in cluster.topics(exclude_internal_topics=False)
        }


async def partition_count(client: Any, topic: str) -> int:
    """One look-up of ``topic``'s partitions through ``client``, for a caller with no cache."""
    return await TopicMetadata(client).require(topic)
