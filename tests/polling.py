"""Waiting in tests: poll a check until it holds, and ask whether a process still runs.

One helper per shape, for every tier: :func:`wait_for` blocks (cluster tests, which drive a real
API server with blocking calls), :func:`until` awaits (a check may be a plain function or return
an awaitable). Both return what the check returned, and fail naming what did not happen.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["alive", "until", "wait_for"]

T = TypeVar("T")


def wait_for(
    what: str, check: Callable[[], T | None], timeout: float = 60.0, poll: float = 0.2
) -> T:
    """Call ``check`` every ``poll`` seconds until it returns something truthy, and return it;
    fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(poll)


async def until(
    what: str, check: Callable[[], Any], timeout: float = 60.0, poll: float = 0.2
) -> Any:
    """:func:`wait_for` for a running event loop: the loop goes on between checks, and a check
    may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(poll)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie (a child that exited and was not
    reaped yet counts as gone, unlike for ``os.kill(pid, 0)``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"
