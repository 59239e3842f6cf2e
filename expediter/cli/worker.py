"""``expediter worker agents/<file>.py``: run one agent until SIGTERM, then drain and exit 0.

Signals only set a flag (the Worker drains); a watchdog thread then gives the drain
``EXPEDITER_DRAIN_SECONDS`` plus ``EXPEDITER_HARD_DEADLINE_SECONDS`` and ends the process with
exit code 70 if it is still there, so that a hung handler can never keep a pod Terminating. A
second Ctrl-C exits at once (130). A crashed internal task exits 1; a bad agent file or setting
exits 2.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from expediter.authoring.loading import load_agent
from expediter.cli.stopping import arm_watchdog
from expediter.reasoning import engine_from_settings
from expediter.settings import EngineSettings, KafkaSettings, WorkerSettings
from expediter.worker import looping
from expediter.worker.logs import configure_logging
from expediter.worker.working import Worker

__all__ = ["worker"]


def worker(
    path: Annotated[Path, typer.Argument(help="The agent file, e.g. agents/soil_analyzer.py.")],
    instance: Annotated[
        str | None,
        typer.Option(
            help="Replica name; it makes the transactional id, so a restart with the same name "
            "fences the old one (default $EXPEDITER_INSTANCE; on Kubernetes the pod name; else "
            "<host>-<pid>, unique per process)."
        ),
    ] = None,
    json_logs: Annotated[
        bool | None, typer.Option("--json-logs/--plain-logs", help="Log JSON lines.")
    ] = None,
) -> None:
    """Run one agent: join agents.<capability> on tasks.<capability> and publish results."""
    settings = WorkerSettings()
    if instance:
        settings = settings.model_copy(update={"instance": instance})
    configure_logging(json_logs=settings.json_logs if json_logs is None else json_logs)
    agent = load_agent(path)
    engine = engine_from_settings(EngineSettings.from_env(), rules=agent.rules)
    running = Worker(agent, engine, kafka=KafkaSettings(), settings=settings)
    looping.run(_serve(running), settings.event_loop)


async def _serve(running: Worker) -> None:
    loop = asyncio.get_running_loop()
    requested = threading.Event()
    budget = running.settings.drain_seconds + running.settings.hard_deadline_seconds

    # signal.signal, not loop.add_signal_handler: a handler that blocks the event loop would
    # keep a loop-level handler from ever running, and then nothing would start the watchdog.
    def on_signal(signum: int, _frame: object) -> None:
        if requested.is_set():
            os._exit(130)  # a second signal: the user means it
        requested.set()
        name = signal.Signals(signum).name
        os.write(2, f"{name}: draining (at most {budget:.0f}s)\n".encode())
        arm_watchdog(budget)
        loop.call_soon_threadsafe(running.request_stop)

    async def guard_crash_shutdown() -> None:
        # A crash stops the worker without a signal; its shutdown gets the same deadline.
        await running.stopping.wait()
        if not requested.is_set():
            arm_watchdog(budget)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    guard = asyncio.create_task(guard_crash_shutdown())
    try:
        await running.run()
    finally:
        guard.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
