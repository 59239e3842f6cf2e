"""``expediter keda render`` and ``expediter keda check``: the keda/ and k8s/ manifests.

``render`` builds every file of keda/ and k8s/ from the agents (``agents/``) and the topic
catalog, refuses to write manifests that ``check`` would refuse, writes what changed and removes
generated files no agent needs any more. ``render --check`` writes nothing and exits 1 naming
each file that differs, is missing or is left over (CI's drift check).

``check`` reads the committed keda/ and k8s/base/ and exits 2 naming each refusal as
``FILE: OBJECT: PROBLEM; FIX``: maxReplicaCount above the topic's partitions (unless
allowIdleConsumers), trigger metadata KEDA refuses, a grace period shorter than the longest
task and its shutdown. Both take ``--json``.

Registered on the ``keda`` sub-app by :mod:`expediter.cli.keda`, one line each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from expediter.cli.output import console, emit_json, fail
from expediter.deploying import (
    build_manifests,
    check_documents,
    documents_of,
    find_drift,
    load_sources,
    read_documents,
    write_manifests,
)
from expediter.errors import ConfigurationError
from expediter.messaging import DEFAULT_CATALOG, load_catalog
from expediter.operating import operator_manifests

__all__ = ["check", "render"]

AgentsDir = Annotated[
    Path, typer.Option("--agents", help="Folder of agent files.", file_okay=False)
]
CatalogPath = Annotated[
    Path, typer.Option("--catalog", help="The topic catalog file.", dir_okay=False)
]
RootDir = Annotated[
    Path,
    typer.Option("--root", help="Where keda/ and k8s/ are (the repository root).", file_okay=False),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]


def _refuse(messages: list[str], json_: bool, document: dict[str, object]) -> None:
    if json_:
        emit_json({"ok": False, **document})
        raise typer.Exit(2)
    fail("\n".join(messages), code=2)


def render(
    agents: AgentsDir = Path("agents"),
    catalog: CatalogPath = DEFAULT_CATALOG,
    root: RootDir = Path("."),
    check_only: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the files differ.")
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Write keda/ and k8s/ from the agents and the topic catalog (--check: report drift)."""
    try:
        sources = load_sources(agents)
        loaded = load_catalog(catalog)
        # k8s/crds and k8s/operator: the Agent CRD and the operator's install.
        manifests = build_manifests(sources, loaded) + operator_manifests()
    except ConfigurationError as exc:
        if json_:
            emit_json({"ok": False, "error": str(exc)})
        raise
    refusals = check_documents(documents_of(manifests), [s.agent for s in sources], loaded)
    if refusals:
        _refuse(
            [r.message for r in refusals] + ["nothing was written"],
            json_,
            {"refusals": [r.as_dict() for r in refusals]},
        )
    if check_only:
        drift = find_drift(root, manifests)
        if json_:
            emit_json(
                {
                    "ok": not drift,
                    "drift": [{"file": d.path, "change": d.change} for d in drift],
                    "files": len(manifests),
                }
            )
        elif not drift:
            console.print(f"[green]ok[/]: {len(manifests)} files match the render")
        if drift:
            if json_:
                raise typer.Exit(1)
            fail(
                "\n".join(d.message for d in drift)
                + "\nrun `expediter keda render` and commit keda/ and k8s/",
                code=1,
            )
        return
    report = write_manifests(root, manifests)
    if json_:
        emit_json(
            {
                "ok": True,
                "written": report.written,
                "unchanged": report.unchanged,
                "removed": report.removed,
            }
        )
        return
    for path in report.written:
        console.print(f"wrote {path}", highlight=False)
    for path in report.removed:
        console.print(f"removed {path}", highlight=False)
    console.print(
        f"[green]ok[/]: {len(report.written)} written, {len(report.unchanged)} unchanged, "
        f"{len(report.removed)} removed",
        highlight=False,
    )


def check(
    agents: AgentsDir = Path("agents"),
    catalog: CatalogPath = DEFAULT_CATALOG,
    root: RootDir = Path("."),
    json_: JsonFlag = False,
) -> None:
    """Refuse committed manifests KEDA or the kubelet would get wrong; exit 2 naming each."""
    try:
        sources = load_sources(agents)
        loaded = load_catalog(catalog)
        documents = read_documents(root)
    except ConfigurationError as exc:
        if json_:
            emit_json({"ok": False, "error": str(exc)})
        raise
    refusals = check_documents(documents, [s.agent for s in sources], loaded)
    if refusals:
        _refuse(
            [r.message for r in refusals],
            json_,
            {"refusals": [r.as_dict() for r in refusals], "objects": len(documents)},
        )
    if json_:
        emit_json({"ok": True, "refusals": [], "objects": len(documents)})
        return
    console.print(
        f"[green]ok[/]: {len(documents)} objects in keda/ and k8s/base/ pass", highlight=False
    )
