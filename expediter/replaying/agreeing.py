"""How often a shadow run agrees with the recorded results, field by field: the figures that
judge a candidate engine or model before it takes live traffic.

For each task with both an original and a shadow result, every field is compared: ``status``,
each leaf of ``output`` by dotted path (``output.moisture``, ``output.plan.hours``; a list is
one value, compared whole), and ``error.code``. A field that only one side has (a failed result
has no output) counts as a disagreement. Each field gets its agreement rate and a few examples
of disagreement (task, workflow, original value, shadow value). :func:`engines_answering`
counts which engine and model answered each side's reasoning calls (from the results'
``reasoning`` records), so that a reader sees the shadow was answered by the candidate and not
by a fallback. Called by :mod:`expediter.replaying.diffing`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Disagreement", "FieldAgreement", "Pair", "agreement", "engines_answering"]

_MISSING: Any = object()


@dataclass(frozen=True)
class Pair:
    """One task's original and shadow result documents."""

    task_id: str
    workflow_id: str | None
    original: dict[str, Any]
    shadow: dict[str, Any]


@dataclass(frozen=True)
class Disagreement:
    task_id: str
    workflow_id: str | None
    original: Any
    shadow: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "workflow_id": self.workflow_id,
            "original": self.original,
            "shadow": self.shadow,
        }


@dataclass
class FieldAgreement:
    path: str
    """``status``, ``output.<dotted path>`` or ``error.code``."""
    compared: int = 0
    agreed: int = 0
    examples: list[Disagreement] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.agreed / self.compared if self.compared else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.path,
            "compared": self.compared,
            "agreed": self.agreed,
            "rate": round(self.rate, 4),
            "examples": [example.as_dict() for example in self.examples],
        }


def agreement(pairs: Iterable[Pair], *, examples: int = 3) -> list[FieldAgreement]:
    """Per field, how many of ``pairs`` agree; ``status`` first, then the fields by path."""
    fields: dict[str, FieldAgreement] = {}
    for pair in pairs:
        old, new = _fields(pair.original), _fields(pair.shadow)
        for path in sorted(old.keys() | new.keys(), key=_order):
            tally = fields.setdefault(path, FieldAgreement(path))
            tally.compared += 1
            before, after = old.get(path, _MISSING), new.get(path, _MISSING)
            if before is not _MISSING and after is not _MISSING and _same(before, after):
                tally.agreed += 1
            elif len(tally.examples) < examples:
                tally.examples.append(
                    Disagreement(
                        pair.task_id, pair.workflow_id,
                        None if before is _MISSING else before,
                        None if after is _MISSING else after,
                    )
                )  # fmt: skip
    return sorted(fields.values(), key=lambda tally: _order(tally.path))


def engines_answering(results: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many reasoning calls each ``engine/model`` answered in ``results`` (``none`` when no
    engine answered a call)."""
    counts: Counter[str] = Counter()
    for result in results:
        calls = result.get("reasoning")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                engine = call.get("engine")
                counts[f"{engine}/{call.get('model')}" if engine else "none"] += 1
    return dict(sorted(counts.items()))


def _fields(result: dict[str, Any]) -> dict[str, Any]:
    found = {"status": result.get("status")}
    output = result.get("output")
    if isinstance(output, dict):
        found.update(_leaves(output, "output"))
    error = result.get("error")
    if isinstance(error, dict) and "code" in error:
        found["error.code"] = error["code"]
    return found


def _leaves(value: dict[str, Any], path: str) -> Iterator[tuple[str, Any]]:
    for key, item in value.items():
        where = f"{path}.{key}"
        if isinstance(item, dict) and item:
            yield from _leaves(item, where)
        else:
            yield where, item


def _same(a: Any, b: Any) -> bool:
    # 1 and 1.0 agree (JSON does not tell them apart); True and 1 do not.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _order(path: str) -> tuple[int, str]:
    return (0 if path == "status" else 2 if path.startswith("error.") else 1, path)
