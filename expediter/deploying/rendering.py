"""Writing the manifests as YAML files, and telling the committed files from fresh ones.

The text of a file depends only on its :class:`~expediter.deploying.objects.Manifest`: keys in
the order the builder put them (never sorted, so ``apiVersion, kind, metadata, spec`` read as
people write them), one ``---`` between documents, no line folding. So rendering twice gives the
same bytes, and :func:`find_drift` can compare files as text.

:func:`write_manifests` writes what changed and removes the YAML files of keda/ and k8s/ that no
manifest produces any more (an agent that was deleted), so the folders hold exactly the render.

Called by ``expediter keda render`` (:mod:`expediter.cli.keda_render`) and the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from expediter.deploying.objects import Manifest
from expediter.errors import ConfigurationError

__all__ = [
    "GENERATED_DIRS",
    "Drift",
    "WriteReport",
    "dump_documents",
    "find_drift",
    "generated_files",
    "render_text",
    "write_manifests",
]

GENERATED_DIRS = ("keda", "k8s")
"""Every YAML file under these folders is generated; nothing else there is."""


class _Dumper(yaml.SafeDumper):
    """Block style with list items indented under their key, as kubectl and kustomize print."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dump_documents(documents: Sequence[Any]) -> str:
    """YAML documents joined by ``---``, keys in insertion order."""
    return "---\n".join(
        yaml.dump(
            document,
            Dumper=_Dumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=10_000,
        )
        for document in documents
    )


def render_text(manifest: Manifest) -> str:
    """The whole file: the generated-file header, then the documents."""
    return manifest.header + dump_documents(manifest.documents)


@dataclass(frozen=True)
class Drift:
    """A file that differs from its fresh render: ``differs``, ``missing`` or ``extra``."""

    path: str
    change: Literal["differs", "missing", "extra"]

    @property
    def message(self) -> str:
        what = {
            "differs": "differs from what `expediter keda render` produces",
            "missing": "is not there but `expediter keda render` produces it",
            "extra": "is not produced by `expediter keda render` any more",
        }[self.change]
        return f"{self.path} {what}"


@dataclass
class WriteReport:
    """What :func:`write_manifests` did, by path relative to the root."""

    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def generated_files(root: Path) -> list[str]:
    """The YAML files now under keda/ and k8s/ of ``root``, relative and sorted."""
    found: list[str] = []
    for folder in GENERATED_DIRS:
        base = root / folder
        if base.is_dir():
            found += [p.relative_to(root).as_posix() for p in base.rglob("*.yaml") if p.is_file()]
    return sorted(found)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read ({exc}); check its permissions") from exc


def find_drift(root: Path, manifests: Sequence[Manifest]) -> list[Drift]:
    """Files under ``root`` that differ from ``manifests``, are missing, or are left over."""
    drift: list[Drift] = []
    wanted = {m.path for m in manifests}
    for manifest in manifests:
        current = _read(root / manifest.path)
        if current is None:
            drift.append(Drift(manifest.path, "missing"))
        elif current != render_text(manifest):
            drift.append(Drift(manifest.path, "differs"))
    drift += [Drift(path, "extra") for path in generated_files(root) if path not in wanted]
    return sorted(drift, key=lambda d: d.path)


def write_manifests(root: Path, manifests: Sequence[Manifest]) -> WriteReport:
    """Write every manifest under ``root`` (only those whose text changed) and remove the
    generated files that no manifest produces."""
    report = WriteReport()
    wanted = {m.path for m in manifests}
    for manifest in manifests:
        target = root / manifest.path
        text = render_text(manifest)
        if _read(target) == text:
            report.unchanged.append(manifest.path)
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"{target}: cannot be written ({exc}); check the folder's permissions"
            ) from exc
        report.written.append(manifest.path)
    for path in generated_files(root):
        if path not in wanted:
            (root / path).unlink()
            report.removed.append(path)
    return report
