"""``expediter replay``, ``expediter trace`` and ``expediter diff``: reading history, re-running it.

- ``replay TOPIC`` prints a range of any topic (by partition and offsets, ``--since``/``--until``,
  ``--key`` or ``--workflow``) as a readable timeline, as JSON lines (``--json``), or to a file
  (``--output``, written whole or not at all). ``--rerun --into PREFIX`` re-publishes the range
  of a task topic into shadow topics, and ``--run agents/x.py`` runs the current agent on them
  in-process until their results are in.
- ``trace WORKFLOW_ID`` prints one workflow's history across task, result, DLQ and state
  topics in time order, with the latency of each hop.
- ``diff PREFIX`` compares a shadow re-run's results with the originals, field by field.

None of them joins a consumer group: no real group's offsets ever move. Exit codes: 0 done;
2 bad input (an unknown topic, an empty range, a time before retention start, a bad option),
with nothing written; 1 a broker or shadow-run failure (``diff --exit-code``: 1 when a task
differs). Mounted by :mod:`expediter.cli` with :func:`register`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from expediter.authoring.loading import load_agent
from expediter.cli.output import console, emit_json, err_console, wide_console
from expediter.errors import ConfigurationError
from expediter.messaging.partitionreading import Record
from expediter.reasoning.choosing import candidate_settings
from expediter.replaying import (
    DiffReport,
    HistoryReader,
    RangePlan,
    RerunReport,
    Selection,
    Trace,
    atomic_output,
    diff_shadow,
    json_lines,
    parse_when,
    publish_shadow,
    row,
    run_shadow,
    shadow_target,
    trace_workflow,
)
from expediter.replaying.rendering import check_writable
from expediter.settings import EngineSettings, KafkaSettings

__all__ = ["diff", "json_errors", "progress_bars", "register", "replay", "trace"]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Prefix = Annotated[
    str,
    typer.Option(
        envvar="EXPEDITER_TOPIC_PREFIX",
        help="The deployment's topic prefix, as status and submit read it; '' in production.",
    ),
]
Since = Annotated[
    str | None,
    typer.Option(
        help="From this time on: ISO 8601 (UTC unless it says otherwise), epoch milliseconds, "
        "or a duration ago (90s, 15m, 2h, 7d)."
    ),
]
Until = Annotated[str | None, typer.Option(help="Before this time; same forms as --since.")]
AllPartitions = Annotated[
    bool,
    typer.Option(
        "--all-partitions",
        help="With --key/--workflow, read every partition, not only the key's (for topics keyed "
        "another way, or whose partitions were raised since).",
    ),
]

_BAR_FROM = 2000
"""Ranges shorter than this read too fast for a progress bar to help."""


class Format(StrEnum):
    timeline = "timeline"
    jsonl = "jsonl"


def register(app: typer.Typer) -> None:
    """Mount ``replay``, ``trace`` and ``diff`` on the top-level app."""
    app.command(name="replay")(replay)
    app.command(name="trace")(trace)
    app.command(name="diff")(diff)


# -- shared with expediter.cli.dlq ------------------------------------------------------------


@contextmanager
def json_errors(json_: bool) -> Iterator[None]:
    """With --json, bad input also prints {"ok": false, "error": ...} on stdout; main() then
    prints the message to stderr and exits 2."""
    try:
        yield
    except ConfigurationError as exc:
        if json_:
            emit_json({"ok": False, "error": str(exc)})
        raise


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """A factory of progress callbacks, one bar per read, on stderr when it is a terminal."""
    if not err_console.is_terminal:
        yield lambda label, total: _ignore
        return
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(),
    )  # fmt: skip
    with Progress(*columns, console=err_console, transient=True) as bars:

        def start(label: str, total: int) -> Callable[[int], None]:
            if total < _BAR_FROM:
                return _ignore
            task = bars.add_task(label, total=total)
            return lambda n: bars.advance(task, n)

        yield start


def _ignore(_: int) -> None:
    return None


def _when(text: str | None, option: str) -> datetime | None:
    return parse_when(text, option=option) if text is not None else None


# -- replay -----------------------------------------------------------------------------------


def replay(
    topic: Annotated[
        str, typer.Argument(help="The topic to read, with its prefix, e.g. tasks.soil-analysis.")
    ],
    partition: Annotated[
        list[int] | None,
        typer.Option("--partition", "-p", min=0, help="Only this partition (repeatable)."),
    ] = None,
    from_offset: Annotated[
        int | None, typer.Option(min=0, help="First offset, inclusive, in each partition.")
    ] = None,
    to_offset: Annotated[
        int | None, typer.Option(min=0, help="Last offset, inclusive, in each partition.")
    ] = None,
    since: Since = None,
    until: Until = None,
    key: Annotated[str | None, typer.Option(help="Only records with this key.")] = None,
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", help="Only this workflow's records (keyed by its id)."),
    ] = None,
    all_partitions: AllPartitions = False,
    format_: Annotated[
        Format | None,
        typer.Option(
            "--format",
            help="timeline (a table in time order) or jsonl; default timeline, "
            "jsonl with --json or --output.",
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="JSON lines, one per record.")] = False,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            dir_okay=False,
            help="Write to this file instead of stdout; it appears whole or not at all.",
        ),
    ] = None,
    rerun: Annotated[
        bool,
        typer.Option("--rerun", help="Re-publish the range (of a task topic) into shadow topics."),
    ] = False,
    into: Annotated[
        str | None, typer.Option(help="With --rerun: the shadow prefix, e.g. 'shadow.'.")
    ] = None,
    run: Annotated[
        Path | None,
        typer.Option(
            help="With --rerun: run this agent file in-process on the shadow tasks until their "
            "results are in (tool calls replay the recorded results).",
            dir_okay=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=1, help="With --run: seconds to wait for the shadow results.")
    ] = 300.0,
    engine: Annotated[
        str | None,
        typer.Option(
            help="With --run: the engine the shadow worker runs instead of the configured one: "
            "a route of EXPEDITER_ENGINE_ROUTES by name, a kind (rules, llama, openai), or a "
            'JSON route such as \'{"kind": "openai", "model": "next"}\'.'
        ),
    ] = None,
) -> None:
    """Print a range of any topic, or re-run it into shadow topics. Never moves a group."""
    selection = Selection(
        topic=topic, partitions=tuple(partition or ()), from_offset=from_offset,
        to_offset=to_offset, since=_when(since, "--since"), until=_when(until, "--until"),
        key=key, workflow_id=workflow, all_partitions=all_partitions,
    )  # fmt: skip
    if into is not None and not rerun:
        raise ConfigurationError("--into goes with --rerun: add --rerun, or drop --into")
    if run is not None and not rerun:
        raise ConfigurationError("--run goes with --rerun: add --rerun --into PREFIX")
    if engine is not None and run is None:
        raise ConfigurationError(
            "--engine chooses the engine of the shadow worker that --run starts: add --rerun "
            "--into PREFIX --run agents/<agent>.py"
        )
    if rerun:
        if into is None:
            raise ConfigurationError("--rerun needs --into PREFIX, e.g. --into shadow.")
        if output is not None:
            raise ConfigurationError("--output prints a range; --rerun publishes it: pick one")
        with json_errors(json_):
            _rerun(selection, into, run, timeout, json_, engine)
        return
    chosen = format_ or (Format.jsonl if json_ or output is not None else Format.timeline)
    if output is not None:
        check_writable(output)
    started = time.monotonic()
    try:
        count, plan = asyncio.run(_replay(selection, chosen, output))
    except BrokenPipeError:
        # `expediter replay ... | head`: the reader has what it wanted; no traceback for it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    err_console.print(
        f"replayed {count} record(s) of {topic} ({plan.total} offsets read) in "
        f"{time.monotonic() - started:.2f}s" + (f" to {output}" if output else ""),
        highlight=False,
        soft_wrap=True,
    )


async def _replay(
    selection: Selection, chosen: Format, output: Path | None
) -> tuple[int, RangePlan]:
    async with HistoryReader(KafkaSettings()) as reader:
        plan = await reader.plan(selection)
        with progress_bars() as bars:
            batches = reader.read_batches(
                plan, progress=bars(f"reading {selection.topic}", plan.total)
            )
            if output is None:
                return await _write(batches, chosen, sys.stdout, selection), plan
            with atomic_output(output) as out:
                return await _write(batches, chosen, out, selection), plan


async def _write(
    batches: AsyncIterator[list[Record]], chosen: Format, out: TextIO, selection: Selection
) -> int:
    count = 0
    if chosen is Format.jsonl:
        # A batch at a time: replaying a topic as JSON lines costs per record.
        async for records in batches:
            out.write(json_lines(records))
            count += len(records)
    else:
        collected: list[Record] = [record async for records in batches for record in records]
        collected.sort(key=lambda r: (r.timestamp, r.partition, r.offset))
        count = len(collected)
        if count:
            table = Table("time", "where", "key", "type", "summary", show_lines=False)
            for found in map(row, collected):
                table.add_row(found.at, found.where, found.key, found.type, found.summary)
            target = wide_console() if out is sys.stdout else Console(file=out, width=200)
            target.print(table)
    if count == 0:
        # Raised inside the output block, so that no file appears.
        raise ConfigurationError(
            f"empty range: no record of {selection.describe()} matched; check the key or "
            "workflow id, or use --all-partitions if the topic is keyed another way"
        )
    return count


def _rerun(
    selection: Selection, into: str, run: Path | None, timeout: float, json_: bool,
    engine: str | None,
) -> None:  # fmt: skip
    target = shadow_target(selection.topic, into)
    if engine is not None:
        candidate_settings(EngineSettings.from_env(), engine)  # fails before publishing
    agent = load_agent(run) if run is not None else None
    if agent is not None and agent.capability != target.capability:
        raise ConfigurationError(
            f"--run {run}: that agent's capability is {agent.capability!r}, the tasks of "
            f"{selection.topic} are {target.capability!r}; run the {target.capability} agent"
        )
    settings = KafkaSettings()

    async def go() -> RerunReport:
        async with HistoryReader(settings) as reader:
            plan = await reader.plan(selection)
            with progress_bars() as bars:
                records = await reader.records(
                    plan, progress=bars(f"reading {selection.topic}", plan.total)
                )
            if not records:
                raise ConfigurationError(
                    f"empty range: no record of {selection.describe()} matched; nothing was "
                    "published"
                )
            report, marks = await publish_shadow(settings, reader, records, target)
        if agent is not None:
            report = await run_shadow(
                settings, report, agent, marks, timeout=timeout, engine=engine
            )
        return report

    report = asyncio.run(go())
    if json_:
        emit_json({"ok": True, **report.as_dict()})
        return
    console.print(
        f"published {report.published} task(s) from {report.source} to {report.shadow_topic}",
        highlight=False,
    )
    if report.deadlines_cleared:
        console.print(
            f"{report.deadlines_cleared} deadline(s) cleared: a re-run is after the fact",
            highlight=False,
        )
    if report.ran:
        console.print(
            ("" if report.engine is None else f"engine {report.engine}: ")
            + f"shadow worker: {report.succeeded} succeeded, {report.failed} failed "
            f"({report.unrecorded} asked for unrecorded tool calls), {report.dead_lettered} "
            f"dead-lettered, in {report.seconds:.1f}s",
            highlight=False,
        )
    else:
        console.print(f"run the shadow worker: {report.worker_command()}", highlight=False)
    console.print(f"then compare: expediter diff {report.into}", highlight=False)


# -- trace ------------------------------------------------------------------------------------


def trace(
    workflow_id: Annotated[str, typer.Argument(help="The workflow id (the records' key).")],
    prefix: Prefix = "",
    since: Since = None,
    until: Until = None,
    all_partitions: AllPartitions = False,
    json_: JsonFlag = False,
) -> None:
    """One workflow's whole history in time order, across its topics, with each hop's latency."""
    with json_errors(json_):
        start, stop = _when(since, "--since"), _when(until, "--until")

        async def go() -> Trace:
            async with HistoryReader(KafkaSettings()) as reader:
                with progress_bars() as bars:
                    return await trace_workflow(
                        reader, workflow_id, prefix=prefix, since=start, until=stop,
                        all_partitions=all_partitions, progress=bars,
                    )  # fmt: skip

        found = asyncio.run(go())
    if json_:
        emit_json({"ok": True, **found.as_dict()})
        return
    first = found.entries[0].at
    table = Table("time", "+ms", "where", "type", "step", "hop", "summary")
    for entry in found.entries:
        table.add_row(
            entry.at.strftime("%H:%M:%S.%f")[:-3],
            str(round((entry.at - first).total_seconds() * 1000)),
            entry.ref,
            entry.type,
            entry.step_id or "",
            entry.hop,
            entry.summary,
        )
    wide_console().print(table)
    console.print(
        f"workflow {workflow_id}: {len(found.entries)} record(s) in "
        f"{len({entry.topic for entry in found.entries})} topic(s) "
        f"({len(found.topics)} searched), {found.duration_ms} ms from first to last",
        highlight=False,
    )


# -- diff -------------------------------------------------------------------------------------


def diff(
    prefix: Annotated[str, typer.Argument(help="The shadow prefix given to replay --into.")],
    against: Annotated[
        str | None,
        typer.Option(
            help="The original deployment's prefix (default: read from the shadow tasks' "
            "expediter-shadow-of headers)."
        ),
    ] = None,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when any task is not identical.")
    ] = False,
    examples: Annotated[
        int, typer.Option(min=0, help="Disagreements shown per field (agreement figures).")
    ] = 3,
    json_: JsonFlag = False,
) -> None:
    """Compare a shadow re-run's results with the originals, field by field, and say how often
    each field agrees (the figures that judge a candidate engine)."""
    with json_errors(json_):

        async def go() -> DiffReport:
            async with HistoryReader(KafkaSettings()) as reader:
                with progress_bars() as bars:
                    return await diff_shadow(
                        reader, prefix, against=against, progress=bars, examples=examples
                    )

        report = asyncio.run(go())
    if json_:
        emit_json({"ok": True, **report.as_dict()})
    else:
        table = Table("task", "workflow", "step", "state", "changes")
        for task in report.tasks:
            table.add_row(
                task.task_id[:8], task.workflow_id or "", task.step_id or "", task.state,
                "\n".join(change.text() for change in task.changes),
            )  # fmt: skip
        wide_console().print(table)
        _print_agreement(report)
        console.print(
            f"{report.shadow_results} against {report.original_results}: "
            f"{report.count('identical')} identical, {report.count('changed')} changed, "
            f"{report.count('no-original')} without an original, {report.count('pending')} "
            "without a shadow result yet",
            highlight=False,
        )
    if exit_code and report.differs:
        raise typer.Exit(1)


def _print_agreement(report: DiffReport) -> None:
    if not report.fields:
        return
    table = Table("field", "agreed", "rate", "disagreements (original → shadow)")
    for tally in report.fields:
        shown = "\n".join(
            f"{example.task_id[:8]}: {_short(example.original)} → {_short(example.shadow)}"
            for example in tally.examples
        )
        table.add_row(tally.path, f"{tally.agreed}/{tally.compared}", f"{tally.rate:.0%}", shown)
    wide_console().print(table)
    for side, counts in report.engines.items():
        if counts:
            answered = ", ".join(f"{engine} {n}" for engine, n in counts.items())
            console.print(f"{side} answered by: {answered}", highlight=False)


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 60 else text[:59] + "…"
