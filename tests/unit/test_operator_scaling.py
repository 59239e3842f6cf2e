"""An Agent's ``spec.scaling`` picks its ScaledObject's triggers as ``AgentScaling`` does in an
agent file: the operator's ScaledObject for the reasoning agent with ``signal: both`` is the
committed keda/examples/reasoning-work.yaml (issue 18)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from expediter.deploying import DeploySettings
from expediter.deploying.manifests import WORK_EXAMPLE
from expediter.operating import AgentRef, AgentSpec, desired_objects
from expediter.operating.definitions import custom_resource_definition
from expediter.operating.desiring import MANAGED_BY
from expediter.operating.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = DeploySettings().namespace


def _spec(**scaling: Any) -> AgentSpec:
    spec = {
        "capability": "reasoning", "agent": "agents/reasoning.py",
        "image": DeploySettings().gpu_image, "concurrency": 1, "maxTaskSeconds": 120,
        "partitions": 6, "resources": {"gpu": {"count": 1}}, "scaling": scaling,
    }  # fmt: skip
    return AgentSpec.model_validate(spec)


def _scaled_object(spec: AgentSpec, namespace: str = NAMESPACE) -> dict[str, Any]:
    ref = AgentRef(namespace=namespace, name="reasoning", uid="0000")
    scaled = copy.deepcopy(desired_objects(ref, spec, OperatorSettings()).scaled_object)
    del scaled["metadata"]["ownerReferences"]
    for key in MANAGED_BY:
        del scaled["metadata"]["labels"][key]
    return scaled


def test_signal_both_gives_the_committed_work_example() -> None:
    _, scaling = WORK_EXAMPLE
    spec = _spec(signal="both", targetDrainSeconds=scaling.target_drain_seconds,
                 tokensPerSecond=scaling.tokens_per_second)  # fmt: skip
    committed = yaml.safe_load((ROOT / "keda/examples/reasoning-work.yaml").read_text())
    assert _scaled_object(spec) == committed


def test_each_signal_gives_its_triggers_and_the_scaler_of_the_agents_namespace() -> None:
    lag = _scaled_object(_spec())["spec"]["triggers"]
    assert [(t["type"], t["name"]) for t in lag] == [
        ("kafka", "lag"), ("kafka", "retry-10s"), ("kafka", "retry-60s"),  # the retry tiers
    ]  # fmt: skip
    work = _scaled_object(_spec(signal="work", gpus=2, replicasPerGpu=2, tokensPerByte=0.5),
                          namespace="team-a")  # fmt: skip
    *tiers, trigger = work["spec"]["triggers"]
    assert trigger["type"] == "external"
    # Work alone still wakes on a task waiting in a retry tier: a Kafka trigger per tier, in
    # the worker's group, whose threshold only wakes and keeps the agent.
    assert [(t["type"], t["name"], t["metadata"]["topic"], t["metadata"]["consumerGroup"],
             t["metadata"]["lagThreshold"]) for t in tiers] == [
        ("kafka", "retry-10s", "retry.reasoning.10s", "agents.reasoning", "1000000"),
        ("kafka", "retry-60s", "retry.reasoning.60s", "agents.reasoning", "1000000"),
    ]  # fmt: skip
    assert trigger["metadata"]["scalerAddress"] == "expediter-scaler.team-a.svc:9090"
    assert {k: trigger["metadata"][k] for k in ("gpus", "replicasPerGpu", "tokensPerByte")} == {
        "gpus": "2", "replicasPerGpu": "2", "tokensPerByte": "0.5",
    }  # fmt: skip
    own = _scaled_object(_spec(signal="work", scalerAddress="scaler.ops.svc:7000"))
    assert own["spec"]["triggers"][-1]["metadata"]["scalerAddress"] == "scaler.ops.svc:7000"


@pytest.mark.parametrize(
    ("scaling", "expected"),
    [
        ({"signal": "tokens"}, "signal"),
        ({"gpus": 2}, "gpus and replicasPerGpu go together"),
        ({"scalerAddress": "no-port"}, "scalerAddress"),
        ({"targetDrainSeconds": 0}, "targetDrainSeconds"),
    ],
)
def test_a_bad_scaling_spec_is_refused_naming_the_field(
    scaling: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValidationError, match=expected):
        _spec(**scaling)


def test_the_crd_schema_has_the_signal_and_its_cel_rule() -> None:
    crd = custom_resource_definition()
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    scaling = schema["properties"]["spec"]["properties"]["scaling"]
    assert scaling["properties"]["signal"]["enum"] == ["lag", "work", "both"]
    assert scaling["x-kubernetes-validations"][0]["rule"] == (
        "has(self.gpus) == has(self.replicasPerGpu)"
    )
