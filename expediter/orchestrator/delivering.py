"""Faust's producer, with one more rule: a transaction commits only if all its records arrived.

Why: aiokafka does not abort a transaction when one of its records fails. A batch for a
partition with no leader is failed once it is older than the request timeout (a broker outage
of ~30 s is enough), and a batch the broker refuses (a record too large for the topic) is failed
at once; neither moves the transaction to an abortable state. Its ``commit_transaction`` then
waits for those batches (``flush_for_commit`` uses ``asyncio.wait``, which ignores how they
ended) and commits, offsets included: the records that caused the lost writes count as handled,
and a workflow waits for a task that was never published, or loses its table update.

So each record sent in a transaction keeps its delivery future, by transactional id
(:meth:`Producer.send`, :meth:`Producer.send_together`), and
:meth:`Producer.commit_transactions` awaits them all, under the lock that Faust's sends to that
transaction take, so no record can slip in between. If one failed, the transaction is aborted
and the app crashes: the process exits non-zero, and the next one (a restart, or another
replica after the rebalance) reads the records again from the last committed offset. Crashing,
not retrying in place: the handled records have already changed the in-memory table, and only
a restore from the changelog (read_committed, so without the aborted writes) gives a table
that matches the committed offsets.

A handled record's writes (its table update, the next tasks, its events, its completion) go in
with :meth:`Producer.send_together`: one hold of that lock for all of them. Sent one by one,
a commit could run between two of them (each send awaits the lock): it would commit the table
update without the events, and without the handled record's offset. The next owner reads the
record again, finds the table already past it, and never sends the events; a kill -9 at that
moment left a workflow that never completed. (:meth:`Producer.send` stays for any other
transactional send, Faust's own included, so that its delivery counts too.)

Faust commits its per-partition transactions one after another; each is independent (its own
producer, lock and coordinator round trips), so here they commit side by side, and a commit
costs the slowest partition's round trips instead of their sum. Its producers retry after
10 ms instead of aiokafka's 100 ms (a retriable answer, such as a transaction coordinator still
writing the previous transaction's markers, comes back within milliseconds).

It adds ``send_together``, overrides ``send``, ``commit_transactions``, ``_producer_type`` and
``_settings_extra`` of faust-streaming's aiokafka producer (as pinned in pyproject.toml) and
reads its ``_transaction_producers`` and ``_trn_locks``. Called by Faust, through the transport
of :class:`expediter.orchestrator.consuming.OrchestratorApp`, and by
:mod:`expediter.orchestrator.running` (``send_together``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from faust.transport.drivers import aiokafka as faust_aiokafka

from expediter.errors import BrokerError
from expediter.events import OutgoingRecord
from expediter.messaging.coordinating import PatientProducer

__all__ = ["Producer", "UndeliveredError", "Write", "delivered"]

log = logging.getLogger("expediter.orchestrator")

_RETRY_BACKOFF_MS = 10
"""aiokafka's wait before retrying a retriable answer (its default: 100 ms)."""


class UndeliveredError(BrokerError):
    """A record of a transaction was not delivered: the transaction was aborted, not committed."""

    retriable = True


async def delivered(futures: Iterable[Awaitable[Any]], transaction: str) -> None:
    """Wait for every delivery; raise :class:`UndeliveredError` naming the first that failed."""
    pending = list(futures)
    if not pending:
        return
    outcomes = await asyncio.gather(*pending, return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if failures:
        raise UndeliveredError(
            f"transaction {transaction}: {len(failures)} of {len(outcomes)} records were not "
            f"delivered (first: {failures[0]!r}); aborted, and the records will be handled again"
        ) from failures[0]


class Write(NamedTuple):
    """One record that handling a record writes: its topic, and its partition when it must be
    that one (a table's changelog partition is the handled record's)."""

    topic: str
    record: OutgoingRecord
    partition: int | None = None


class Producer(faust_aiokafka.Producer):
    """Keeps each transaction's delivery futures; commits only once all of them succeeded."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._deliveries: defaultdict[str, list[Awaitable[Any]]] = defaultdict(list)

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[Any]:
        future = await super().send(
            topic, key, value, partition, timestamp, headers, transactional_id=transactional_id
        )
        # No await between the send (under the transaction's lock) and this line, so a commit
        # cannot run in between and miss the future.
        if transactional_id:
            self._deliveries[transactional_id].append(future)
        return future

    async def send_together(self, transactional_id: str, writes: Sequence[Write]) -> None:
        """Enqueue ``writes`` in the transaction ``transactional_id`` as one unit: its commit
        takes the same lock, so it comes before all of them or after all of them."""
        if not writes:
            return
        producer = self._transaction_producers.get(transactional_id)
        if producer is None:
            raise ProducerSendError(f"no transaction producer for {transactional_id}")
        async with self._trn_locks[transactional_id]:
            futures = self._deliveries[transactional_id]
            try:
                for write in writes:
                    record = write.record
                    futures.append(await producer.send(
                        write.topic, record.value, key=record.key, partition=write.partition,
                        headers=list(record.headers),
                    ))  # fmt: skip
            except KafkaError as exc:
                # The app crashes on it (the agent does not catch it); what was enqueued
                # before is aborted with the transaction.
                raise ProducerSendError(f"{transactional_id}: not enqueued: {exc!r}") from exc

    @property
    def _producer_type(self) -> type[PatientProducer]:
        # Its transactions' coordinator lookups ride out a broker restart instead of killing
        # the producer (and with it the app): see expediter.messaging.coordinating.
        return PatientProducer

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "retry_backoff_ms": _RETRY_BACKOFF_MS}

    async def commit_transactions(
        self,
        tid_to_offset_map: Mapping[str, Mapping[Any, int]],
        group_id: str,
        start_new_transaction: bool = True,
    ) -> None:
        # Faust's own, side by side, plus the wait for deliveries before the offsets join each
        # transaction. Every commit runs to its end even when another fails: a transaction left
        # half-way would hold its lock's partition until the broker aborts it.
        outcomes = await asyncio.gather(
            *(
                self._commit(tid, offsets, group_id, start_new_transaction)
                for tid, offsets in tid_to_offset_map.items()
            ),
            return_exceptions=True,
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            raise failures[0]

    async def _commit(
        self,
        transactional_id: str,
        offsets: Mapping[Any, int],
        group_id: str,
        start_new_transaction: bool,
    ) -> None:
        async with self._trn_locks[transactional_id]:
            producer = self._transaction_producers.get(transactional_id)
            futures = self._deliveries.pop(transactional_id, [])
            if producer is None:
                log.warning("commit for unknown transaction %s", transactional_id)
                return
            try:
                await delivered(futures, transactional_id)
            except UndeliveredError as exc:
                log.error("%s", exc)
                await producer.abort_transaction()
                await self.app.crash(exc)
                raise
            await producer.send_offsets_to_transaction(offsets, group_id)
            await producer.commit_transaction()
            if start_new_transaction:
                await producer.begin_transaction()

    async def stop_transaction(self, transactional_id: str) -> None:
        # A revoked partition's transaction is never committed here (the next owner fences it),
        # so its deliveries no longer decide anything.
        self._deliveries.pop(transactional_id, None)
        await super().stop_transaction(transactional_id)
