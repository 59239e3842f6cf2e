"""A transactional producer that waits out a broker outage while it looks up a coordinator.

Why: aiokafka's sender retries a coordinator lookup that fails with "not ready" or "not
available", but a lookup whose connection is closed under it (the broker stopping) raises a
plain ``KafkaError`` from inside the sender's routine. The routine dies, and with it the
producer: the transaction's ``send_offsets_to_transaction`` fails, and a Faust app crashes on a
broker restart that a consumer would have ridden out. The connection error itself is retriable
(``KafkaConnectionError.retriable``), so here the lookup is retried after the producer's retry
backoff, as the sender already does for the other retriable answers, until the broker is back.
A transaction still cannot outlive the broker's transaction timeout: after it, the broker
aborts it and the commit fails, as it should.

Used by the orchestrator's Faust producer (:mod:`expediter.orchestrator.delivering`) for its
per-partition transactional producers. Reads aiokafka's private ``_sender._find_coordinator``
(aiokafka as pinned in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

__all__ = ["PatientProducer", "is_retriable_lookup_failure"]

log = logging.getLogger("expediter.messaging")


def is_retriable_lookup_failure(exc: BaseException) -> bool:
    """Whether a failed coordinator lookup was a retriable error wrapped as a plain one."""
    cause = exc.__cause__
    return (
        isinstance(exc, KafkaError)
        and not exc.retriable
        and isinstance(cause, KafkaError)
        and bool(cause.retriable)
    )


class PatientProducer(AIOKafkaProducer):  # type: ignore[misc]
    """An ``AIOKafkaProducer`` whose coordinator lookups retry on a closed connection."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        sender = self._sender
        sender._find_coordinator = _patient(sender._find_coordinator, sender._retry_backoff)


def _patient(
    find: Callable[[Any, str], Awaitable[int]], backoff: float
) -> Callable[[Any, str], Awaitable[int]]:
    async def find_coordinator(coordinator_type: Any, key: str) -> int:
        failures = 0
        while True:
            try:
                return await find(coordinator_type, key)
            except KafkaError as exc:
                if not is_retriable_lookup_failure(exc):
                    raise
                failures += 1
                if failures == 1:
                    log.warning("coordinator for %s unreachable (%r); retrying", key, exc.__cause__)
                # At least 100 ms: a broker that is down refuses at once, and a 10 ms backoff
                # would spin the loop.
                await asyncio.sleep(max(backoff, 0.1))

    return find_coordinator
