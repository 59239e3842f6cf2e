"""``expediter watch``: a live view per capability of lag, KEDA's metric and replicas.

Each refresh reads every agent's task topic and group offsets from the broker and runs them
through the scaling engine (metric, active, desired); the actual replicas come from the local
supervisor's state file (``expediter up``) or, with ``--kubeconfig`` / ``--namespace``, from the
cluster's Deployment, HPA and ScaledObject status, with KEDA's own metric from the external
metrics API (shown instead of the engine's, which is kept beside it when they differ).
``--once --json`` prints one snapshot for scripts (two samples ``--interval`` apart, so the rates
are filled in); ``--json`` alone prints one snapshot a line. Ctrl-C ends the live view. For an
agent with the work-based trigger the metric is expediter scaler's (pending tokens over a
replica's tokens/s), read in process as ``expediter up`` reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live

from expediter.cli.output import console, emit_json, wide_console
from expediter.cli.supervising import default_state_dir, load_agents
from expediter.errors import ConfigurationError
from expediter.messaging import TopicNames
from expediter.settings import KafkaSettings, OrchestratorSettings
from expediter.supervising import STATE_FILE, LagSampler, ScaledAgent
from expediter.supervising.workreading import WorkReader
from expediter.watching import (
    ActualSource,
    ClusterReader,
    Watcher,
    cluster_source,
    refresh,
    render,
    supervisor_source,
)

__all__ = ["watch"]


def watch(
    agents: Annotated[
        str | None, typer.Option(help="Comma-separated agents (file stems); default all.")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="JSON for scripts.")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between refreshes.")] = 1.0,
    state_dir: Annotated[
        Path | None, typer.Option(help="The supervisor's state (default .expediter/supervisor).")
    ] = None,
    kubeconfig: Annotated[
        Path | None, typer.Option(help="Read actual replicas from this cluster.")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="The cluster namespace (implies the cluster).")
    ] = None,
    context: Annotated[str | None, typer.Option(help="The kubeconfig context.")] = None,
    root: Annotated[Path, typer.Option(help="Repository root (keda/ is read).")] = Path("."),
) -> None:
    """Show per capability: offsets, lag, rates, KEDA's metric, desired and actual replicas."""
    prefix = OrchestratorSettings().topic_prefix
    chosen = load_agents(root, agents, prefix)
    if kubeconfig is not None or namespace is not None or context is not None:
        source = _cluster(chosen, kubeconfig, namespace or "expediter", context)
    else:
        source = supervisor_source((state_dir or default_state_dir()) / STATE_FILE, chosen, prefix)
    try:
        asyncio.run(_watch(chosen, source, prefix, once=once, json_=json_, interval=interval))
    except KeyboardInterrupt:
        return  # Ctrl-C ends the live view; that is its normal way out


def _cluster(
    agents: list[ScaledAgent], kubeconfig: Path | None, namespace: str, context: str | None
) -> ActualSource:
    if kubeconfig is not None and not kubeconfig.is_file():
        raise ConfigurationError(f"--kubeconfig {kubeconfig}: no such file")
    try:
        reader = ClusterReader(namespace, kubeconfig, context)
    except Exception as exc:  # kubernetes.config.ConfigException and friends
        raise ConfigurationError(
            f"cannot load the kubeconfig ({exc}); pass --kubeconfig PATH and --context NAME"
        ) from exc
    return cluster_source(reader, agents)


async def _watch(
    agents: list[ScaledAgent], source: ActualSource, prefix: str, *, once: bool, json_: bool,
    interval: float,
) -> None:  # fmt: skip
    watcher = Watcher(agents)
    async with contextlib.AsyncExitStack() as stack:
        reader = None
        if any(a.work is not None for a in agents):
            # The work trigger's metric, answered by expediter scaler's own code in process.
            from expediter.scaler.local import local_work_reader

            reader = await stack.enter_async_context(
                local_work_reader(KafkaSettings(), TopicNames(prefix))
            )
        await _show(agents, watcher, source, reader, once=once, json_=json_, interval=interval)


async def _show(
    agents: list[ScaledAgent], watcher: Watcher, source: ActualSource, reader: WorkReader | None,
    *, once: bool, json_: bool, interval: float,
) -> None:  # fmt: skip
    async with LagSampler(KafkaSettings()) as sampler:
        if once:
            await refresh(sampler, watcher, source, reader)  # the first sample: rates need two
            await asyncio.sleep(interval)
            snapshot = await refresh(sampler, watcher, source, reader)
            if json_:
                emit_json(snapshot.as_dict())
            else:
                wide_console().print(render(snapshot))
            return
        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
            if json_:
                while True:
                    emit_json((await refresh(sampler, watcher, source, reader)).as_dict())
                    await asyncio.sleep(interval)
            with Live(console=console, auto_refresh=False, transient=False) as live:
                while True:
                    snapshot = await refresh(sampler, watcher, source, reader)
                    live.update(render(snapshot, title="expediter watch (Ctrl-C ends)"),
                                refresh=True)  # fmt: skip
                    await asyncio.sleep(interval)
