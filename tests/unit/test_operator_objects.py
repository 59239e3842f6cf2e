"""What the operator makes of an Agent is what ``expediter keda render`` commits, for every agent.

An Agent whose spec says what an agent file says gets, apart from the owner reference and the
``managed-by`` label, byte for byte the committed ``keda/<name>.yaml`` ScaledObject and the
Deployment, Service and PDB of ``k8s/base/agents/<name>.yaml``; a GPU agent's Deployment is
the one ``kubectl kustomize k8s/overlays/gpu`` renders.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from expediter.deploying import AgentSource, DeploySettings, load_sources
from expediter.messaging import TopicNames, load_catalog
from expediter.operating import AgentRef, AgentSpec, desired_objects
from expediter.operating.desiring import MANAGED_BY
from expediter.operating.reconciling import drifted_fields
from expediter.operating.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
SOURCES = load_sources(ROOT / "agents")
REF = AgentRef(namespace=DeploySettings().namespace, name="", uid="0000")


def _spec_of(source: AgentSource) -> dict[str, Any]:
    agent = source.agent
    catalog = load_catalog(ROOT / "topics" / "topics.yaml")
    partitions = catalog.topic(TopicNames().tasks(agent.capability)).partitions
    gpu = agent.resources.accelerator == "gpu"
    spec: dict[str, Any] = {
        "capability": agent.capability,
        "agent": source.path,
        "image": DeploySettings().gpu_image if gpu else DeploySettings().image,
        "concurrency": agent.resources.concurrency,
        "maxTaskSeconds": agent.resources.max_task_seconds,
        "partitions": partitions,
    }
    if gpu:
        spec["resources"] = {"gpu": {"count": 1}}
    return spec


def _without_operator_marks(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    assert meta.pop("ownerReferences") == [
        {"apiVersion": "expediter.io/v1alpha1", "kind": "Agent", "name": meta["name"],
         "uid": "0000", "controller": True, "blockOwnerDeletion": True}
    ]  # fmt: skip
    for key in MANAGED_BY:
        assert meta["labels"].pop(key) == MANAGED_BY[key]
    return obj


def _committed(path: str) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((ROOT / path).read_text()))


def _by_name(node: Any) -> Any:
    """Named lists (env, volumes) in name order: kustomize puts the items a patch adds first,
    the operator's merge puts them last, and Kubernetes reads them by name either way."""
    if isinstance(node, dict):
        return {key: _by_name(value) for key, value in node.items()}
    if isinstance(node, list):
        items = [_by_name(item) for item in node]
        if all(isinstance(item, dict) and "name" in item for item in items):
            return sorted(items, key=lambda item: item["name"])
        return items
    return node


def _gpu_overlay() -> dict[str, dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH: install Debian's kubernetes-client")
    out = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / "gpu")],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return {
        d["metadata"]["name"]: d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"
    }


@pytest.mark.parametrize("source", SOURCES, ids=[s.agent.name for s in SOURCES])
def test_an_agent_resource_becomes_the_committed_objects(source: AgentSource) -> None:
    name = source.agent.name
    spec = AgentSpec.model_validate(_spec_of(source))
    made = desired_objects(AgentRef(REF.namespace, name, "0000"), spec, OperatorSettings())

    (scaled,) = _committed(f"keda/{name}.yaml")
    assert _without_operator_marks(made.scaled_object) == scaled
    deployment, service, budget = _committed(f"k8s/base/agents/{name}.yaml")
    assert _without_operator_marks(made.service) == service
    assert _without_operator_marks(made.budget) == budget
    if source.agent.resources.accelerator == "gpu":
        gpu = _gpu_overlay()[name]
        assert _by_name(_without_operator_marks(made.deployment)) == _by_name(gpu)
    else:
        assert _without_operator_marks(made.deployment) == deployment
    (authentication,) = _committed("keda/kafka-trigger-authentication.yaml")
    assert made.trigger_authentication == authentication


def _soil(**changes: Any) -> dict[str, Any]:
    return {**_spec_of(next(s for s in SOURCES if s.agent.name == "soil-analyzer")), **changes}


def _made(**changes: Any) -> Any:
    spec = AgentSpec.model_validate(_soil(**changes))
    return desired_objects(AgentRef("farm", "soil-analyzer", "u-1"), spec, OperatorSettings())


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_what_the_spec_sets_overrides_the_rendered_defaults() -> None:
    made = _made(
        minReplicas=1, maxReplicas=3, lagThreshold=5, pollingInterval=2, cooldownPeriod=20,
        behavior={"scaleDown": {"stabilizationWindowSeconds": 0}},
        resources={"cpu": "100m", "memoryLimit": "1Gi"},
        model={"engine": "openai", "name": "qwen", "baseUrl": "http://llm:8000/v1"},
    )  # fmt: skip
    scaled = made.scaled_object["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 3)
    assert (scaled["pollingInterval"], scaled["cooldownPeriod"]) == (2, 20)
    assert scaled["triggers"][0]["metadata"]["lagThreshold"] == "5"
    behavior = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"] == {"stabilizationWindowSeconds": 0}
    assert behavior["scaleUp"]["policies"]  # the rendered default, untouched
    (container,) = made.deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    env = _env(made.deployment)
    assert env["EXPEDITER_ENGINE_KIND"] == "openai"
    assert env["EXPEDITER_ENGINE_MODEL"] == "qwen"
    assert env["EXPEDITER_ENGINE_BASE_URL"] == "http://llm:8000/v1"
    assert made.deployment["metadata"]["namespace"] == "farm"


def test_a_gpu_agent_gets_its_gpus_its_node_type_and_full_offload() -> None:
    made = _made(
        resources={"gpu": {"count": 2, "type": "NVIDIA-H100-80GB-HBM3"}},
        model={"gguf": "/models/qwen.gguf", "contextSize": 8192},
    )
    pod = made.deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    env = _env(made.deployment)
    assert env["EXPEDITER_ENGINE_KIND"] == "llama"
    assert env["EXPEDITER_ENGINE_N_GPU_LAYERS"] == "-1"
    assert env["EXPEDITER_ENGINE_MODEL_PATH"] == "/models/qwen.gguf"
    assert env["EXPEDITER_ENGINE_N_CTX"] == "8192"
    # A GPU agent keeps one warm replica unless the spec says otherwise.
    assert made.scaled_object["spec"]["minReplicaCount"] == 1


def test_drift_is_what_the_operator_owns_and_the_object_lacks() -> None:
    wanted = _made().deployment
    live = copy.deepcopy(wanted)
    live["status"] = {"replicas": 3}
    live["spec"]["replicas"] = 3  # KEDA's and the HPA's, not the operator's
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/x"
    assert drifted_fields(wanted, live) == []
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "someone-else:1"
    live["spec"]["template"]["spec"]["containers"][0]["env"].pop()
    assert drifted_fields(wanted, live) == [
        ".spec.template.spec.containers[expediter].image",
        ".spec.template.spec.containers[expediter].env[PYTHONDONTWRITEBYTECODE]",
    ]
