"""The submitter's clients stop without hiding the error that stopped the submission."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

from expediter.orchestrator.submitting import Submitter


def submitter_whose_stop_fails() -> Submitter:
    # As in an outage: aiokafka's producer cancels its sender while stopping.
    bare: Submitter = object.__new__(Submitter)
    bare._stack = AsyncExitStack()

    async def stop() -> None:
        raise asyncio.CancelledError

    bare._stack.push_async_callback(stop)
    return bare


async def test_a_failed_stop_while_failing_leaves_the_first_error() -> None:
    bare = submitter_whose_stop_fails()
    error = ConnectionError("the broker went away")
    await bare.__aexit__(ConnectionError, error, None)  # returns: the with re-raises `error`


async def test_a_failed_stop_on_success_is_reported() -> None:
    bare = submitter_whose_stop_fails()
    with pytest.raises(asyncio.CancelledError):
        await bare.__aexit__(None, None, None)
