"""``expediter topics check|apply|list|describe``: the topic catalog and the cluster's topics.

``check`` validates the catalog (``topics/topics.yaml``) without a broker. ``apply`` creates
missing topics, raises partition counts and aligns configs, never deletes, and with
``--dry-run`` only says what it would do. ``list`` and ``describe`` report partitions, configs
and end offsets. Exit codes: 0 done, 1 the cluster failed, 2 a bad catalog or argument, or a
change that apply refuses (shrinking partitions, an unallowed cleanup.policy change).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from expediter.cli.output import console, emit_json, fail
from expediter.errors import ConfigurationError
from expediter.messaging import (
    DEFAULT_CATALOG,
    Catalog,
    Plan,
    TopicDescription,
    apply_plan,
    describe_topics,
    load_catalog,
    plan_topics,
)
from expediter.settings import KafkaSettings

__all__ = ["app"]

app = typer.Typer(
    help="Check the topic catalog, apply it to a cluster, and inspect topics.",
    no_args_is_help=True,
)

CatalogPath = Annotated[
    Path, typer.Option("--catalog", help="The topic catalog file.", dir_okay=False)
]
Prefix = Annotated[
    str,
    typer.Option(help="Put this before every topic name, e.g. 'shadow.' for a shadow copy."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]

_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000))


def _duration(ms: str | int | None) -> str:
    """604800000 -> 7d, for people; scripts get the milliseconds."""
    if ms is None or ms == "":
        return "-"
    value = int(ms)
    if value < 0:
        return "infinite"
    for unit, size in _UNITS:
        if value and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}ms"


@contextmanager
def _json_errors(json_: bool) -> Iterator[None]:
    # Scripts get {"ok": false, "error": ...} on stdout too; main() prints it and exits 2.
    try:
        yield
    except ConfigurationError as exc:
        if json_:
            emit_json({"ok": False, "error": str(exc)})
        raise


@app.command()
def check(catalog: CatalogPath = DEFAULT_CATALOG, json_: JsonFlag = False) -> None:
    """Validate the catalog without a broker; exit 2 and name every problem if it is wrong."""
    with _json_errors(json_):
        loaded = load_catalog(catalog)
    if json_:
        emit_json({"ok": True, **_catalog_document(loaded)})
        return
    table = _table("topic", "role", "partitions", "replication", "min ISR", "policy", "retention")
    for spec in loaded.topics:
        table.add_row(
            spec.name,
            spec.role,
            str(spec.partitions),
            str(spec.replication_factor),
            str(spec.min_insync_replicas),
            spec.cleanup_policy,
            _duration(spec.retention_ms),
        )
    console.print(table)
    for group, names in loaded.co_partition.items():
        console.print(
            f"co-partitioned ({group}): {', '.join(names)}", highlight=False, soft_wrap=True
        )
    console.print(f"[green]ok[/]: {catalog} describes {len(loaded.topics)} topics")


@app.command()
def apply(
    catalog: CatalogPath = DEFAULT_CATALOG,
    prefix: Prefix = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would change; change nothing.")
    ] = False,
    replication_factor_cap: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Cap replication_factor and min.insync.replicas to this "
            "(default: the number of brokers the cluster reports).",
        ),
    ] = None,
    allow_policy_change: Annotated[
        bool,
        typer.Option(
            "--allow-policy-change",
            help="Alter cleanup.policy where the cluster differs (changes which records "
            "Kafka keeps).",
        ),
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Create missing topics, raise partitions and align configs. Never deletes anything."""
    with _json_errors(json_):
        loaded = load_catalog(catalog)
        plan = asyncio.run(
            plan_topics(
                loaded,
                KafkaSettings(),
                prefix=prefix,
                replication_factor_cap=replication_factor_cap,
                allow_policy_change=allow_policy_change,
            )
        )
    applied = False
    if not dry_run and not plan.refusals and plan.changed:
        asyncio.run(apply_plan(plan, KafkaSettings()))
        applied = True
    if json_:
        emit_json(
            {**plan.as_dict(), "ok": not plan.refusals, "dry_run": dry_run, "applied": applied}
        )
    else:
        _print_plan(plan, dry_run=dry_run, applied=applied)
    if plan.refusals:
        fail("\n".join(plan.refusals) + "\nnothing was applied", code=2)


@app.command(name="list")
def list_(
    catalog: CatalogPath = DEFAULT_CATALOG, prefix: Prefix = "", json_: JsonFlag = False
) -> None:
    """The catalog's topics as the cluster has them: partitions, policy, end offsets."""
    with _json_errors(json_):
        loaded = load_catalog(catalog).with_prefix(prefix)
    described = asyncio.run(
        describe_topics(KafkaSettings(), [s.name for s in loaded.topics], catalog=loaded)
    )
    if json_:
        emit_json({"topics": [_summary(d, loaded) for d in described]})
        return
    table = _table(
        "topic", "role", "partitions", "replication", "policy", "retention", "end offset"
    )
    for topic in described:
        spec = loaded.topic(topic.name)
        if not topic.exists:
            table.add_row(
                topic.name, spec.role, f"[yellow]missing[/] ({spec.partitions})", "", "", "", ""
            )
            continue
        partitions = str(topic.partitions)
        if topic.partitions != spec.partitions:
            partitions += f" [yellow](catalog {spec.partitions})[/]"
        table.add_row(
            topic.name,
            spec.role,
            partitions,
            str(topic.replication_factor),
            topic.configs.get("cleanup.policy", "delete (default)"),
            _duration(topic.configs.get("retention.ms")),
            str(topic.end_offset),
        )
    console.print(table)


