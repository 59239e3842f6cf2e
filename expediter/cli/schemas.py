"""``expediter schemas export|check``: the JSON Schema contract in ``schemas/``.

``export`` writes a schema for every event and every agent payload model (agents are loaded by
path from ``agents/``); ``export --check`` fails on drift without writing. ``check --against``
compares the current models with the schemas at a git ref or in a folder and fails on a
backward-incompatible change, naming each.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Annotated, Any

import typer

from expediter.authoring.loading import load_agents
from expediter.cli.output import console, emit_json, fail
from expediter.errors import ConfigurationError
from expediter.events.compatibility import breaking_changes
from expediter.events.exporting import (
    PayloadModels,
    generate_schemas,
    read_schemas,
    render,
    write_schemas,
)

__all__ = ["app", "load_payload_models"]

app = typer.Typer(
    help="Export and check the JSON Schemas of events and payloads.", no_args_is_help=True
)

SchemasDir = Annotated[Path, typer.Option("--dir", help="The schemas folder.")]
AgentsDir = Annotated[
    Path, typer.Option("--agents", help="Folder of agent files whose payload models get schemas.")
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]


def load_payload_models(agents: Path) -> list[PayloadModels]:
    """The agents of ``agents/`` (none when the folder does not exist)."""
    return list(load_agents(agents)) if agents.is_dir() else []


@app.command()
def export(
    dir_: SchemasDir = Path("schemas"),
    agents: AgentsDir = Path("agents"),
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if files differ.")
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Write the schemas generated from the models (or, with --check, report drift)."""
    documents = generate_schemas(load_payload_models(agents))
    if check:
        committed = read_schemas(dir_)
        drift = sorted(
            path
            for path in set(documents) | set(committed)
            if path not in committed or path not in documents
            or render(committed[path]) != render(documents[path])
        )  # fmt: skip
        if json_:
            emit_json({"drift": drift})
        elif drift:
            console.print("\n".join(f"drift: {dir_ / p}" for p in drift))
        if drift:
            fail("the committed schemas differ from the models: run `expediter schemas export`")
        if not json_:
            console.print(f"{len(documents)} schemas match the models")
        return
    changed = write_schemas(dir_, documents)
    if json_:
        emit_json({"written": changed, "total": len(documents)})
    else:
        console.print(
            f"{len(documents)} schemas, {len(changed)} changed: {', '.join(changed) or '-'}"
        )


def _schemas_at(against: str, dir_: Path) -> dict[str, dict[str, Any]]:
    folder = Path(against)
    if folder.is_dir():
        return read_schemas(folder)
    prefix = dir_.as_posix().rstrip("/") + "/"
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", against, "--", prefix],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if listing.returncode != 0:
        raise ConfigurationError(
            f"--against {against!r} is neither a folder nor a git ref here "
            f"({listing.stderr.strip()}); pass a commit, branch, tag or a schemas folder"
        )
    documents: dict[str, dict[str, Any]] = {}
    for name in listing.stdout.split():
        if name.endswith(".json"):
            blob = subprocess.run(
                ["git", "show", f"{against}:{name}"], capture_output=True, text=True, check=True
            )
            documents[name.removeprefix(prefix)] = json.loads(blob.stdout)
    return documents


@app.command(name="check")
def check_(
    against: Annotated[
        str, typer.Option(help="A git ref (main, v1.2.0, HEAD~1) or a schemas folder.")
    ],
    dir_: SchemasDir = Path("schemas"),
    agents: AgentsDir = Path("agents"),
    json_: JsonFlag = False,
) -> None:
    """Fail on a backward-incompatible change since AGAINST: removed, newly required, narrowed."""
    old = _schemas_at(against, dir_)
    if not old:
        fail(f"no schemas found at {against!r} under {dir_}/: nothing to compare with", code=2)
    changes = breaking_changes(old, generate_schemas(load_payload_models(agents)))
    if json_:
        emit_json({"against": against, "compatible": not changes, "changes": changes})
        if changes:
            raise typer.Exit(1)
        return
    if changes:
        for change in changes:
            console.print(f"[red]breaking[/] {change}", highlight=False)
        fail(f"{len(changes)} backward-incompatible change(s) since {against}")
    console.print(f"compatible with {against}: {len(old)} schemas checked")
