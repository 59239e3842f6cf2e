"""``expediter demo``: what ``make demo`` runs, the field-analysis fleet scaled on lag.

The flow, on a real broker (see :mod:`expediter.dev.locating`; one is started and stopped when
none is running):

1. apply the topic catalog under a fresh prefix (``demo-<hex>.``), so runs never mix;
2. run the local supervisor (:mod:`expediter.supervising`, what ``expediter up`` runs) for the
   orchestrator and the fleet agents, with a short polling interval and cooldown;
3. submit a burst of field-analysis workflows and show, once a second, the ``watch`` view
   (:mod:`expediter.watching`): lag, KEDA's metric, desired and actual replicas, scale events;
4. once every workflow is done, wait for the cooldown to scale the agents back to their minimum;
5. print a few final reports, stop everything cleanly, and sum up: workflows done, peak
   replicas per agent, time from the burst to the first replica and to the peak.

``--smoke`` runs the older smoke flow instead (topic, produce N, consume N, count).
``--cluster`` runs the same burst on the dev cluster (:mod:`expediter.cli.clusterdemo`): the
real KEDA and HPA decide the replicas and the workers are pods of the local node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from expediter.cli.output import console, emit_json, fail, wide_console
from expediter.cli.supervising import load_agents
from expediter.dev import Broker, SmokeReport, provided_broker, run_smoke
from expediter.messaging import TopicNames, apply_plan, load_catalog, plan_topics
from expediter.orchestrator.submitting import Submission, Submitter
from expediter.settings import DevSettings, KafkaSettings
from expediter.supervising import LagSampler, ScaledAgent, Supervisor, SupervisorOptions
from expediter.watching import (
    Watcher,
    actual_from_supervisor,
    refresh,
    render,
    supervisor_alive,
)

__all__ = ["DemoSummary", "burst", "demo", "demo_broker", "report_of"]

FLEET = "soil_analyzer,pest_detector,crop_mapper"
WORKFLOW = "field-analysis"


@dataclass
class DemoSummary:
    """What ``make demo`` ends with (``--json`` prints it)."""

    prefix: str
    broker: str
    submitted: int
    done: int = 0
    completed: int = 0
    p50_seconds: float | None = None
    peak_replicas: dict[str, int] = field(default_factory=dict)
    first_replica_seconds: float | None = None
    """From the first submission to the first replica started on lag."""
    peak_seconds: float | None = None
    """From the first submission to the highest total replica count."""
    scaled_back: bool = False
    """Every agent came back to its minReplicaCount after the cooldown."""
    leftover_processes: int = 0
    seconds: float = 0.0
    reports: list[dict[str, Any]] = field(default_factory=list)
    cluster: dict[str, Any] | None = None
    """With --cluster: the namespace, kubeconfig, HPA sync period and nodes of the run."""

    @property
    def ok(self) -> bool:
        return self.done == self.submitted and self.leftover_processes == 0


def demo(
    smoke: Annotated[
        bool, typer.Option("--smoke", help="Run the smoke flow (produce, consume, count).")
    ] = False,
    count: Annotated[
        int | None,
        typer.Option(min=1, help="Workflows in the burst (60), or tasks with --smoke (1000)."),
    ] = None,
    rate: Annotated[float, typer.Option(min=1, help="Workflows submitted per second.")] = 60.0,
    polling_interval: Annotated[int, typer.Option(min=1, help="KEDA's poll, shortened.")] = 1,
    cooldown: Annotated[int, typer.Option(min=0, help="KEDA's cooldown, shortened.")] = 10,
    max_replicas: Annotated[
        int, typer.Option(min=1, help="Lower maxReplicaCount to this (a small machine).")
    ] = 4,
    partitions: Annotated[int, typer.Option(min=1, help="--smoke: partitions.")] = 3,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Run the fleet as pods on the dev cluster (`expediter dev cluster`, started "
            "if none runs): the real KEDA and HPA decide the replicas.",
        ),
    ] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run the field-analysis fleet on a real broker, scaled on lag as KEDA would; sum it up."""
    if smoke:
        _smoke(count or 1000, partitions, json_)
        return
    prefix = f"demo-{uuid.uuid4().hex[:6]}."
    agents = load_agents(Path("."), FLEET, prefix, polling_interval=polling_interval,
                         cooldown=cooldown, max_replicas=max_replicas)  # fmt: skip
    if not json_:
        how = "on the dev cluster, by the real KEDA and HPA" if cluster else "as KEDA would"
        console.print(
            f"[bold]Expediter demo[/]: {count or 60} {WORKFLOW} workflows; the fleet "
            f"({FLEET.replace('_', '-').replace(',', ', ')}) scales on lag {how} "
            f"(poll {polling_interval}s, cooldown {cooldown}s, at most {max_replicas} replicas)",
            highlight=False,
        )
    if cluster:
        from expediter.cli.clusterdemo import cluster_demo

        summary = asyncio.run(cluster_demo(
            agents, prefix, count or 60, rate, polling_interval=polling_interval,
            cooldown=cooldown, max_replicas=max_replicas, quiet=json_,
        ))  # fmt: skip
    else:
        summary = asyncio.run(_fleet(agents, prefix, count or 60, rate, quiet=json_))
    if json_:
        emit_json({**asdict(summary), "ok": summary.ok})
    else:
        _print_summary(summary)
    if not summary.ok:
        fail(f"{summary.done}/{summary.submitted} workflows done, "
             f"{summary.leftover_processes} processes left")  # fmt: skip


