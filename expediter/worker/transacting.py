"""The worker's transactional producer: a transaction commits only what was delivered.

Called by the worker (:mod:`expediter.worker.working`) for every transaction it runs: the group
commit of results and offsets, the offsets past commit markers, and its registry card::

    transactions = Transactions(make_producer, kafka, log)
    async with transactions:
        await transactions.run(send)   # send(producer) -> the delivery futures of what it sent

Why the delivery futures are awaited here: aiokafka fails a batch it could not deliver (one for
a partition that had no leader for ``request_timeout_ms``, one the broker refused) by setting
the batch's future, and nothing else. The transaction stays open and ``commit_transaction``
waits for the batches but not for their success, so without this check the consumer offsets
commit and the results that failed are lost. Here any failed delivery, or any error on the
way, fails the transaction: nothing of it commits, and :class:`TransactionFailed` tells the
caller to redo its records (the worker rewinds its partitions and runs them again).

Why the producer is replaced after a failure instead of aborting and reusing it: a failed batch
already took its sequence numbers, so the next batch to that partition would be refused as out
of order; aiokafka cannot bump the producer epoch to start the sequences afresh. A new producer
with the same transactional id gets a new epoch from the coordinator, which also aborts the
open transaction and fences the old producer. The new one starts on the next :meth:`run`,
retried with a backoff while the broker is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, Self

from aiokafka import AIOKafkaProducer

from expediter.errors import BrokerError
from expediter.messaging import connected
from expediter.settings import KafkaSettings

__all__ = ["Send", "TransactionFailed", "Transactions"]

Send = Callable[[AIOKafkaProducer], Awaitable[list["asyncio.Future[Any]"]]]
"""What one transaction does: send records (and offsets) with the producer it is given, and
return the delivery futures of every record it sent."""

_STOP_SECONDS = 10.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.2, 5.0


class TransactionFailed(BrokerError):
    """A transaction did not commit: a record was not delivered, or the broker failed it.

    Nothing of it is visible to read_committed readers and its offsets did not move, so its
    records must run again.
    """

    retriable = True


class Transactions:
    """One transactional producer at a time, built by ``make``; see the module docstring."""

    def __init__(
        self,
        make: Callable[[], AIOKafkaProducer],
        kafka: KafkaSettings,
        log: logging.Logger,
    ) -> None:
        self._make = make
        self.kafka = kafka
        self.log = log
        self._stack: AsyncExitStack | None = None
        self._producer: AIOKafkaProducer | None = None
        self.replaced = 0
        """How many times a failed producer was replaced."""

    @property
    def broken(self) -> bool:
        """True between a failed transaction and the start of the next producer."""
        return self._producer is None

    @property
    def producer(self) -> AIOKafkaProducer:
        """The current producer; only while not :attr:`broken`."""
        if self._producer is None:
            raise RuntimeError("no producer: the last transaction failed and none started yet")
        return self._producer

    async def __aenter__(self) -> Self:
        await self._start()  # the first start raises at once: start-up reports it
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._discard()

    async def run(self, send: Send) -> None:
        """Run one transaction; commit it only if every record ``send`` sent was delivered.

        Raises :class:`TransactionFailed` otherwise, after discarding the producer. A broken
        producer is replaced first, retrying until the broker answers.
        """
        if self._producer is None:
            await self._restart()
        producer = self.producer
        try:
            await producer.begin_transaction()
            futures = await send(producer)
            if futures:
                # One wait per transaction, not per record: the records went out meanwhile.
                await asyncio.wait(futures)
                failed = [f.exception() for f in futures if f.exception() is not None]
                if failed:
                    raise TransactionFailed(
                        f"{len(failed)} of {len(futures)} record batches were not delivered "
                        f"({failed[0]!r})"
                    ) from failed[0]
            await producer.commit_transaction()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._discard()
            if isinstance(exc, TransactionFailed):
                raise
            raise TransactionFailed(f"the transaction failed: {exc!r}") from exc

    async def _start(self) -> None:
        stack = AsyncExitStack()
        producer = await stack.enter_async_context(connected(self._make(), self.kafka))
        self._stack, self._producer = stack, producer

    async def _restart(self) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            try:
                await self._start()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.warning("cannot start a new producer (%s); retrying in %.1fs", exc,
                                 backoff)  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            else:
                self.replaced += 1
                return

    async def _discard(self) -> None:
        stack, self._stack, self._producer = self._stack, None, None
        if stack is None:
            return
        # Its batches are done or will expire; a stop that hangs on a dead broker is abandoned.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stack.aclose(), _STOP_SECONDS)
