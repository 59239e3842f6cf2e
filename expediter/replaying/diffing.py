"""Comparing a shadow re-run's results with the original results, field by field.

``expediter diff <prefix>`` finds the shadow tasks under ``<prefix>tasks.*``; their
``expediter-shadow-of`` header names the original topic, hence the original prefix and results
topic (``--against`` overrides it). Shadow and original results are matched by ``task_id`` (the
shadow tasks keep their event ids) and compared on what a task produced: ``status``, ``output``
and ``error``, recursively, each difference as added, removed or changed with the old and new
values. Ids, times, durations and token counts differ on every run and are not compared.

The original results are read from the time of the earliest shadow task on (less a margin for
clock skew), not from the start of the topic. Use it after a prompt, model or code change.
The report also gives, per field, how often the shadow agrees with the originals, with examples
of disagreement, and which engines answered each side (:mod:`expediter.replaying.agreeing`):
the figures that judge a candidate engine re-run with ``replay --rerun --engine``.
Called by expediter.cli.replay.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta
from typing import Any, Literal

from expediter.errors import ConfigurationError
from expediter.messaging import TopicNames
from expediter.messaging.partitionreading import Progress, Record
from expediter.replaying.agreeing import FieldAgreement, Pair, agreement, engines_answering
from expediter.replaying.reading import HistoryReader
from expediter.replaying.rerunning import SHADOW_HEADER, shadow_target
from expediter.replaying.selecting import Selection

__all__ = ["DiffReport", "FieldChange", "TaskDiff", "compare", "diff_shadow"]

_TASKS = re.compile(r"^tasks\.[a-z0-9][a-z0-9-]*$")
_CLOCK_MARGIN = timedelta(minutes=15)
_COMPARED = ("status", "output", "error")

ChangeKind = Literal["added", "removed", "changed"]
TaskState = Literal["identical", "changed", "no-original", "pending"]


@dataclass(frozen=True)
class FieldChange:
    path: str
    kind: ChangeKind
    old: Any = None
    new: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "old": self.old, "new": self.new}

    def text(self) -> str:
        if self.kind == "added":
            return f"{self.path}: + {_show(self.new)}"
        if self.kind == "removed":
            return f"{self.path}: - {_show(self.old)}"
        return f"{self.path}: {_show(self.old)} → {_show(self.new)}"


@dataclass(frozen=True)
class TaskDiff:
    task_id: str
    workflow_id: str | None
    step_id: str | None
    state: TaskState
    changes: tuple[FieldChange, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "workflow_id": self.workflow_id,
            "step_id": self.step_id,
            "state": self.state,
            "changes": [change.as_dict() for change in self.changes],
        }


@dataclass(frozen=True)
class DiffReport:
    prefix: str
    against: str
    shadow_results: str
    original_results: str
    tasks: tuple[TaskDiff, ...]
    fields: tuple[FieldAgreement, ...] = ()
    """Per field, how often the shadow results agree with the originals."""
    engines: dict[str, dict[str, int]] = dataclass_field(default_factory=dict)
    """``original`` and ``shadow``: reasoning calls answered per ``engine/model``."""

    def count(self, state: TaskState) -> int:
        return sum(1 for task in self.tasks if task.state == state)

    @property
    def differs(self) -> bool:
        return any(task.state != "identical" for task in self.tasks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "against": self.against,
            "shadow_results": self.shadow_results,
            "original_results": self.original_results,
            "compared": len(self.tasks),
            "identical": self.count("identical"),
            "changed": self.count("changed"),
            "no_original": self.count("no-original"),
            "pending": self.count("pending"),
            "agreement": [tally.as_dict() for tally in self.fields],
            "engines": self.engines,
            "tasks": [task.as_dict() for task in self.tasks],
        }


def compare(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """Every difference between two JSON values, by dotted path (``output.items[2].score``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[FieldChange] = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                changes.append(FieldChange(where, "removed", old=old[key]))
            elif key not in old:
                changes.append(FieldChange(where, "added", new=new[key]))
            else:
                changes.extend(compare(old[key], new[key], where))
        return changes
    if isinstance(old, list) and isinstance(new, list):
        changes = []
        for index in range(max(len(old), len(new))):
            where = f"{path}[{index}]"
            if index >= len(new):
                changes.append(FieldChange(where, "removed", old=old[index]))
            elif index >= len(old):
                changes.append(FieldChange(where, "added", new=new[index]))
            else:
                changes.extend(compare(old[index], new[index], where))
        return changes
    if old != new or type(old) is not type(new):
        return [FieldChange(path or "(value)", "changed", old=old, new=new)]
    return []


async def diff_shadow(
    reader: HistoryReader,
    prefix: str,
    *,
    against: str | None = None,
    progress: Callable[[str, int], Progress] | None = None,
    examples: int = 3,
) -> DiffReport:
    """Compare the results under ``prefix`` with the originals they re-ran; ``examples``
    disagreements are kept per field."""
    if not prefix:
        raise ConfigurationError(
            "give the shadow prefix that `expediter replay --rerun --into PREFIX` used"
        )
    shadow = TopicNames(prefix)
    topics = await reader.topics()
    task_topics = sorted(
        name for name in topics if name.startswith(prefix) and _TASKS.match(name[len(prefix) :])
    )
    if shadow.results not in topics or not task_topics:
        raise ConfigurationError(
            f"no shadow re-run under prefix {prefix!r} (no {shadow.results} or "
            f"{prefix}tasks.* topic): run `expediter replay <tasks topic> --rerun --into "
            f"{prefix} --run agents/<agent>.py` first"
        )

    async def read(selection: Selection) -> list[Record]:
        plan = await reader.plan(selection)
        callback = progress(selection.topic, plan.total) if progress else None
        return await reader.records(plan, progress=callback)

    tasks: dict[str, tuple[str | None, str | None, datetime | None]] = {}
    origins: set[str] = set()
    for topic in task_topics:
        for record in await read(Selection(topic=topic, allow_empty=True)):
            origin = dict(record.headers or ()).get(SHADOW_HEADER)
            document = _document(record.value)
            if origin is None or "event_id" not in document:
                continue
            source = origin.decode(errors="replace").rsplit("/", 2)[0]
            origins.add(shadow_target(source, prefix).original_prefix)
            tasks[str(document["event_id"])] = (
                document.get("workflow_id"), document.get("step_id"), _when(document),
            )  # fmt: skip
    if not tasks:
        raise ConfigurationError(
            f"the topics {', '.join(task_topics)} hold no shadow tasks (records with an "
            f"{SHADOW_HEADER} header): re-run into {prefix!r} with `expediter replay --rerun`"
        )
    if against is None:
        if len(origins) > 1:
            raise ConfigurationError(
                f"the shadow tasks under {prefix!r} come from several prefixes "
                f"({', '.join(repr(o) for o in sorted(origins))}): pass --against PREFIX"
            )
        (against,) = origins
    original = TopicNames(against)
    await reader.require(original.results)

    shadow_results = _latest(await read(Selection(topic=shadow.results, allow_empty=True)), tasks)
    times = [when for _, _, when in tasks.values() if when is not None]
    since = min(times) - _CLOCK_MARGIN if times else None
    originals = _latest(
        await read(Selection(topic=original.results, since=since, clamp=True, allow_empty=True)),
        tasks,
    )
    diffs = []
    pairs = []
    for task_id, (workflow_id, step_id, _) in tasks.items():
        new, old = shadow_results.get(task_id), originals.get(task_id)
        if new is None:
            diffs.append(TaskDiff(task_id, workflow_id, step_id, "pending"))
        elif old is None:
            diffs.append(TaskDiff(task_id, workflow_id, step_id, "no-original"))
        else:
            pairs.append(Pair(task_id, workflow_id, old, new))
            changes = tuple(compare(_outcome(old), _outcome(new)))
            state: TaskState = "changed" if changes else "identical"
            diffs.append(TaskDiff(task_id, workflow_id, step_id, state, changes))
    return DiffReport(
        prefix=prefix,
        against=against,
        shadow_results=shadow.results,
        original_results=original.results,
        tasks=tuple(diffs),
        fields=tuple(agreement(pairs, examples=examples)),
        engines={
            "original": engines_answering(pair.original for pair in pairs),
            "shadow": engines_answering(pair.shadow for pair in pairs),
        },
    )


def _document(value: bytes | None) -> dict[str, Any]:
    try:
        document = json.loads(value) if value is not None else None
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _when(document: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(document.get("created_at")))
    except ValueError:
        return None


def _latest(records: list[Record], wanted: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The last result per wanted task id (by creation time, then offset)."""
    found: dict[str, tuple[str, int, dict[str, Any]]] = {}
    for record in records:
        document = _document(record.value)
        task_id = str(document.get("task_id"))
        if task_id not in wanted:
            continue
        rank = (str(document.get("created_at")), record.offset)
        if task_id not in found or rank > found[task_id][:2]:
            found[task_id] = (*rank, document)
    return {task_id: entry[2] for task_id, entry in found.items()}


def _outcome(result: dict[str, Any]) -> dict[str, Any]:
    return {name: result.get(name) for name in _COMPARED}


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 80 else text[:79] + "…"
