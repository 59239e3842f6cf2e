"""Reading the registry: which agent instances are live, per capability (discovery).

Workers publish an :class:`~expediter.events.AgentCard` to the compacted ``registry`` topic when
they start, publish it again every third of its lease (a heartbeat), and publish a tombstone
when they stop cleanly (:mod:`expediter.worker.registering`). A reader keeps the newest card per
key (``<capability>/<instance>``), drops the keys a tombstone removed, and counts a card as live
while its lease holds (``expires_at`` is in the future). A worker killed with -9 sends no
tombstone: its card goes stale once the lease passes, and readers stop counting it.

Called by ``expediter agents``, ``expediter submit`` and ``status`` (warnings for a capability
no live agent serves) and the orchestrator (:mod:`expediter.orchestrator.discovering`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from expediter.errors import ConfigurationError, DecodeError
from expediter.events import AgentCard, decode
from expediter.messaging.connecting import client_options, connected
from expediter.messaging.naming import TopicNames
from expediter.settings import KafkaSettings

__all__ = ["Directory", "is_live", "read_registry"]

_READ_SECONDS = 10.0
"""The longest a read of the registry may take; it is one small partition."""


def is_live(card: AgentCard, now: datetime) -> bool:
    """True while ``card``'s lease holds. A card without a lease (a worker from before leases)
    counts as live: only a tombstone removes it."""
    return card.expires_at is None or card.expires_at > now


@dataclass(frozen=True)
class Directory:
    """The registry as read at ``read_at``: the newest card of every instance not removed."""

    cards: tuple[AgentCard, ...]
    read_at: datetime

    def live(self) -> list[AgentCard]:
        return [card for card in self.cards if is_live(card, self.read_at)]

    def stale(self) -> list[AgentCard]:
        return [card for card in self.cards if not is_live(card, self.read_at)]

    def served(self) -> set[str]:
        """The capabilities at least one live instance serves."""
        return {card.capability for card in self.live()}

    def unserved(self, capabilities: Iterable[str]) -> list[str]:
        """The ones of ``capabilities`` that no live instance serves, sorted, once each."""
        served = self.served()
        return sorted({c for c in capabilities if c not in served})

    def by_capability(self) -> list[dict[str, Any]]:
        """One summary per capability (live or stale), sorted: what ``expediter agents``
        prints, and ``--json`` emits."""
        groups: dict[str, list[AgentCard]] = {}
        for card in self.cards:
            groups.setdefault(card.capability, []).append(card)
        summaries = []
        for capability, cards in sorted(groups.items()):
            live = sorted((c for c in cards if is_live(c, self.read_at)), key=lambda c: c.instance)
            summaries.append({
                "capability": capability,
                "live": len(live),
                "stale": len(cards) - len(live),
                "instances": [_instance(card, self.read_at) for card in live],
                "stale_instances": sorted(c.instance for c in cards if c not in live),
            })  # fmt: skip
        return summaries


def _instance(card: AgentCard, now: datetime) -> dict[str, Any]:
    return {
        "instance": card.instance,
        "name": card.name,
        "version": card.version,
        "engine": card.engine,
        "model": card.model,
        "resources": card.resources.model_dump(mode="json"),
        "seen": card.created_at.isoformat(),
        "expires_in": (
            round((card.expires_at - now).total_seconds(), 1) if card.expires_at else None
        ),
    }


async def read_registry(
    kafka: KafkaSettings, names: TopicNames, *, now: datetime | None = None
) -> Directory:
    """Read the whole registry topic (to its end offsets) into a :class:`Directory`.

    Manual assignment, no group: reading never moves anyone's offsets. Cards are written in
    the workers' transactions, so the read is read_committed. A card that does not decode is
    skipped (the registry is advisory; a bad card must not hide the others).
    """
    consumer = AIOKafkaConsumer(
        **client_options(kafka),
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
    )
    newest: dict[bytes, AgentCard] = {}
    async with connected(consumer, kafka):
        # All-topics metadata (naming a missing topic could auto-create it on some clusters),
        # fetched afresh: the client's own may not know a topic created a moment ago.
        cluster = await consumer._client.fetch_all_metadata()
        partitions = cluster.partitions_for_topic(names.registry)
        if not partitions:
            raise ConfigurationError(
                f"topic {names.registry} missing: create it with `expediter topics apply` "
                "(and check EXPEDITER_TOPIC_PREFIX)"
            )
        tps = [TopicPartition(names.registry, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + _READ_SECONDS
        while time.monotonic() < deadline:
            positions = {tp: await consumer.position(tp) for tp in tps}
            if all(positions[tp] >= ends[tp] for tp in tps):
                break
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    if record.key is None:
                        continue
                    if record.value is None:
                        newest.pop(record.key, None)
                        continue
                    try:
                        newest[record.key] = decode(record.value, AgentCard)
                    except DecodeError:
                        continue
            await asyncio.sleep(0)
    cards = tuple(sorted(newest.values(), key=lambda c: (c.capability, c.instance)))
    return Directory(cards=cards, read_at=now or datetime.now(UTC))
