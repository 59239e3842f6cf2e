"""Finding backward-incompatible changes between two sets of JSON Schemas.

``expediter schemas check --against <ref|dir>`` compares the schemas the models generate now
with older ones and names each change that would break an existing producer or consumer:

- a removed schema, or a removed field;
- a new required field (an old producer does not send it);
- a narrowed type: a JSON type dropped (``number`` -> ``integer`` counts), enum or const values
  dropped, a length or range bound tightened, a pattern changed.

Additions (new optional fields, widened types) pass. ``$ref`` is followed into ``$defs``, and
``T | null`` unions are compared through their non-null branch. Called by the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["breaking_changes"]

Schema = Mapping[str, Any]
_ANY = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}


def breaking_changes(old: Mapping[str, Schema], new: Mapping[str, Schema]) -> list[str]:
    """Each breaking change from ``old`` to ``new`` (both keyed by path), as one line."""
    changes: list[str] = []
    for path in sorted(old):
        if path not in new:
            changes.append(f"{path}: schema removed")
            continue
        _Comparison(path, old[path], new[path], changes).compare(old[path], new[path], "")
    return changes


class _Comparison:
    def __init__(self, path: str, old_root: Schema, new_root: Schema, out: list[str]) -> None:
        self.path = path
        self.roots = (old_root, new_root)
        self.out = out
        self.seen: set[tuple[str, str, str]] = set()

    def report(self, where: str, what: str) -> None:
        self.out.append(f"{self.path}: {where or '<root>'}: {what}")

    def resolve(self, schema: Schema, side: int) -> Schema:
        while "$ref" in schema:
            ref = str(schema["$ref"])
            if not ref.startswith("#/$defs/"):
                return schema
            schema = self.roots[side].get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
        return schema

    def branches(self, schema: Schema, side: int) -> list[Schema]:
        schema = self.resolve(schema, side)
        options = schema.get("anyOf") or schema.get("oneOf")
        if not options:
            return [schema]
        return [b for option in options for b in self.branches(option, side)]

    def types(self, schema: Schema, side: int) -> frozenset[str]:
        found: set[str] = set()
        for branch in self.branches(schema, side):
            if "type" in branch:
                declared = branch["type"]
                found.update([declared] if isinstance(declared, str) else declared)
            elif "const" in branch:
                found.add(_JSON_TYPES.get(type(branch["const"]), "object"))
            elif "enum" in branch:
                found.update(_JSON_TYPES.get(type(v), "object") for v in branch["enum"])
            elif "properties" in branch:
                found.add("object")
            else:
                return _ANY
        return frozenset(found)

    def compare(self, old: Schema, new: Schema, where: str) -> None:
        key = (where, repr(old)[:200], repr(new)[:200])
        if key in self.seen:  # recursive $defs
            return
        self.seen.add(key)
        old_types, new_types = self.types(old, 0), self.types(new, 1)
        lost = {t for t in old_types - new_types if not (t == "integer" and "number" in new_types)}
        if lost:
            self.report(
                where,
                f"type narrowed from {sorted(old_types)} to {sorted(new_types)} "
                f"(no longer accepts {sorted(lost)})",
            )
            return
        old_branches = [b for b in self.branches(old, 0) if b.get("type") != "null"]
        new_branches = [b for b in self.branches(new, 1) if b.get("type") != "null"]
        if len(old_branches) == 1 and len(new_branches) == 1:
            self.compare_one(old_branches[0], new_branches[0], where)

    def compare_one(self, old: Schema, new: Schema, where: str) -> None:
        self.compare_values(old, new, where)
        self.compare_bounds(old, new, where)
        self.compare_object(old, new, where)
        if "items" in old and "items" in new:
            self.compare(old["items"], new["items"], f"{where}[]")
        for index, (o, n) in enumerate(
            zip(old.get("prefixItems", []), new.get("prefixItems", []), strict=False)
        ):
            self.compare(o, n, f"{where}[{index}]")

    def compare_values(self, old: Schema, new: Schema, where: str) -> None:
        old_values = _allowed_values(old)
        new_values = _allowed_values(new)
        if new_values is None:
            return
        if old_values is None:
            self.report(where, f"values restricted to {_listing(new_values)}")
        elif dropped := old_values - new_values:
            self.report(where, f"values {_listing(dropped)} no longer allowed")

    def compare_bounds(self, old: Schema, new: Schema, where: str) -> None:
        for bound, tighter in (
            ("maxLength", min), ("maxItems", min), ("maximum", min), ("exclusiveMaximum", min),
            ("minLength", max), ("minItems", max), ("minimum", max), ("exclusiveMinimum", max),
        ):  # fmt: skip
            if bound not in new:
                continue
            if bound not in old or (tighter(old[bound], new[bound]) == new[bound] != old[bound]):
                self.report(
                    where, f"{bound} tightened from {old.get(bound, 'none')} to {new[bound]}"
                )
        if "pattern" in new and new.get("pattern") != old.get("pattern"):
            self.report(where, f"pattern changed from {old.get('pattern')!r} to {new['pattern']!r}")

    def compare_object(self, old: Schema, new: Schema, where: str) -> None:
        old_props: Mapping[str, Schema] = old.get("properties", {})
        new_props: Mapping[str, Schema] = new.get("properties", {})
        prefix = f"{where}." if where else ""
        for name in sorted(set(old_props) - set(new_props)):
            self.report(f"{prefix}{name}", "field removed")
        for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
            self.report(f"{prefix}{name}", "field is newly required")
        for name in sorted(set(old_props) & set(new_props)):
            self.compare(old_props[name], new_props[name], f"{prefix}{name}")
        if isinstance(old.get("additionalProperties"), Mapping) and isinstance(
            new.get("additionalProperties"), Mapping
        ):
            self.compare(old["additionalProperties"], new["additionalProperties"], f"{prefix}*")


def _allowed_values(schema: Schema) -> frozenset[Any] | None:
    if "const" in schema:
        return frozenset([_hashable(schema["const"])])
    if "enum" in schema:
        return frozenset(_hashable(v) for v in schema["enum"])
    return None


def _listing(values: frozenset[Any]) -> str:
    return ", ".join(sorted(map(repr, values)))


def _hashable(value: Any) -> Any:
    return repr(value) if isinstance(value, dict | list) else value
