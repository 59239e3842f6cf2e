"""An in-process worker for tests: started under a topic prefix, warm before the block runs,
drained and stopped after it. Used by the integration and chaos tiers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from expediter import Agent, load_agent
from expediter.reasoning import ReasoningEngine, RuleEngine
from expediter.settings import KafkaSettings, WorkerSettings
from expediter.worker.working import Worker

__all__ = ["running_worker"]


@asynccontextmanager
async def running_worker(
    settings: KafkaSettings,
    agent: Path | Agent[Any, Any],
    prefix: str,
    *,
    engine: ReasoningEngine | None = None,
    timeout: float = 60,
    **overrides: Any,
) -> AsyncIterator[Worker]:
    """The agent (a file or a loaded one) on ``engine`` (rules by default) under ``prefix``;
    ``timeout`` bounds both its warm-up and its drain."""
    worker_settings = WorkerSettings(
        topic_prefix=prefix, instance=f"w-{uuid.uuid4().hex[:6]}", http_port=0,
        retry_backoff_seconds=0.05, **overrides,
    )  # fmt: skip
    loaded = load_agent(agent) if isinstance(agent, Path) else agent
    worker = Worker(loaded, engine or RuleEngine(), kafka=settings, settings=worker_settings)
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(timeout):
            while not worker.health.warm:
                if running.done():
                    running.result()
                await asyncio.sleep(0.05)
        yield worker
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, timeout)
