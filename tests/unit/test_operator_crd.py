"""The Agent CRD: the committed file is the model's, and the model refuses what the CRD refuses.

The API server's own refusals (CEL, schema) are checked on the real cluster in
tests/cluster/test_operator.py; here the model and its generated schema are checked offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from expediter.deploying import render_text
from expediter.operating import CRD_NAME, AgentSpec, custom_resource_definition, spec_problems
from expediter.operating.manifests import cluster_role_rules, operator_manifests

ROOT = Path(__file__).resolve().parents[2]
BASE = {"capability": "soil-analysis", "agent": "agents/soil_analyzer.py", "image": "expediter:dev"}


def _schema() -> dict[str, Any]:
    version = custom_resource_definition()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            found += _walk(value, f"{path}[{n}]")
    return found


def test_committed_crd_and_operator_files_are_the_models() -> None:
    for manifest in operator_manifests():
        committed = ROOT / manifest.path
        assert committed.exists(), f"{manifest.path} is missing: run `expediter keda render`"
        assert committed.read_text() == render_text(manifest), (
            f"{manifest.path} drifted from expediter/operating: run `expediter keda render`"
        )
    (crd,) = yaml.safe_load_all((ROOT / "k8s" / "crds" / f"{CRD_NAME}.yaml").read_text())
    assert crd == custom_resource_definition()


def test_the_schema_is_structural() -> None:
    # What the API server refuses in a CRD: references, null types, draft-2020 numbers,
    # additionalProperties beside properties.
    for path, node in _walk(_schema()):
        assert "$ref" not in node, path
        assert node.get("type") != "null", path
        assert "title" not in node, path
        assert not ("properties" in node and "additionalProperties" in node), path
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(key, True), bool), f"{path}.{key}"
        if "properties" in node:
            assert node.get("type") == "object", path


def test_kubectl_columns_read_like_a_deployment() -> None:
    version = custom_resource_definition()["spec"]["versions"][0]
    shown = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert shown == ["Phase", "Ready", "Lag", "Age"]
    assert version["subresources"] == {"status": {}}


def test_the_cel_rules_name_the_field_they_refuse() -> None:
    rules = _schema()["properties"]["spec"]["x-kubernetes-validations"]
    assert {r["fieldPath"] for r in rules} == {".maxReplicas", ".minReplicas"}
    assert all(r["reason"] == "FieldValueInvalid" and r["message"] for r in rules)


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"minReplicas": 3, "maxReplicas": 2}, "spec.maxReplicas", "must be >= minReplicas"),
        ({"maxReplicas": 8, "partitions": 6}, "spec.maxReplicas", "must be <= partitions"),
        ({"minReplicas": 4, "partitions": 2, "maxReplicas": 2}, "spec.minReplicas", "partitions"),
    ],
)
def test_the_model_refuses_what_the_cel_rules_refuse(
    changes: dict[str, int], field: str, words: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        AgentSpec.model_validate({**BASE, **changes})
    assert field in str(refused.value)
    assert words in str(refused.value)


def test_a_valid_spec_has_no_problems_and_keeps_its_defaults_for_the_renderer() -> None:
    spec = AgentSpec.model_validate({**BASE, "maxReplicas": 6})
    assert spec_problems(spec) == []
    # Defaults that depend on the accelerator or another field stay unset in the stored spec.
    assert spec.min_replicas is None
    assert spec.lag_threshold is None
    assert spec.partitions == 6


def test_an_unknown_field_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="maxReplica"):
        AgentSpec.model_validate({**BASE, "maxReplica": 2})


def test_the_operator_may_delete_nothing_and_read_no_secret() -> None:
    rules = cluster_role_rules()
    assert not any("delete" in r["verbs"] or "*" in r["verbs"] for r in rules)
    assert not any("secrets" in r["resources"] for r in rules)


@pytest.mark.parametrize("version", ["1.30", "1.37"])
def test_the_operator_install_validates_against_kubernetes_schemas(version: str) -> None:
    objects = [
        document
        for manifest in operator_manifests()
        if not manifest.path.endswith("kustomization.yaml")
        for document in manifest.documents
        if isinstance(document, dict)
    ]
    assert sorted(o["kind"] for o in objects) == [
        "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Deployment",
        "ServiceAccount",
    ]  # fmt: skip
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}: {exc.message} at {list(exc.path)}")


def test_the_operator_pod_is_non_root_with_a_read_only_root() -> None:
    (deployment,) = next(
        m.documents for m in operator_manifests() if m.path == "k8s/operator/deployment.yaml"
    )
    assert isinstance(deployment, dict)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