@contextlib.asynccontextmanager
async def demo_broker(prefix: str, *, quiet: bool) -> AsyncIterator[Broker]:
    """A running broker (the one found, or one started and stopped here) with the topic
    catalog applied under ``prefix``; shared by this demo and ``demo --cluster``."""
    # The submitter retries a new topic's leader lookups; those retries are not news here.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    async with provided_broker(DevSettings()) as broker:
        if not quiet:
            where = f"{broker.bootstrap}; topics under {prefix}"
            console.print(f"broker: {broker.kind} Apache Kafka {broker.version} at {where}",
                          highlight=False)  # fmt: skip
        plan = await plan_topics(load_catalog(Path("topics/topics.yaml")), broker.settings,
                                 prefix=prefix)  # fmt: skip
        await apply_plan(plan, broker.settings)
        yield broker


async def _fleet(
    agents: list[ScaledAgent], prefix: str, count: int, rate: float, *, quiet: bool
) -> DemoSummary:
    started = time.monotonic()
    async with demo_broker(prefix, quiet=quiet) as broker:
        with tempfile.TemporaryDirectory(prefix="expediter-demo-") as scratch:
            summary = await _run(broker, prefix, agents, count, rate, Path(scratch), quiet)
    summary.seconds = round(time.monotonic() - started, 1)
    return summary


