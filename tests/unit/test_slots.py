"""The worker's task slots: a bound on concurrency, first come first served, no leak on cancel."""

from __future__ import annotations

import asyncio

from expediter.worker.limiting import Slots


async def test_slots_bound_concurrency_and_serve_waiters_in_order() -> None:
    slots = Slots(2)
    running, peak, order = 0, 0, []

    async def job(n: int) -> None:
        nonlocal running, peak
        if not slots.take_now():
            await slots.take()
        try:
            running += 1
            peak = max(peak, running)
            order.append(n)
            await asyncio.sleep(0.01)
        finally:
            running -= 1
            slots.give()

    await asyncio.gather(*(job(n) for n in range(8)))
    assert peak == 2
    assert order == list(range(8))


async def test_a_cancelled_waiter_leaves_no_slot_taken() -> None:
    slots = Slots(1)
    assert slots.take_now()
    waiter = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    slots.give()
    assert slots.take_now(), "the slot was lost to the cancelled waiter"


async def test_a_waiter_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    slots = Slots(1)
    assert slots.take_now()
    first = asyncio.create_task(slots.take())
    second = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    slots.give()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs again
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)  # so `second` gets it
    assert not slots.take_now()
    slots.give()
    assert slots.take_now()


async def test_a_waiter_skipped_by_give_after_its_cancel_leaves_quietly() -> None:
    # The worker's 35 s outage test crashed with "<Future cancelled> is not in deque": a batch
    # cancelled by a rewind, and a give() from another task before it woke up.
    slots = Slots(1)
    assert slots.take_now()
    cancelled = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    cancelled.cancel()
    slots.give()  # pops the cancelled waiter, skips it, and frees the slot
    try:
        await cancelled
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the cancelled take() returned")
    assert slots.take_now(), "the slot given back was lost"
    assert not slots.take_now()
