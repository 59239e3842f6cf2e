"""A handler's time limit (``max_task_seconds``): enforced whether or not the handler waits."""

from __future__ import annotations

import asyncio
import time

import pytest

from expediter.worker.processing import _bounded


async def returns_at_once() -> str:
    return "done"


async def sleeps(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


async def busy_then_sleeps(busy: float, then: float) -> str:
    end = time.monotonic() + busy
    while time.monotonic() < end:  # a first step that holds the loop
        pass
    await asyncio.sleep(then)
    return "late"


async def test_a_handler_that_never_waits_returns_its_value() -> None:
    assert await _bounded(returns_at_once(), 1.0) == "done"


async def test_a_handler_that_waits_within_the_limit_returns_its_value() -> None:
    assert await _bounded(sleeps(0.05), 1.0) == "slept"


async def test_a_handler_past_the_limit_times_out_at_the_limit() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await _bounded(sleeps(5.0), 0.2)
    assert 0.15 < time.monotonic() - started < 4.0  # not the handler's 5 s


async def test_the_first_step_counts_against_the_limit() -> None:
    # 0.2 s busy + 0.2 s asleep under a 0.3 s limit: had the limit restarted after the first
    # step, the handler would finish (at 0.4 s, under 0.2 + 0.3) instead of timing out.
    with pytest.raises(TimeoutError):
        await _bounded(busy_then_sleeps(0.2, 0.2), 0.3)


async def test_an_awaitable_that_is_not_a_coroutine_is_bounded_too() -> None:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await _bounded(future, 0.1)
