"""Which event loop a worker process runs on, and running a coroutine on it.

uvloop where it is installed: the worker's cost per task is mostly Python on the event loop
(callbacks, futures, socket reads and writes), and uvloop does that part in C. asyncio's own
loop otherwise, or when ``EXPEDITER_EVENT_LOOP=asyncio`` asks for it. Called by
``expediter worker`` (expediter.cli.worker) and the worker bench, which runs its baseline on
the same loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

from expediter.errors import ConfigurationError

__all__ = ["loop_kind", "run"]

T = TypeVar("T")


def loop_kind(choice: Literal["auto", "uvloop", "asyncio"] = "auto") -> str:
    """``uvloop`` or ``asyncio``: what ``choice`` means on this machine."""
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not installed:
        raise ConfigurationError(
            "EXPEDITER_EVENT_LOOP=uvloop, but uvloop is not installed; install it "
            "(pip install uvloop) or set EXPEDITER_EVENT_LOOP=auto"
        )
    if choice == "asyncio" or not installed:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T], choice: Literal["auto", "uvloop", "asyncio"] = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names."""
    if loop_kind(choice) == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)
