"""The Agent CustomResourceDefinition, generated from :mod:`expediter.operating.resources`.

:func:`custom_resource_definition` turns the pydantic models' JSON Schema into the structural
OpenAPI v3 schema the API server wants: ``$ref`` inlined, ``Optional`` fields made plain
optional ones (the API never stores a null), ``exclusiveMinimum`` in OpenAPI's boolean form,
titles and ``additionalProperties: false`` dropped (the server prunes and, with
``--validate=strict``, names unknown fields itself). The CEL rules declared on the models pass
through as ``x-kubernetes-validations``, and the printer columns make ``kubectl get agents``
read like ``kubectl get deploy``.

Called by :mod:`expediter.operating.manifests` (the committed ``k8s/crds/`` file) and the tests.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel

from expediter.operating.resources import (
    CATEGORY,
    GROUP,
    KIND,
    PLURAL,
    SINGULAR,
    VERSION,
    AgentSpec,
    AgentStatus,
)

__all__ = ["CRD_NAME", "custom_resource_definition", "openapi_schema"]

CRD_NAME = f"{PLURAL}.{GROUP}"
# A Service takes the Agent's name, and Service names are DNS-1035 labels: a letter first.
_NAME_RULE = {
    "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$')",
    "message": (
        "metadata.name must be a DNS-1035 label (a lowercase letter first, then a-z, 0-9 or "
        "'-', at most 63 characters): it names the agent's Deployment, Service and ScaledObject"
    ),
    # fieldPath may not point into metadata; the message names the field instead.
    "reason": "FieldValueInvalid",
}
_DROPPED = ("title", "additionalProperties", "$defs")


def _description(text: str) -> str:
    # Docstrings use reST literals; `kubectl explain` prints plain text on one line.
    return re.sub(r"\s+", " ", text.replace("``", "`")).strip()


def _convert(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_convert(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs)
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        kept = [option for option in options if option != {"type": "null"}]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if rest.get("default", ...) is None:
            del rest["default"]
        if len(kept) == 1:
            return _convert({**kept[0], **rest}, defs)
        return _convert({**rest, "anyOf": kept}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "description":
            out[key] = _description(value)
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        else:
            out[key] = _convert(value, defs)
    if "format" in out and out["format"] == "date-time":
        out["type"] = "string"
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model`` (camelCase, as the API stores it)."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    converted: dict[str, Any] = _convert(schema, schema.get("$defs", {}))
    return converted


def custom_resource_definition() -> dict[str, Any]:
    """The ``agents.expediter.io`` CRD, as ``kubectl apply`` takes it."""
    spec = openapi_schema(AgentSpec)
    status = openapi_schema(AgentStatus)
    schema = {
        "type": "object",
        "description": "An agent of Expediter: Kafka tasks in, results out, scaled by KEDA on "
        "its consumer group's lag. The operator makes its Deployment, Service, "
        "PodDisruptionBudget, ScaledObject and topics.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [_NAME_RULE],
    }
    columns = [
        ("Phase", "string", ".status.phase", "The agent's phase", 0),
        ("Ready", "string", ".status.ready", "Ready replicas / desired replicas", 0),
        ("Lag", "integer", ".status.lag", "The consumer group's lag on the task topic", 0),
        ("Metric", "string", ".status.kedaMetric", "KEDA's metric for the HPA", 1),
        ("Capability", "string", ".spec.capability", "What the agent does", 1),
        ("Image", "string", ".spec.image", "The worker image", 1),
        ("Age", "date", ".metadata.creationTimestamp", "", 0),
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/part-of": "expediter"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": name,
                            "type": kind,
                            "jsonPath": path,
                            **({"description": text} if text else {}),
                            **({"priority": priority} if priority else {}),
                        }
                        for name, kind, path, text, priority in columns
                    ],
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }
