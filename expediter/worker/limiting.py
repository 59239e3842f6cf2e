"""How many tasks a worker runs at once: :class:`Slots`, a semaphore for the hot path.

Called by the worker (:mod:`expediter.worker.working`) once per task.
"""

from __future__ import annotations

import asyncio
import collections

__all__ = ["Slots"]


class Slots:
    """How many tasks may run at once: a semaphore whose free case needs no await.

    asyncio.Semaphore costs two coroutines per acquire, once per task; most acquires find a
    slot free. A released slot goes straight to the longest waiter (first come, first served).
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take_now(self) -> bool:
        """Take a slot if one is free and nobody waits for one; say whether it did."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        if self.take_now():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a slot in the same turn it was cancelled: pass it on
            elif waiter in self._waiters:
                # A give() between the cancel and this line already popped (and skipped) it.
                self._waiters.remove(waiter)
            raise

    def give(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
