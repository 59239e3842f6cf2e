"""Generating the JSON Schema files in ``schemas/`` from the pydantic models.

The committed files are the contract non-Python producers and consumers code against, so they
are generated, never hand-edited: ``expediter schemas export`` writes them, and a test fails
when the committed files differ from what the models generate (drift). Called by the CLI and
the tests.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from expediter.events.approvals import ApprovalDecision, ApprovalRequest
from expediter.events.envelope import SCHEMA_VERSION
from expediter.events.kinds import (
    AgentCard,
    DeadLetter,
    ResultEvent,
    TaskEvent,
    WorkflowCommand,
    WorkflowEvent,
)

__all__ = ["EVENT_MODELS", "PayloadModels", "generate_schemas", "read_schemas", "write_schemas"]

EVENT_MODELS: dict[str, type[BaseModel]] = {
    "events/task-event.json": TaskEvent,
    "events/result-event.json": ResultEvent,
    "events/workflow-event.json": WorkflowEvent,
    "events/workflow-command.json": WorkflowCommand,
    "events/agent-card.json": AgentCard,
    "events/dead-letter.json": DeadLetter,
    "events/approval-request.json": ApprovalRequest,
    "events/approval-decision.json": ApprovalDecision,
}


class PayloadModels(Protocol):
    """What an agent declares about its payloads (see agents/): its capability and models."""

    @property
    def capability(self) -> str: ...
    @property
    def input_model(self) -> type[BaseModel]: ...
    @property
    def output_model(self) -> type[BaseModel]: ...


def _schema(path: str, model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://expediter.dev/schemas/{path}",
        "x-expediter-schema-version": SCHEMA_VERSION,
        **schema,
    }


def generate_schemas(payloads: Iterable[PayloadModels] = ()) -> dict[str, dict[str, Any]]:
    """Every schema, keyed by its path under ``schemas/``."""
    documents = {path: _schema(path, model) for path, model in EVENT_MODELS.items()}
    for agent in payloads:
        for kind, model in (("input", agent.input_model), ("output", agent.output_model)):
            path = f"payloads/{agent.capability}.{kind}.json"
            documents[path] = _schema(path, model)
    return dict(sorted(documents.items()))


def render(document: Mapping[str, Any]) -> str:
    """The exact text committed for a schema: sorted keys, two-space indent, final newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(root: Path, documents: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Write ``documents`` under ``root``, remove stale ``*.json`` files; return what changed."""
    changed: list[str] = []
    for path, document in documents.items():
        target = root / path
        text = render(document)
        if not target.exists() or target.read_text() != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            changed.append(path)
    for stale in sorted(set(read_schemas(root)) - set(documents)):
        (root / stale).unlink()
        changed.append(stale)
    return changed


def read_schemas(root: Path) -> dict[str, dict[str, Any]]:
    """The committed schemas under ``root``, keyed like :func:`generate_schemas`."""
    return {
        path.relative_to(root).as_posix(): json.loads(path.read_text())
        for path in sorted(root.rglob("*.json"))
    }
