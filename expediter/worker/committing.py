"""The worker's committer: finished batches, their results and their offsets, in group transactions.

Batches hand over the finished prefix of their records (:meth:`Committer.hand_over`); the
committer's loop (:meth:`Committer.run`) commits whatever is waiting in one transaction, so the
transaction overhead (four round trips and the markers) is paid per group of batches, not per
batch. A transaction commits only if every record in it was delivered
(:mod:`expediter.worker.transacting`); when one fails, the worker rewinds its partitions (the
``rewind`` it passes in) and the committer waits a doubling backoff before the next.

The committer also holds what the worker knows of its offsets: the partitions it owns, the
offset it last committed per partition, and the generation (bumped by a rewind) that tells a
batch fetched before a rewind from one fetched after it. Its lock is held by every
transaction, so a revocation waits for the one in flight.

Called by :mod:`expediter.worker.working`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition

from expediter.worker.observing import HealthState
from expediter.worker.processing import Outcome
from expediter.worker.publishing import KeyPartitions, Publisher
from expediter.worker.transacting import TransactionFailed, Transactions

__all__ = ["Committer", "Finished"]

_REWIND_BACKOFF_FIRST, _REWIND_BACKOFF_MAX = 0.5, 10.0
"""After a failed transaction, how long to wait before committing again (doubling)."""


@dataclass
class Finished:
    """A run of a batch's records that all ran, waiting for the committer."""

    tp: TopicPartition
    records: list[ConsumerRecord[bytes, bytes]]
    outcomes: dict[int, Outcome]
    committed: asyncio.Future[None]
    generation: int
    handed_at: float
    """When it was handed over (monotonic): how long it has waited for its commit."""


class Committer:
    """Commits what batches hand over; see the module docstring."""

    def __init__(
        self, group: str, partitioner: KeyPartitions, health: HealthState, log: logging.Logger
    ) -> None:
        self.group = group
        self.partitioner = partitioner
        self.health = health
        self.log = log
        self.lock = asyncio.Lock()
        """Held by every transaction of the worker's producer."""
        self.owned: set[TopicPartition] = set()
        """Partitions this worker holds; a batch of another is never committed here."""
        self.committed_to: dict[TopicPartition, int] = {}
        """The offset this worker last committed per partition (or read back on assignment)."""
        self.generation = 0
        """Bumped by a rewind: batches of an older generation are dropped, never committed."""
        self._finished: list[Finished] = []
        self._due = asyncio.Event()

    def hand_over(
        self,
        tp: TopicPartition,
        records: list[ConsumerRecord[bytes, bytes]],
        outcomes: dict[int, Outcome],
        generation: int,
    ) -> asyncio.Future[None]:
        """Queue ``records`` (run, in offset order) for the next transaction; the future is
        done once they are committed, and cancelled if they must run again."""
        committed = asyncio.get_running_loop().create_future()
        self._finished.append(
            Finished(tp, records, outcomes, committed, generation, time.monotonic())
        )
        self._due.set()
        return committed

    @property
    def waiting(self) -> set[TopicPartition]:
        """Partitions with records handed over and not yet committed."""
        return {item.tp for item in self._finished}

    def drop_waiting(self) -> None:
        """A rewind: start a new generation and drop what waits (it runs again)."""
        self.generation += 1
        for item in self._finished:
            item.committed.cancel()
        self._finished = []

    def wake(self) -> None:
        """Run the loop once even with nothing waiting (a broken producer to replace)."""
        self._due.set()

    async def run(self, transactions: Transactions, rewind: Callable[[], None]) -> None:
        """Commit what waits, as many batches as are waiting, in one transaction; for ever."""
        backoff = _REWIND_BACKOFF_FIRST
        while True:
            await self._due.wait()
            self._due.clear()
            batch, self._finished = self._finished, []
            if batch:
                self.health.awaiting_commit(batch[0].handed_at)
            failed: TransactionFailed | None = None
            async with self.lock:
                # Revoked while running: the new owner redoes those. Rewound: they run again.
                owned = [b for b in batch
                         if b.tp in self.owned and b.generation == self.generation]  # fmt: skip
                try:
                    if owned:
                        await self._commit(transactions, owned)
                except TransactionFailed as exc:
                    failed = exc
                    self.health.commit_failed(str(exc))
                    self.log.warning(
                        "a transaction of %d task(s) failed; every uncommitted task runs again "
                        "from the last committed offsets in %.1fs: %s",
                        sum(len(b.records) for b in owned), backoff, exc,
                    )  # fmt: skip
                    rewind()
            for item in batch:
                if failed is not None:
                    item.committed.cancel()
                elif not item.committed.done():
                    item.committed.set_result(None)
            if failed is None:
                if owned:
                    self.health.committed()
                    backoff = _REWIND_BACKOFF_FIRST
                self.health.awaiting_commit(self._finished[0].handed_at if self._finished else None)
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _REWIND_BACKOFF_MAX)
                self._due.set()  # batches run meanwhile; the next run starts a producer

    async def _commit(self, transactions: Transactions, batches: list[Finished]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for item in batches:
            offsets[item.tp] = max(offsets.get(item.tp, 0), item.records[-1].offset + 1)

        async def send(producer: AIOKafkaProducer) -> list[asyncio.Future[Any]]:
            delivered = await Publisher(producer, self.partitioner).publish(
                [out for item in batches for record in item.records
                 for out in item.outcomes[record.offset].publish]
            )  # fmt: skip
            await producer.send_offsets_to_transaction(offsets, self.group)
            return delivered

        await transactions.run(send)
        self.committed_to.update(offsets)

    async def commit_offsets(
        self, transactions: Transactions, due: dict[TopicPartition, int]
    ) -> None:
        """Commit ``due`` offsets alone (past commit markers), for partitions still owned."""
        async with self.lock:
            due = {tp: offset for tp, offset in due.items() if tp in self.owned}
            if not due or transactions.broken:
                return

            async def send(producer: AIOKafkaProducer) -> list[asyncio.Future[Any]]:
                await producer.send_offsets_to_transaction(due, self.group)
                return []

            try:
                await transactions.run(send)
            except TransactionFailed as exc:
                # Only offsets, so nothing runs again; the next commit starts a new producer.
                self.log.warning("committing offsets past commit markers failed: %s", exc)
                self._due.set()
                return
            self.committed_to.update(due)
