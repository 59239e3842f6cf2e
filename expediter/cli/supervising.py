"""``expediter up``: the orchestrator plus each agent's workers, scaled on lag as KEDA would.

It reads keda/*.yaml (the ScaledObjects a cluster uses), samples each agent's consumer-group lag
at the manifest's pollingInterval and runs as many ``expediter worker`` processes as KEDA and the
HPA would run pods (:mod:`expediter.supervising`). ``--polling-interval`` and ``--cooldown``
override the manifests' values for demos; ``--max-replicas`` lowers maxReplicaCount on a small
machine. Scale events print as they happen (``--json``: one JSON object a line). Ctrl-C or
SIGTERM stops everything cleanly: workers drain, then the supervisor exits 0. State goes to
``<state dir>/supervisor.json`` and each child's output to ``<state dir>/logs/``. An agent whose
ScaledObject has the work-based ``external`` trigger is scaled on pending tokens as well, read
by expediter scaler's own code in process (:mod:`expediter.scaler.local`).

``--cluster`` runs the same fleet on the dev cluster instead (:mod:`expediter.cli.clusterfleet`):
the manifests applied, the real KEDA and HPA deciding the replicas, the local node running the
pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from expediter.cli.output import console, err_console
from expediter.messaging import TopicNames
from expediter.settings import DevSettings, KafkaSettings, OrchestratorSettings
from expediter.supervising import (
    Report,
    ScaledAgent,
    Supervisor,
    SupervisorOptions,
    SupervisorState,
    read_scaled_agents,
    select_agents,
)

__all__ = ["default_state_dir", "load_agents", "up"]


def default_state_dir() -> Path:
    """``<EXPEDITER_DEV_DIR>/supervisor`` (.expediter/supervisor): shared by up and watch."""
    return DevSettings().dir / "supervisor"


def load_agents(
    root: Path, agents: str | None, prefix: str, *, polling_interval: int | None = None,
    cooldown: int | None = None, max_replicas: int | None = None,
) -> list[ScaledAgent]:  # fmt: skip
    """The ScaledObjects of ``root/keda`` chosen by ``--agents``, with the demo overrides."""
    wanted = [w.strip() for w in (agents or "").split(",") if w.strip()]
    chosen = select_agents(read_scaled_agents(root, TopicNames(prefix)), wanted)
    return [
        a.with_overrides(
            polling_interval=polling_interval, cooldown=cooldown, max_replicas=max_replicas
        )
        for a in chosen
    ]


def up(
    agents: Annotated[
        str | None,
        typer.Option(help="Comma-separated agents (file stems, e.g. soil_analyzer); default all."),
    ] = None,
    polling_interval: Annotated[
        int | None, typer.Option(min=1, help="Seconds between polls (overrides the manifests).")
    ] = None,
    cooldown: Annotated[
        int | None,
        typer.Option(min=0, help="Seconds idle before scaling to 0 (overrides the manifests)."),
    ] = None,
    max_replicas: Annotated[
        int | None, typer.Option(min=1, help="Lower every agent's maxReplicaCount to this.")
    ] = None,
    no_orchestrator: Annotated[
        bool, typer.Option("--no-orchestrator", help="Run the agents only.")
    ] = False,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop by itself after this many seconds.")
    ] = None,
    stop_timeout: Annotated[
        float, typer.Option(min=1, help="Seconds a stop may take before children are killed.")
    ] = 40.0,
    state_dir: Annotated[
        Path | None, typer.Option(help="State file and logs (default .expediter/supervisor).")
    ] = None,
    root: Annotated[
        Path, typer.Option(help="Repository root: keda/, k8s/, agents/, workflows/.")
    ] = Path("."),
    workflows: Annotated[str, typer.Option(help="The orchestrator's workflows folder.")] = (
        "workflows"
    ),
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Run the fleet as pods on the dev cluster (started if none runs): the real "
            "KEDA and HPA scale them.",
        ),
    ] = False,
    namespace: Annotated[
        str, typer.Option(help="--cluster: the namespace the fleet is applied to.")
    ] = "expediter",
    json_: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """Run the orchestrator and scale each agent's workers on lag, as KEDA would; Ctrl-C stops."""
    prefix = OrchestratorSettings().topic_prefix
    chosen = load_agents(root, agents, prefix, polling_interval=polling_interval,
                         cooldown=cooldown, max_replicas=max_replicas)  # fmt: skip
    if cluster:
        from expediter.cli.clusterfleet import ClusterFleet, print_event, up_on_cluster

        fleet = ClusterFleet(
            namespace=namespace, bootstrap=KafkaSettings().bootstrap, prefix=prefix,
            agents=chosen, root=root.resolve(), orchestrator=not no_orchestrator,
            polling_interval=polling_interval, cooldown=cooldown, max_replicas=max_replicas,
        )  # fmt: skip
        up_on_cluster(fleet, duration=duration, report=_json_line if json_ else print_event)
        return
    options = SupervisorOptions(
        root=root.resolve(), state_dir=(state_dir or default_state_dir()).resolve(),
        orchestrator=not no_orchestrator, workflows=workflows, duration=duration,
        stop_timeout=stop_timeout,
    )  # fmt: skip
    report = _json_line if json_ else _print
    if not json_:
        for a in chosen:
            s = a.spec
            console.print(
                f"{a.name:<14} {a.capability:<15} "
                f"replicas {s.min_replica_count}..{s.max_replica_count}"
                f"  {_signal(a)}  poll {s.polling_interval}s"
                f"  cooldown {s.cooldown_period}s  ({a.source})",
                highlight=False,
                soft_wrap=True,
            )
        console.print(f"state {options.state_file}; Ctrl-C stops", highlight=False)
    final = asyncio.run(_supervise(chosen, options, prefix, report))
    if json_:
        _json_line({"event": "summary", "events": [e.as_dict() for e in final.events]})