@app.command()
def describe(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Full topic names to describe (default: the catalog's topics)."),
    ] = None,
    catalog: CatalogPath = DEFAULT_CATALOG,
    prefix: Prefix = "",
    json_: JsonFlag = False,
) -> None:
    """Partitions (leader, replicas, ISR, offsets) and configs; exit 1 if a named one is missing."""
    wanted = list(names or [])
    loaded: Catalog | None = None
    # Named topics need no catalog; the catalog only adds their roles when it is there.
    if not wanted or catalog != DEFAULT_CATALOG or catalog.exists():
        with _json_errors(json_):
            loaded = load_catalog(catalog).with_prefix(prefix)
        wanted = wanted or [s.name for s in loaded.topics]
    described = asyncio.run(describe_topics(KafkaSettings(), wanted, catalog=loaded))
    missing = [d.name for d in described if not d.exists]
    if json_:
        emit_json({"topics": [d.as_dict() for d in described], "missing": missing})
    else:
        for topic in described:
            _print_description(topic)
    if names and missing:
        if json_:
            raise typer.Exit(1)
        fail(f"no such topic: {', '.join(missing)}; check the name (and --prefix)")


def _table(*columns: str) -> Table:
    # Topic names are what people search for in the output: never cut or fold them.
    table = Table()
    for i, column in enumerate(columns):
        table.add_column(column, no_wrap=i == 0)
    return table


def _catalog_document(catalog: Catalog) -> dict[str, Any]:
    return {
        "catalog": catalog.source,
        "capabilities": list(catalog.capabilities),
        "co_partition": {group: list(names) for group, names in catalog.co_partition.items()},
        "topics": [
            {
                "name": s.name,
                "role": s.role,
                "capability": s.capability,
                "partitions": s.partitions,
                "replication_factor": s.replication_factor,
                "min_insync_replicas": s.min_insync_replicas,
                "cleanup_policy": s.cleanup_policy,
                "retention_ms": s.retention_ms,
                "delay_ms": s.delay_ms,
                "owner": s.owner,
                "configs": s.kafka_configs,
            }
            for s in catalog.topics
        ],
    }


def _summary(topic: TopicDescription, catalog: Catalog) -> dict[str, Any]:
    spec = catalog.topic(topic.name)
    return {
        "name": topic.name,
        "role": spec.role,
        "capability": spec.capability,
        "exists": topic.exists,
        "partitions": topic.partitions,
        "catalog_partitions": spec.partitions,
        "replication_factor": topic.replication_factor,
        "configs": dict(topic.configs),
        "end_offset": topic.end_offset,
        "records": topic.records,
    }


def _print_plan(plan: Plan, *, dry_run: bool, applied: bool) -> None:
    target = f" (prefix {plan.catalog.prefix!r})" if plan.catalog.prefix else ""
    console.print(
        f"catalog {plan.catalog.source}{target}: {len(plan.catalog.topics)} topics; cluster: "
        f"{plan.brokers} broker(s)",
        highlight=False,
    )
    for note in plan.notes:
        console.print(f"[yellow]note[/]: {note}", highlight=False)
    if plan.changes:
        table = _table("topic", "action", "change")
        for change in plan.changes:
            table.add_row(change.topic, change.action, change.detail)
        console.print(table)
    if plan.refusals:
        return
    if not plan.changes:
        console.print("[green]no changes[/]: the cluster matches the catalog")
    elif dry_run:
        console.print(f"dry run: {len(plan.changes)} change(s) would be applied; nothing was")
    elif applied:
        console.print(f"[green]applied[/] {len(plan.changes)} change(s)")


def _print_description(topic: TopicDescription) -> None:
    if not topic.exists:
        console.print(f"[bold]{topic.name}[/]: [yellow]does not exist[/]", highlight=False)
        return
    role = f" ({topic.role})" if topic.role else ""
    console.print(
        f"[bold]{topic.name}[/]{role}: {topic.partitions} partition(s), replication "
        f"{topic.replication_factor}, {topic.records} records, end offset {topic.end_offset}",
        highlight=False,
    )
    for key, value in topic.configs.items():
        console.print(f"  {key} = {value}", highlight=False)
    table = Table("partition", "leader", "replicas", "isr", "start", "end")
    for p in topic.partition_details:
        table.add_row(
            str(p.partition),
            str(p.leader),
            ",".join(map(str, p.replicas)),
            ",".join(map(str, p.isr)),
            str(p.start_offset),
            str(p.end_offset),
        )
    console.print(table)
