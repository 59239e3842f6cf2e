"""A :class:`~expediter.watching.snapshot.Snapshot` as rich renderables for the terminal.

:func:`render` returns one renderable (the capability table, then the last scale events, then
any notes), which ``expediter watch`` puts in a ``rich.live.Live`` and the demo prints. JSON for
scripts is :meth:`Snapshot.as_dict`; nothing here decides anything.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from expediter.watching.snapshot import Row, Snapshot

__all__ = ["metric_text", "offsets_text", "render", "replicas_text"]

EVENTS_SHOWN = 6


def offsets_text(values: Sequence[int | None], limit: int = 6) -> str:
    """``12 9 - 4`` (``-`` for no committed offset), shortened past ``limit`` partitions."""
    shown = ["-" if v is None else str(v) for v in values[:limit]]
    return " ".join(shown) + (f" +{len(values) - limit}" if len(values) > limit else "")


def replicas_text(row: Row) -> Text:
    """The actual count; on a cluster with pods not ready, ``3 (0 ready)``."""
    actual = row.actual.replicas
    if actual is None:
        return Text("?", style="dim")
    style = "green" if actual == row.desired else "yellow"
    ready = row.actual.detail.get("ready_replicas")
    if row.actual.source == "kubernetes" and isinstance(ready, int) and ready < actual:
        return Text(f"{actual} ({ready} ready)", style="yellow")
    return Text(str(actual), style=style)


def metric_text(row: Row) -> Text:
    """KEDA's metric when a cluster answers it (and the engine's beside it when they differ),
    else this watch's engine's; for the work-based trigger, the scaler's seconds of work."""
    if row.work is not None:  # the work-based trigger: expediter scaler's seconds of work
        text = f"{row.work['seconds']:.1f} s work ({row.work['tokens']:,.0f} tok)"
        if row.keda_metric is not None:
            text += f", KEDA {row.keda_metric:g}"
        return Text(text)
    if row.actual.source != "kubernetes":
        return Text(str(row.metric))
    if row.keda_metric is None:
        return Text(f"? (engine {row.metric})", style="yellow")
    text = f"{row.keda_metric:g}"
    if row.keda_metric != row.metric:
        return Text(f"{text} (engine {row.metric})", style="yellow")
    return Text(text)


def _blank(value: object) -> str:
    # Kubernetes Events carry no from/to counts (they are in the message): show nothing.
    return "" if value is None else str(value)


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}/s"


def _time(value: Any) -> str:
    if not isinstance(value, int | float):
        return "?"
    return dt.datetime.fromtimestamp(value).strftime("%H:%M:%S")  # noqa: DTZ006 - local time


def render(snapshot: Snapshot, *, title: str | None = None) -> RenderableType:
    table = Table(title=title, title_justify="left", expand=False)
    for column in ("capability", "parts", "end offsets", "committed", "lag", "in", "out",
                   "metric", "active", "desired", "actual", "min..max"):  # fmt: skip
        table.add_column(column, justify="left" if column == "capability" else "right",
                         no_wrap=True)  # fmt: skip
    for row in snapshot.rows:
        table.add_row(
            row.capability, str(row.partitions), offsets_text(row.latest),
            offsets_text(row.committed), str(row.lag), _rate(row.in_rate), _rate(row.out_rate),
            metric_text(row), Text("yes", style="bold green") if row.active else Text("no"),
            str(row.desired), replicas_text(row), f"{row.min_replicas}..{row.max_replicas}",
        )  # fmt: skip
    parts: list[RenderableType] = [table]
    sources = sorted({r.actual.source for r in snapshot.rows})
    if sources:
        parts.append(Text(f"actual replicas from: {', '.join(sources)}", style="dim"))
    if "kubernetes" in sources:
        note = ("metric: KEDA's, from the external metrics API; desired: the Deployment's "
                "spec.replicas (KEDA and its HPA)")  # fmt: skip
        parts.append(Text(note, style="dim"))
    if snapshot.events:
        events = Table("time", "agent", "from", "to", "reason", title="last scale events",
                       title_justify="left", box=None)  # fmt: skip
        for event in snapshot.events[-EVENTS_SHOWN:]:
            events.add_row(_time(event.get("time")), str(event.get("agent")),
                           _blank(event.get("from")), _blank(event.get("to")),
                           Text(str(event.get("reason", ""))[:90]))  # fmt: skip
        parts.append(events)
    for note in snapshot.errors:
        parts.append(Text(note, style="yellow"))
    return Group(*parts)
