"""``expediter demo``: what ``make demo`` runs.

Until the field-analysis workflow exists, this is a smoke flow and says so: it brings up a
broker (see :mod:`expediter.dev.locating`), creates a task topic, produces N tasks, consumes
them with a consumer group, prints the counts, and stops the broker it started.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from expediter.cli.output import console, emit_json, fail
from expediter.dev import SmokeReport, provided_broker, run_smoke
from expediter.settings import DevSettings

__all__ = ["demo"]


def demo(
    count: Annotated[int, typer.Option(min=1, help="How many tasks to push through.")] = 1000,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of the task topic.")] = 3,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Run the smoke flow against a real broker: create topic, produce, consume, count."""
    if not json_:
        console.print(
            "[bold]Expediter demo (smoke flow)[/]: the full field-analysis demo arrives with the "
            "orchestrator; this run checks the Kafka path end to end."
        )
    report = asyncio.run(_run(count, partitions, quiet=json_))
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


async def _run(count: int, partitions: int, *, quiet: bool) -> SmokeReport:
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