async def _run(
    broker: Broker, prefix: str, agents: list[ScaledAgent], count: int, rate: float,
    scratch: Path, quiet: bool,
) -> DemoSummary:  # fmt: skip
    env = {**os.environ, "EXPEDITER_BOOTSTRAP": broker.bootstrap,
           "EXPEDITER_TOPIC_PREFIX": prefix, "EXPEDITER_HTTP_PORT": "0",
           "EXPEDITER_DATA_DIR": str(scratch / "orchestrator")}  # fmt: skip
    root = Path(os.getcwd())
    options = SupervisorOptions(root=root, state_dir=root / DevSettings().dir / "demo", env=env)
    supervisor = Supervisor(agents, broker.settings, options, prefix=prefix)
    running = asyncio.create_task(supervisor.run())
    summary = DemoSummary(prefix=prefix, broker=broker.bootstrap, submitted=count)
    peaks = {a.name: 0 for a in agents}
    try:
        submissions: list[Submission] = []
        burst_at = time.monotonic()
        finished = asyncio.create_task(
            burst(broker.settings, prefix, count, rate, running, submissions)
        )
        watcher = Watcher(agents)
        best_total, scaled_back = 0, False
        async with LagSampler(broker.settings) as sampler:
            view = Live(console=wide_console(), auto_refresh=False) if not quiet else None
            with view or contextlib.nullcontext():
                while not running.done():
                    source = _source(supervisor, agents, prefix)
                    snapshot = await refresh(sampler, watcher, source)
                    total = 0
                    for agent in supervisor.state.agents:
                        peaks[agent.name] = max(peaks[agent.name], agent.replicas)
                        total += agent.replicas
                    if total > best_total:
                        best_total, summary.peak_seconds = total, time.monotonic() - burst_at
                    done = sum(1 for s in submissions if s.outcome is not None)
                    line = Text(f"workflows done {done}/{count}", style="bold")
                    if view is not None:
                        view.update(Group(render(snapshot, title=f"expediter watch ({prefix})"),
                                          line), refresh=True)  # fmt: skip
                    scaled_back = finished.done() and all(
                        a.replicas == a.min_replicas and not a.stopping_pids
                        for a in supervisor.state.agents
                    )
                    if scaled_back or time.monotonic() - burst_at > 150:
                        break
                    await asyncio.sleep(1.0)
        if view is not None:
            console.print()
        summary.scaled_back = scaled_back
        if not finished.done():
            finished.cancel()
            # Let the submitter close its clients before the supervisor stops.
            await asyncio.gather(finished, return_exceptions=True)
        elif not finished.cancelled() and finished.exception() is not None and not quiet:
            console.print(f"waiting for the workflows failed: {finished.exception()}")
        summary.first_replica_seconds = _first_replica(supervisor, burst_at)
    finally:
        supervisor.request_stop()
        await running
    summary.peak_replicas = {
        name: max(peak, *(e.to for e in supervisor.state.events if e.agent == name), 0)
        for name, peak in peaks.items()
    }
    summary.leftover_processes = sum(1 for pid in supervisor.started_pids if supervisor_alive(pid))
    summary.done = sum(1 for s in submissions if s.outcome is not None)
    summary.completed = sum(
        1 for s in submissions if (s.outcome or {}).get("status") == "completed"
    )
    seconds = sorted(s.seconds for s in submissions if s.seconds is not None)
    summary.p50_seconds = round(seconds[len(seconds) // 2], 2) if seconds else None
    summary.reports = [report_of(s) for s in submissions if s.outcome is not None][:3]
    summary.peak_seconds = None if summary.peak_seconds is None else round(summary.peak_seconds, 1)
    return summary


def _source(supervisor: Supervisor, agents: list[ScaledAgent], prefix: str) -> Any:
    async def read() -> Any:
        return actual_from_supervisor(supervisor.state, agents, prefix)

    return read


async def burst(
    kafka: KafkaSettings, prefix: str, count: int, rate: float,
    running: asyncio.Task[Any] | None, submissions: list[Submission],
) -> None:  # fmt: skip
    """Submit ``count`` workflows at ``rate`` (into ``submissions``), then wait for them all;
    ``running`` (the local supervisor), when it fails, stops the burst with its error."""
    async with Submitter(kafka, TopicNames(prefix), {WORKFLOW}) as client:
        began = time.monotonic()
        for n in range(count):
            if running is not None and running.done():
                running.result()  # the supervisor failed: raise its error
            # Varied fields: some have pests (and need the crop mapper), some do not.
            field_id = f"field-{chr(97 + n % 26)}{n // 26}"
            submissions.append(await client.submit(WORKFLOW, {"field_id": field_id}))
            pause = began + (n + 1) / rate - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
        await client.wait(submissions, timeout=150)


def _first_replica(supervisor: Supervisor, burst_at: float) -> float | None:
    wall = time.time() - (time.monotonic() - burst_at)
    firsts = [e.time - wall for e in supervisor.state.events if e.from_ == 0 and e.to > 0
              and e.time >= wall]  # fmt: skip
    return round(min(firsts), 1) if firsts else None


def report_of(s: Submission) -> dict[str, Any]:
    """A finished workflow's report, in the summary's shape."""
    outcome = s.outcome or {}
    report = outcome.get("report") or {}
    soil, pests, crop = report.get("soil") or {}, report.get("pests") or {}, report.get("map")
    return {
        "workflow_id": s.workflow_id, "status": outcome.get("status"),
        "field": report.get("field_id"), "soil": soil.get("health"),
        "advice": (soil.get("advice") or {}).get("recommendation"),
        "pests": pests.get("count"), "map_zoom": (crop or {}).get("zoom"),
    }  # fmt: skip


def _print_summary(summary: DemoSummary) -> None:
    reports = Table("workflow", "field", "status", "soil", "advice", "pests", "map zoom",
                    title="final reports (first 3)", title_justify="left")  # fmt: skip
    for r in summary.reports:
        reports.add_row(*(str(r[k]) if r[k] is not None else "-" for k in
                          ("workflow_id", "field", "status", "soil", "advice", "pests",
                           "map_zoom")))  # fmt: skip
    wide_console().print(reports)
    peaks = ", ".join(f"{name} {n}" for name, n in summary.peak_replicas.items())
    console.print(
        f"[bold]summary[/]: workflows done {summary.done}/{summary.submitted} "
        f"({summary.completed} completed, p50 {summary.p50_seconds}s); peak replicas: {peaks}; "
        f"first replica {summary.first_replica_seconds}s and peak {summary.peak_seconds}s after "
        f"the burst; scaled back to minimum: {'yes' if summary.scaled_back else 'no'}; "
        f"processes left: {summary.leftover_processes}; took {summary.seconds}s",
        highlight=False,
    )
    if summary.cluster:
        console.print(
            f"replicas decided by KEDA and the HPA (sync {summary.cluster['hpa_sync_seconds']:g}s)"
            f" on the dev cluster, namespace {summary.cluster['namespace']}; pods run by the "
            f"local node ({', '.join(summary.cluster['nodes'])})",
            highlight=False,
        )


def _smoke(count: int, partitions: int, json_: bool) -> None:
    if not json_:
        console.print("[bold]Expediter demo (smoke flow)[/]: checks the Kafka path end to end.")
    report = asyncio.run(_run_smoke(count, partitions, quiet=json_))
    if json_:
        emit_json({**asdict(report), "ok": report.ok})
    else:
        console.print(f"topic          {report.topic} ({report.partitions} partitions)")
        console.print(f"produced       {report.produced}")
        console.print(f"consumed       {report.consumed}  per partition {report.per_partition}")
        console.print(f"committed      {report.committed}")
        console.print(f"took           {report.seconds:.2f}s")
    if not report.ok:
        fail("produced, consumed and committed counts differ")


async def _run_smoke(count: int, partitions: int, *, quiet: bool) -> SmokeReport:
    with Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as bars:
        produced = bars.add_task("produce", total=count)
        consumed = bars.add_task("consume", total=count)
        async with provided_broker(DevSettings()) as broker:
            if not quiet:
                bars.console.print(
                    f"broker: {broker.kind} Apache Kafka {broker.version} at {broker.bootstrap}"
                )
            return await run_smoke(
                broker.settings,
                count=count,
                partitions=partitions,
                progress=lambda what, n: bars.advance(
                    produced if what == "produced" else consumed, n
                ),
            )
