"""``expediter dlq list|show|redrive``: the dead letters of a capability, and sending them back.

``list`` prints one line per dead letter (where, when, reason, source, workflow, step); ``show``
prints chosen ones whole, the original record decoded; ``redrive`` re-publishes chosen ones to
their source topic with the attempt reset to 1 and an ``expediter-redrive-of`` header, once
each (a second redrive of the same letter is skipped and says so), in one transaction. The DLQ
is only read. Exit codes: 0 done; 2 bad input (unknown topic, no such offset, nothing chosen),
with nothing written; 1 a broker failure. Mounted by :mod:`expediter.cli` as ``dlq``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, get_args

import typer
from rich.table import Table

from expediter.cli.output import console, emit_json, fail, wide_console
from expediter.cli.replay import json_errors, progress_bars
from expediter.errors import ConfigurationError
from expediter.events import DeadLetterReason
from expediter.messaging import TopicNames
from expediter.replaying import (
    HistoryReader,
    Letter,
    RedriveReport,
    choose,
    parse_offsets,
    read_letters,
    redrive,
)
from expediter.settings import KafkaSettings

__all__ = ["app"]

app = typer.Typer(
    help="Dead letters: list them, show them whole, redrive them to their source topic.",
    no_args_is_help=True,
)

Dlq = Annotated[
    str,
    typer.Argument(help="A capability (its DLQ is <prefix>dlq.<capability>) or a DLQ topic name."),
]
Prefix = Annotated[
    str,
    typer.Option(
        envvar="EXPEDITER_TOPIC_PREFIX",
        help="The deployment's topic prefix, as status and submit read it; '' in production.",
    ),
]
Offsets = Annotated[
    list[str] | None,
    typer.Argument(help="Dead letters: OFFSET, or PARTITION:OFFSET on a DLQ of several."),
]
OffsetOption = Annotated[
    list[str] | None,
    typer.Option("--offset", help="A dead letter: OFFSET or PARTITION:OFFSET (repeatable)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]
_REASONS = ", ".join(get_args(DeadLetterReason))
Reason = Annotated[
    str | None, typer.Option(help=f"Only dead letters with this reason: {_REASONS}.")
]


async def _letters(topic: str) -> list[Letter]:
    async with HistoryReader(KafkaSettings()) as reader:
        with progress_bars() as bars:
            return await read_letters(reader, topic, progress=bars)


@app.command(name="list")
def list_(dlq: Dlq, prefix: Prefix = "", reason: Reason = None, json_: JsonFlag = False) -> None:
    """One line per dead letter: where, when, why, and where it came from."""
    topic = TopicNames(prefix).dlq_named(dlq)
    with json_errors(json_):
        letters = asyncio.run(_letters(topic))
    if reason is not None:
        letters = [letter for letter in letters if letter.reason == reason]
    if json_:
        emit_json({"ok": True, "dlq": topic, "letters": [letter.as_dict() for letter in letters]})
        return
    if not letters:
        console.print(f"{topic}: no dead letters" + (f" with reason {reason}" if reason else ""))
        return
    table = Table("offset", "time", "reason", "source", "workflow", "step", "attempt", "detail")
    for letter in letters:
        found = letter.letter
        table.add_row(
            f"{letter.partition}:{letter.offset}",
            letter.as_dict()["timestamp"],
            letter.reason,
            f"{found.source_topic}/{found.source_partition}@{found.source_offset}" if found else "",
            (found.workflow_id or "") if found else "",
            (found.step_id or "") if found else "",
            str(found.attempt or "") if found else "",
            (found.detail[:80] if found else letter.problem or ""),
        )
    wide_console().print(table)
    console.print(f"{topic}: {len(letters)} dead letter(s)", highlight=False)


@app.command()
def show(
    dlq: Dlq,
    offsets: Offsets = None,
    offset: OffsetOption = None,
    prefix: Prefix = "",
    json_: JsonFlag = False,
) -> None:
    """Chosen dead letters whole: reason, detail, origin and the original record decoded.

    Offsets as arguments or with --offset, as in redrive.
    """
    topic = TopicNames(prefix).dlq_named(dlq)
    offsets = [*(offsets or []), *(offset or [])]
    if not offsets:
        fail("dlq show needs at least one OFFSET (or --offset); `expediter dlq list` shows them")

    async def go() -> list[Letter]:
        async with HistoryReader(KafkaSettings()) as reader:
            wanted = parse_offsets(offsets, topic, await reader.require(topic))
            letters = await read_letters(reader, topic)
        at = {(letter.partition, letter.offset): letter for letter in letters}
        missing = [f"{p}:{o}" for p, o in wanted if (p, o) not in at]
        if missing:
            raise ConfigurationError(
                f"no dead letter at {', '.join(missing)} in {topic} ({len(letters)} there); "
                "pick offsets that `expediter dlq list` shows"
            )
        return [at[w] for w in wanted]

    with json_errors(json_):
        chosen = asyncio.run(go())
    documents = [letter.as_dict(full=True) for letter in chosen]
    if json_:
        emit_json({"ok": True, "dlq": topic, "letters": documents})
        return
    for document in documents:
        console.rule(f"{document['ref']}  {document['reason']}")
        console.print_json(json.dumps(document, default=str))


@app.command(name="redrive")
def redrive_(
    dlq: Dlq,
    offsets: Offsets = None,
    offset: OffsetOption = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every dead letter (with --reason: each of that reason).")
    ] = False,
    reason: Reason = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be redriven; publish nothing.")
    ] = False,
    keep_deadline: Annotated[
        bool,
        typer.Option(
            "--keep-deadline",
            help="Keep a task's original deadline (the worker answers `expired` once it has "
            "passed) instead of a fresh one of the same length from now.",
        ),
    ] = False,
    prefix: Prefix = "",
    json_: JsonFlag = False,
) -> None:
    """Re-publish chosen dead letters to their source topic, attempt reset, once each.

    Offsets as arguments or with --offset, as in show; or --all (with --reason, each of it).

    A redrive is a new attempt at the work: a task gets a fresh deadline of its original length
    from now, unless --keep-deadline.
    """
    topic = TopicNames(prefix).dlq_named(dlq)
    settings = KafkaSettings()

    async def go() -> RedriveReport:
        async with HistoryReader(settings) as reader:
            partitions = await reader.require(topic)
            wanted = parse_offsets([*(offsets or []), *(offset or [])], topic, partitions)
            letters = await read_letters(reader, topic)
            chosen = choose(letters, topic, offsets=wanted, everything=all_, reason=reason)
            return await redrive(
                settings, reader, chosen, dlq=topic, dry_run=dry_run, keep_deadline=keep_deadline
            )

    with json_errors(json_):
        report = asyncio.run(go())
    if json_:
        emit_json({"ok": True, **report.as_dict()})
        return
    verb = "would redrive" if dry_run else "redrove"
    for done in report.redriven:
        where = f"{done.topic}/{done.partition}" + (
            f"@{done.offset}" if done.offset is not None else ""
        )
        reset = ", attempt reset to 1" if done.attempt_reset else ", bytes unchanged"
        if done.deadline is not None:
            reset += f", deadline {done.deadline}"
        console.print(f"{verb} {done.letter} -> {where}{reset}", highlight=False)
    for skipped in report.skipped:
        console.print(
            f"skipped {skipped.letter}: already redriven as {skipped.earlier}", highlight=False
        )
    console.print(
        f"{topic}: {len(report.redriven)} {verb}, {len(report.skipped)} already redriven",
        highlight=False,
    )
