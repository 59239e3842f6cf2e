"""``expediter agents``: the live agents per capability, read from the registry; and the warning
``submit`` and ``status`` print when a workflow needs a capability no live agent serves.

The registry is the compacted topic of agent cards that workers keep fresh with a heartbeat
(:mod:`expediter.messaging.discovering`). Mounted by :mod:`expediter.cli`; the warning is called
by :mod:`expediter.cli.orchestrating`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Annotated, Any

import typer
from rich.table import Table

from expediter.cli.output import emit_json, err_console, wide_console
from expediter.errors import ExpediterError
from expediter.messaging import Directory, TopicNames, read_registry
from expediter.settings import KafkaSettings, WorkerSettings

__all__ = ["agents", "print_warning", "unserved_warning"]

_WARNING_SECONDS = 5.0
"""The most a warning's registry read may add to ``submit`` or ``status``."""


def agents(
    json_: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    stale: Annotated[
        bool, typer.Option("--stale", help="List instances whose lease passed, too.")
    ] = False,
) -> None:
    """List the live agents per capability: instances, version, engine, model, resources.

    An instance is live while its registry card's lease holds (EXPEDITER_REGISTRY_LEASE_SECONDS,
    renewed every third of it); a worker killed with -9 drops out once its lease passes.
    """
    names = TopicNames(WorkerSettings().topic_prefix)
    directory = asyncio.run(read_registry(KafkaSettings(), names))
    summaries = directory.by_capability()
    if json_:
        emit_json({
            "registry": names.registry,
            "read_at": directory.read_at.isoformat(),
            "capabilities": summaries,
        })  # fmt: skip
        return
    out = wide_console()
    if not summaries:
        out.print(f"no agent cards in {names.registry}: no worker has started under this prefix")
        return
    table = Table("capability", "live", "instance", "version", "engine", "model", "resources",
                  "lease left")  # fmt: skip
    for summary in summaries:
        rows = summary["instances"] or [None]
        for n, instance in enumerate(rows):
            first = n == 0
            cells = _cells(instance) if instance else ["-", "", "", "", "", ""]
            table.add_row(summary["capability"] if first else "",
                          str(summary["live"]) if first else "", *cells)  # fmt: skip
        if stale and summary["stale_instances"]:
            table.add_row("", "", f"stale: {', '.join(summary['stale_instances'])}", "", "", "",
                          "", "")  # fmt: skip
    out.print(table)
    dead = sum(s["stale"] for s in summaries)
    if dead and not stale:
        out.print(f"{dead} stale instance(s) not listed (their lease passed); --stale lists them")


def _cells(instance: dict[str, Any]) -> list[str]:
    resources = instance["resources"]
    left = instance["expires_in"]
    return [
        instance["instance"],
        instance["version"],
        instance["engine"] or "",
        instance["model"] or "",
        f"{resources['accelerator']} x{resources['concurrency']}",
        "no lease" if left is None else f"{left:.0f}s",
    ]


def unserved_warning(capabilities: Iterable[str], prefix: str) -> str | None:
    """A one-line warning naming the ones of ``capabilities`` no live agent serves, or None.

    Advisory: a registry that cannot be read within a few seconds (no topic, no broker) gives
    no warning rather than an error, since the command itself says what is wrong with those.
    """
    wanted = sorted(set(capabilities))
    if not wanted:
        return None
    names = TopicNames(prefix)
    try:
        directory: Directory = asyncio.run(
            asyncio.wait_for(read_registry(KafkaSettings(), names), _WARNING_SECONDS)
        )
    except (ExpediterError, TimeoutError, OSError):
        return None
    missing = directory.unserved(wanted)
    if not missing:
        return None
    return (
        f"no live agent serves {', '.join(missing)} (registry {names.registry}): its tasks wait "
        "until one starts (`expediter worker agents/<file>.py`, or scale it up); "
        "`expediter agents` lists what is live"
    )


def print_warning(message: str | None) -> None:
    """``message`` on stderr, so that ``--json`` output stays one document."""
    if message:
        err_console.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