async def _supervise(
    chosen: list[ScaledAgent], options: SupervisorOptions, prefix: str, report: Report
) -> SupervisorState:
    async with contextlib.AsyncExitStack() as stack:
        reader = None
        if any(a.work is not None for a in chosen):
            # The work trigger's metric, answered by expediter scaler's own code in process.
            from expediter.scaler.local import local_work_reader

            reader = await stack.enter_async_context(
                local_work_reader(KafkaSettings(), TopicNames(prefix))
            )
        supervisor = Supervisor(chosen, KafkaSettings(), options, prefix=prefix, report=report,
                                work_reader=reader)  # fmt: skip
        return await supervisor.run()


def _signal(agent: ScaledAgent) -> str:
    lag = f"lagThreshold {agent.trigger.lag_threshold}" if agent.uses_lag else ""
    work = agent.work
    if work is None:
        return lag
    pending = (f"work: targetDrainSeconds {work.target_drain_seconds:g}, tokensPerSecond "
               f"{work.tokens_per_second:g}")  # fmt: skip
    return f"{lag} + {pending}" if lag else pending


def _json_line(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
    sys.stdout.flush()


def _print(event: dict[str, Any]) -> None:
    now = dt.datetime.now().strftime("%H:%M:%S")  # noqa: DTZ005 - local time for people
    kind = event["event"]
    if kind == "scale":
        console.print(
            f"{now} [bold]{event['agent']}[/] {event['from']} -> {event['to']}  "
            f"({_metric(event)}) {event['reason']}",
            highlight=False,
        )
    elif kind == "exit" and event["how"] == "crashed":
        err_console.print(
            f"{now} [red]{event['agent']}[/]: {event['replica']} (pid {event['pid']}) crashed "
            f"with exit {event['code']}; restarting after a backoff. Log: {event['log']}",
            highlight=False,
        )
    elif kind == "error":
        err_console.print(f"{now} {event['agent']}: {event['error']}", highlight=False)
    elif kind in ("start", "stopping", "kill") and "replica" in event:
        console.print(
            f"{now}   {event['agent']}: {kind} {event['replica']} (pid {event['pid']})",
            highlight=False, style="dim",
        )  # fmt: skip
    elif kind in ("start", "restart"):
        console.print(f"{now} {event['agent']}: {kind} (pids {event['pids']})", highlight=False)
    elif kind == "stopping" and event.get("agent") == "all":
        console.print(f"{now} stopping {len(event['pids'])} processes", highlight=False)
    elif kind == "stopped":
        console.print(f"{now} stopped; no child left", highlight=False)


def _metric(event: dict[str, Any]) -> str:
    if "work_metric" in event:
        return (f"lag {event['lag']}, work {event['work_metric']:.1f} s of "
                f"{event['work_tokens']:,.0f} tokens")  # fmt: skip
    return f"lag {event['lag']}, metric {event['metric']}"
