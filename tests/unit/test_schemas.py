"""schemas/: the committed files match the models, and breaking changes are named."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from expediter.cli.schemas import load_payload_models
from expediter.events.compatibility import breaking_changes
from expediter.events.exporting import generate_schemas, read_schemas, render

ROOT = Path(__file__).resolve().parents[2]


def test_committed_schemas_match_the_models() -> None:
    generated = generate_schemas(load_payload_models(ROOT / "agents"))
    committed = read_schemas(ROOT / "schemas")
    assert sorted(committed) == sorted(generated), "run `expediter schemas export`"
    for path, document in generated.items():
        assert render(committed[path]) == render(document), (
            f"schemas/{path} drifted from the models: run `expediter schemas export`"
        )


def test_every_event_has_a_schema() -> None:
    committed = read_schemas(ROOT / "schemas")
    titles = {doc["title"] for doc in committed.values()}
    assert {"TaskEvent", "ResultEvent", "WorkflowEvent", "AgentCard", "DeadLetter"} <= titles


@pytest.fixture
def task_schema() -> dict[str, Any]:
    return generate_schemas()["events/task-event.json"]


def _changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return breaking_changes({"t.json": old}, {"t.json": new})


def test_identical_schemas_are_compatible(task_schema: dict[str, Any]) -> None:
    assert _changed(task_schema, copy.deepcopy(task_schema)) == []


def test_a_new_optional_field_is_compatible(task_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(task_schema)
    new["properties"]["priority"] = {"type": "integer", "default": 0}
    assert _changed(task_schema, new) == []


def test_a_widened_type_is_compatible(task_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(task_schema)
    new["properties"]["attempt"] = {"type": "number"}
    assert _changed(task_schema, new) == []


def test_a_removed_field_is_named(task_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(task_schema)
    del new["properties"]["deadline"]
    assert _changed(task_schema, new) == ["t.json: deadline: field removed"]


def test_a_new_required_field_is_named(task_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(task_schema)
    new["properties"]["tenant"] = {"type": "string"}
    new["required"].append("tenant")
    assert _changed(task_schema, new) == ["t.json: tenant: field is newly required"]


def test_narrowed_types_are_named(task_schema: dict[str, Any]) -> None:
    new = copy.deepcopy(task_schema)
    new["properties"]["deadline"] = {"type": "string", "format": "date-time"}  # null dropped
    new["$defs"]["Producer"]["properties"]["version"]["maxLength"] = 8
    (deadline, version) = _changed(task_schema, new)
    assert deadline.startswith("t.json: deadline: type narrowed")
    assert "no longer accepts ['null']" in deadline
    assert version == "t.json: producer.version: maxLength tightened from 64 to 8"


def test_number_to_integer_and_enum_narrowing_are_breaking() -> None:
    old = {"type": "object", "properties": {
        "score": {"type": "number"}, "mode": {"enum": ["a", "b"]}}}  # fmt: skip
    new = {"type": "object", "properties": {
        "score": {"type": "integer"}, "mode": {"enum": ["a"]}}}  # fmt: skip
    changes = _changed(old, new)
    assert len(changes) == 2
    assert "mode: values 'b' no longer allowed" in changes[0]
    assert "score: type narrowed" in changes[1]


def test_a_removed_schema_is_named(task_schema: dict[str, Any]) -> None:
    assert breaking_changes({"gone.json": task_schema}, {}) == ["gone.json: schema removed"]


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "expediter.cli", *args],
        cwd=cwd, capture_output=True, text=True, check=False, env=dict(os.environ),
    )  # fmt: skip


def test_check_against_a_git_ref_names_each_breaking_change(tmp_path: Path) -> None:
    # An "old" commit whose schemas have a field the current models lack, and a looser type.
    old_root = tmp_path / "schemas"
    documents = generate_schemas()
    documents["events/task-event.json"]["properties"]["legacy"] = {"type": "string"}
    documents["events/agent-card.json"]["properties"]["version"]["maxLength"] = 1000
    for path, document in documents.items():
        (old_root / path).parent.mkdir(parents=True, exist_ok=True)
        (old_root / path).write_text(render(document))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "old"], check=True)

    result = _cli(["schemas", "check", "--against", "HEAD", "--json"], tmp_path)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["compatible"] is False
    assert sorted(report["changes"]) == [
        "events/agent-card.json: version: maxLength tightened from 1000 to 64",
        "events/task-event.json: legacy: field removed",
    ]
    # The same schemas as a folder, and against themselves: compatible.
    same = _cli(
        ["schemas", "check", "--against", str(ROOT / "schemas"), "--agents", str(ROOT / "agents")],
        tmp_path,
    )
    assert same.returncode == 0, same.stderr

    bad = _cli(["schemas", "check", "--against", "no-such-ref"], tmp_path)
    assert bad.returncode == 2
    assert "neither a folder nor a git ref" in bad.stderr
