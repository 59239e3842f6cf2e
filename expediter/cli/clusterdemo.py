"""``expediter demo --cluster``: the field-analysis burst, scaled by the real KEDA (dev cluster).

The same burst and summary as ``make demo`` (:mod:`expediter.cli.demo`), but the fleet runs as
pods (:mod:`expediter.cli.clusterfleet`): KEDA polls the lag and activates each Deployment, the
real HPA sets its replicas, the scheduler places the pods and the local node runs them as
worker processes. The ``watch`` view each second shows the real numbers: the Deployments'
replicas, KEDA's HPA, and the pods that wait with the scheduler's (or the node's) reason.

The orchestrator runs as a pod too; the burst starts once it is ready, so that the times
measure KEDA's reaction to the burst, not the orchestrator's start. "First replica" is the
first moment an agent's Deployment asks for a pod above its minReplicaCount (KEDA's activation,
or the HPA's first step up), "peak" the moment the
fleet had the most pods, and "back to minimum" that every agent's Deployment is at its
minReplicaCount with no pod left, after the cooldown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.live import Live
from rich.text import Text

from expediter.cli.clusterfleet import ClusterFleet, deployment_replicas
from expediter.cli.demo import DemoSummary, burst, demo_broker, report_of
from expediter.cli.output import console, wide_console
from expediter.dev import Broker
from expediter.dev.cluster.podlisting import cluster_pods
from expediter.orchestrator.submitting import Submission
from expediter.supervising import LagSampler, ScaledAgent
from expediter.watching import ClusterReader, Snapshot, Watcher, cluster_source, refresh, render

__all__ = ["cluster_demo"]

ORCHESTRATOR_READY_SECONDS = 180.0
RUN_SECONDS = 240.0
"""The burst, its workflows and the cooldown must fit in this (slow 2-core machines)."""


async def cluster_demo(
    agents: list[ScaledAgent], prefix: str, count: int, rate: float, *, polling_interval: int,
    cooldown: int, max_replicas: int, quiet: bool,
) -> DemoSummary:  # fmt: skip
    started = time.monotonic()
    async with demo_broker(prefix, quiet=quiet) as broker:
        fleet = ClusterFleet(
            namespace=prefix.rstrip("."), bootstrap=broker.bootstrap, prefix=prefix,
            agents=agents, root=Path.cwd(), polling_interval=polling_interval,
            cooldown=cooldown, max_replicas=max_replicas,
        )  # fmt: skip
        summary = DemoSummary(prefix=prefix, broker=broker.bootstrap, submitted=count)
        try:
            await asyncio.to_thread(fleet.open)
            summary.cluster = _cluster_info(fleet)
            if not quiet:
                console.print(
                    f"dev cluster {'started' if fleet.started_cluster else 'found'} "
                    f"(HPA sync {summary.cluster['hpa_sync_seconds']:g}s); fleet applied to "
                    f"namespace {fleet.namespace}; waiting for the orchestrator's pod ...",
                    highlight=False,
                )
                for note in fleet.notes:
                    console.print(f"note: {note}", highlight=False, style="yellow")
            await _orchestrator_ready(fleet)
            await _run(fleet, broker, summary, count, rate, quiet)
        finally:
            summary.leftover_processes = await asyncio.to_thread(fleet.close)
    summary.seconds = round(time.monotonic() - started, 1)
    return summary


def _cluster_info(fleet: ClusterFleet) -> dict[str, Any]:
    assert fleet.state is not None
    return {"namespace": fleet.namespace, "kubeconfig": str(fleet.kubeconfig),
            "hpa_sync_seconds": fleet.state.hpa_sync_period,
            "started": fleet.started_cluster, "nodes": list(fleet.state.nodes)}  # fmt: skip


async def _orchestrator_ready(fleet: ClusterFleet) -> None:
    deadline = time.monotonic() + ORCHESTRATOR_READY_SECONDS
    while True:
        replicas = await asyncio.to_thread(deployment_replicas, fleet.kubeconfig, fleet.namespace)
        if replicas.get("orchestrator", {}).get("ready", 0) >= 1:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the orchestrator's pod was not ready in {ORCHESTRATOR_READY_SECONDS:.0f}s; "
                f"see `expediter dev cluster status` and its log under {fleet.node_dir}/logs"
            )
        await asyncio.sleep(1.0)


async def _run(
    fleet: ClusterFleet, broker: Broker, summary: DemoSummary, count: int, rate: float,
    quiet: bool,
) -> None:  # fmt: skip
    assert fleet.local is not None
    assert fleet.state is not None
    api = fleet.local.api(fleet.state)
    reader = ClusterReader(fleet.namespace, fleet.kubeconfig)
    source = cluster_source(reader, fleet.agents)
    submissions: list[Submission] = []
    burst_at = time.monotonic()
    finished = asyncio.create_task(
        burst(broker.settings, fleet.prefix, count, rate, None, submissions)
    )
    watcher = Watcher(fleet.agents)
    tally = _Tally({a.name: 0 for a in fleet.agents}, summary)
    try:
        async with LagSampler(broker.settings) as sampler:
            view = Live(console=wide_console(), auto_refresh=False) if not quiet else None
            with view or contextlib.nullcontext():
                while time.monotonic() - burst_at < RUN_SECONDS:
                    snapshot = await refresh(sampler, watcher, source)
                    pods = await asyncio.to_thread(cluster_pods, api, fleet.namespace)
                    at_min = tally.observe(snapshot, time.monotonic() - burst_at)
                    done = sum(1 for s in submissions if s.outcome is not None)
                    if view is not None:
                        title = (
                            f"expediter watch ({fleet.namespace}, replicas from KEDA and the HPA)"
                        )
                        view.update(Group(render(snapshot, title=title), _pods_text(pods),
                                          Text(f"workflows done {done}/{count}", style="bold")),
                                    refresh=True)  # fmt: skip
                    tally.scaled_back = finished.done() and at_min
                    if tally.scaled_back:
                        break
                    await asyncio.sleep(1.0)
        if not quiet:
            console.print()
    finally:
        if not finished.done():
            finished.cancel()
        await asyncio.gather(finished, return_exceptions=True)
    if not finished.cancelled() and finished.exception() is not None and not quiet:
        console.print(f"waiting for the workflows failed: {finished.exception()}")
    summary.scaled_back = tally.scaled_back
    summary.peak_replicas = tally.peaks
    summary.done = sum(1 for s in submissions if s.outcome is not None)
    summary.completed = sum(1 for s in submissions
                            if (s.outcome or {}).get("status") == "completed")  # fmt: skip
    seconds = sorted(s.seconds for s in submissions if s.seconds is not None)
    summary.p50_seconds = round(seconds[len(seconds) // 2], 2) if seconds else None
    summary.reports = [report_of(s) for s in submissions if s.outcome is not None][:3]


@dataclass
class _Tally:
    """Peaks and times, from each refresh's rows."""

    peaks: dict[str, int]
    summary: DemoSummary
    best_total: int = 0
    scaled_back: bool = False

    def observe(self, snapshot: Snapshot, elapsed: float) -> bool:
        """Count this refresh in; whether every agent is at its minimum, with no pod left."""
        total, asked, at_min = 0, 0, len(snapshot.rows) == len(self.peaks)
        for row in snapshot.rows:
            replicas = row.actual.replicas or 0
            spec = int(row.actual.detail.get("spec_replicas") or 0)
            self.peaks[row.agent] = max(self.peaks[row.agent], replicas)
            total, asked = total + replicas, asked + max(spec - row.min_replicas, 0)
            at_min = at_min and spec == row.min_replicas and replicas == row.min_replicas
        if asked and self.summary.first_replica_seconds is None:
            self.summary.first_replica_seconds = round(elapsed, 1)
        if total > self.best_total:
            self.best_total, self.summary.peak_seconds = total, round(elapsed, 1)
        return at_min


def _pods_text(listing: dict[str, Any]) -> Text:
    pods = [p for p in listing["pods"] if not p["name"].startswith("orchestrator")]
    phases = Counter(str(p["phase"]) for p in pods)
    ready = sum(1 for p in pods if p["ready"] and p["phase"] == "Running")
    counts = ", ".join(f"{n} {phase.lower()}" for phase, n in sorted(phases.items()))
    text = Text(f"agent pods: {len(pods)} ({counts or 'none'}; {ready} ready)", style="dim")
    for pod in pods:
        if pod.get("reason"):
            text.append(f"\n  {pod['name']}: {pod['phase']}, {pod['reason']}: "
                        f"{pod.get('message') or ''}", style="yellow")  # fmt: skip
    return text
