"""One refresh of ``expediter watch``: sample every agent's offsets, read the actual replicas.

:func:`refresh` samples each agent's task topic and group (a failed read becomes a note, not a
crash), asks an :data:`ActualSource` what runs, and lets the :class:`Watcher` build the
:class:`Snapshot`. :func:`supervisor_source` reads the local supervisor's state file;
:func:`cluster_source` asks a :class:`~expediter.watching.cluster.ClusterReader` (in a thread:
the kubernetes client blocks).

Who calls it: ``expediter watch`` and the demo.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from expediter.supervising import LagSample, LagSampler, ScaledAgent, read_state
from expediter.supervising.workreading import WorkReader, WorkReading
from expediter.watching.cluster import ClusterReader
from expediter.watching.snapshot import Actual, Snapshot, Watcher, actual_from_supervisor

__all__ = ["ActualSource", "cluster_source", "refresh", "supervisor_source"]

ActualSource = Callable[[], Awaitable[tuple[dict[str, Actual], list[dict[str, Any]], list[str]]]]
"""Returns (actual replicas by agent name, last scale events, notes)."""


def supervisor_source(state_file: Path, agents: Sequence[ScaledAgent], prefix: str) -> ActualSource:
    async def read() -> tuple[dict[str, Actual], list[dict[str, Any]], list[str]]:
        return actual_from_supervisor(read_state(state_file), agents, prefix)

    return read


def cluster_source(reader: ClusterReader, agents: Sequence[ScaledAgent]) -> ActualSource:
    async def read() -> tuple[dict[str, Actual], list[dict[str, Any]], list[str]]:
        found = await asyncio.gather(*(asyncio.to_thread(reader.read, a) for a in agents))
        events = sorted((e for _, listed in found for e in listed), key=lambda e: e["time"] or 0)
        return {a.name: actual for a, (actual, _) in zip(agents, found, strict=True)}, events, []

    return read


async def refresh(
    sampler: LagSampler,
    watcher: Watcher,
    source: ActualSource,
    work_reader: WorkReader | None = None,
) -> Snapshot:
    agents = watcher.agents
    results = await asyncio.gather(
        *(sampler.sample(a.topic, a.group) for a in agents), return_exceptions=True
    )
    # The retry tiers' offsets, which the engine counts as KEDA counts their triggers.
    tiers = await asyncio.gather(
        *(asyncio.gather(*(sampler.sample_or_idle(topic, a.group) for _, topic in a.also))
          for a in agents),
        return_exceptions=True,
    )  # fmt: skip
    samples: dict[str, LagSample] = {}
    also: dict[str, list[LagSample]] = {}
    notes: list[str] = []
    for agent, result, tiered in zip(agents, results, tiers, strict=True):
        if isinstance(result, LagSample) and isinstance(tiered, list):
            samples[agent.name], also[agent.name] = result, tiered
        elif isinstance(result, Exception) or isinstance(tiered, Exception):
            notes.append(f"{agent.name}: {result if isinstance(result, Exception) else tiered}")
        else:
            raise result if isinstance(result, BaseException) else tiered  # type: ignore[misc]
    work = await _work(agents, work_reader, notes)
    actual, events, more = await source()
    return watcher.observe(samples, actual, events, [*notes, *more], also=also, work=work)


async def _work(
    agents: Sequence[ScaledAgent], reader: WorkReader | None, notes: list[str]
) -> dict[str, WorkReading]:
    """expediter scaler's reading of each agent with the work-based trigger; a failed read
    becomes a note."""
    scaled = [a for a in agents if a.work is not None]
    if reader is None:
        notes += [f"{a.name}: scales on pending work, and no scaler reading" for a in scaled]
        return {}
    results = await asyncio.gather(*(reader(a) for a in scaled), return_exceptions=True)
    work: dict[str, WorkReading] = {}
    for agent, result in zip(scaled, results, strict=True):
        if isinstance(result, WorkReading):
            work[agent.name] = result
        elif isinstance(result, Exception):
            notes.append(f"{agent.name}: cannot read pending work: {result}")
        else:
            raise result
    return work
