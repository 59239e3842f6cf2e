"""An agent declares what scales it (lag, pending work or both) and its work estimator; the
rendered ScaledObject carries the matching triggers and passes ``expediter keda check``, and the
estimator it declares is the one its worker and the scaler start from (issue 18)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from expediter import Agent, AgentResources, AgentScaling, ConfigurationError, Estimator
from expediter.deploying import DeploySettings, build_manifests, check_documents, documents_of
from expediter.deploying.kedaobjects import WAKE_LAG_THRESHOLD
from expediter.deploying.manifests import AgentSource, load_sources
from expediter.deploying.rendering import write_manifests
from expediter.messaging import load_catalog
from expediter.scaling.working import parse_external_trigger

ROOT = Path(__file__).resolve().parents[2]


class _In(BaseModel):
    text: str


class _Out(BaseModel):
    answer: str


async def _handle(task: _In, ctx: Any) -> _Out:
    return _Out(answer=task.text)


def _agent(**kwargs: Any) -> Agent[_In, _Out]:
    return Agent(
        name="soil-analyzer", capability="soil-analysis", version="1.0.0", input_model=_In,
        output_model=_Out, handler=_handle,
        resources=AgentResources(accelerator="gpu", concurrency=2, max_task_seconds=30),
        **kwargs,
    )  # fmt: skip


def _scaled_object(agent: Agent[Any, Any]) -> tuple[dict[str, Any], list[Any]]:
    catalog = load_catalog(ROOT / "topics" / "topics.yaml")
    manifests = build_manifests([AgentSource(agent, "agents/soil_analyzer.py")], catalog)
    documents = documents_of(manifests)
    (scaled,) = [d for d in documents if d.kind == "ScaledObject"]
    return dict(scaled.obj), check_documents(documents, [agent], catalog)


def test_the_default_is_the_lag_trigger_alone() -> None:
    scaled, refusals = _scaled_object(_agent())
    names = [t["name"] for t in scaled["spec"]["triggers"]]
    assert names == ["lag", "retry-10s", "retry-60s"]  # lag: the task topic and its tiers
    assert refusals == []


@pytest.mark.parametrize(
    ("signal", "types"),
    [("work", ["kafka"] * 2 + ["external"]), ("both", ["kafka"] * 3 + ["external"])],
)
def test_the_work_signal_renders_an_external_trigger_that_check_passes(
    signal: str, types: list[str]
) -> None:
    agent = _agent(
        scaling=AgentScaling(signal=signal, target_drain_seconds=30, tokens_per_second=40,  # type: ignore[arg-type]
                             gpus=2, replicas_per_gpu=1),
        estimator=Estimator(tokens_per_byte=0.5),
    )  # fmt: skip
    scaled, refusals = _scaled_object(agent)
    triggers = scaled["spec"]["triggers"]
    assert [t["type"] for t in triggers] == types
    assert refusals == []
    external = triggers[-1]
    assert external["name"] == "work"
    metadata = external["metadata"]
    assert metadata["scalerAddress"] == DeploySettings().scaler_endpoint
    # What KEDA hands the scaler is what the agent declared, read back by the scaler's parser.
    assert parse_external_trigger(metadata) == agent.scaling.trigger(
        "soil-analysis", concurrency=2, estimator=agent.estimator
    )
    assert metadata["tokensPerByte"] == "0.5"
    assert all(isinstance(v, str) for v in metadata.values())  # KEDA's metadata is strings


def test_an_agent_may_name_its_own_scaler() -> None:
    agent = _agent(scaling=AgentScaling(signal="work", scaler_address="scaler.ops.svc:7000"))
    scaled, _ = _scaled_object(agent)
    assert scaled["spec"]["triggers"][-1]["metadata"]["scalerAddress"] == "scaler.ops.svc:7000"


def test_the_default_scaler_is_the_one_in_the_renders_namespace() -> None:
    assert DeploySettings().scaler_endpoint == "expediter-scaler.expediter.svc:9090"
    assert DeploySettings(namespace="team-a").scaler_endpoint == "expediter-scaler.team-a.svc:9090"
    catalog = load_catalog(ROOT / "topics" / "topics.yaml")
    agent = _agent(scaling=AgentScaling(signal="work"))
    built = build_manifests([AgentSource(agent, "agents/soil_analyzer.py")], catalog,
                            DeploySettings(namespace="team-a"))  # fmt: skip
    documents = documents_of(built)
    (scaled,) = [d for d in documents if d.kind == "ScaledObject"]
    (service,) = [d for d in documents if d.kind == "Service" and d.name == "expediter-scaler"]
    address = scaled.obj["spec"]["triggers"][-1]["metadata"]["scalerAddress"]
    assert address == f"expediter-scaler.{service.obj['metadata']['namespace']}.svc:9090"
    assert service.obj["metadata"]["namespace"] == "team-a"


def test_work_alone_has_a_trigger_per_retry_tier_that_only_wakes_it() -> None:
    # The scaler reads the task topic only: a task waiting in a tier must still wake the agent.
    scaled, refusals = _scaled_object(_agent(scaling=AgentScaling(signal="work")))
    *tiers, work = scaled["spec"]["triggers"]
    assert refusals == []
    assert work["name"] == "work"
    assert [t["name"] for t in tiers] == ["retry-10s", "retry-60s"]
    assert [t["metadata"]["topic"] for t in tiers] == [
        "retry.soil-analysis.10s", "retry.soil-analysis.60s",
    ]  # fmt: skip
    for tier in tiers:
        metadata = tier["metadata"]
        assert metadata["consumerGroup"] == "agents.soil-analysis"  # the worker's own
        assert metadata["activationLagThreshold"] == "0"  # any waiting task wakes it
        # One replica's worth for any backlog: the work trigger alone sizes the agent.
        assert metadata["lagThreshold"] == str(WAKE_LAG_THRESHOLD)
        assert tier["authenticationRef"] == {"name": DeploySettings().kafka_secret}


def test_check_accepts_only_the_agents_tiers_next_to_work_alone() -> None:
    agent = _agent(scaling=AgentScaling(signal="work"))
    scaled, _ = _scaled_object(agent)
    assert _checked(scaled, agent) == []
    for key, value, expected in (
        ("topic", "retry.crop-mapping.10s", "only the retry tiers of tasks.soil-analysis"),
        ("topic", "tasks.soil-analysis", "reads tasks.soil-analysis"),
        ("consumerGroup", "agents.crop-mapping", "in group agents.crop-mapping"),
    ):
        broken = copy.deepcopy(scaled)
        broken["spec"]["triggers"][1]["metadata"][key] = value
        messages = _checked(broken, agent)
        assert any(expected in m for m in messages), (key, value, messages)
    # The tiers alone, without the work trigger, scale nothing: refused as no trigger.
    broken = copy.deepcopy(scaled)
    broken["spec"]["triggers"] = broken["spec"]["triggers"][:-1]
    assert _checked(broken, agent) != []


def _checked(scaled: dict[str, Any], agent: Agent[Any, Any]) -> list[str]:
    catalog = load_catalog(ROOT / "topics" / "topics.yaml")
    manifests = build_manifests([AgentSource(agent, "agents/soil_analyzer.py")], catalog)
    documents = [
        replace(d, obj=scaled) if d.kind == "ScaledObject" else d for d in documents_of(manifests)
    ]
    return [r.message for r in check_documents(documents, [agent], catalog)]


def test_check_refuses_a_work_trigger_the_scaler_would_refuse() -> None:
    agent = _agent(scaling=AgentScaling(signal="work"))
    scaled, _ = _scaled_object(agent)
    for change, expected in (
        ({"capability": "crop-mapping"}, "is not the 'soil-analysis'"),
        ({"targetDrainSeconds": "-1"}, "targetDrainSeconds must be > 0"),
        ({"tokensPerSecnd": "4"}, "did you mean tokensPerSecond?"),
        ({"scalerAddress": ""}, "no scalerAddress"),
    ):
        broken = copy.deepcopy(scaled)
        broken["spec"]["triggers"][-1]["metadata"].update(change)
        messages = _checked(broken, agent)
        assert any(expected in m for m in messages), (change, messages)
    broken = copy.deepcopy(scaled)
    broken["spec"]["triggers"] = []
    assert any("has 0 Kafka triggers and 0 external" in m for m in _checked(broken, agent))


def test_the_partition_cap_holds_for_the_work_trigger_too() -> None:
    agent = _agent(scaling=AgentScaling(signal="work"))
    scaled, _ = _scaled_object(agent)
    scaled = copy.deepcopy(scaled)
    scaled["spec"]["maxReplicaCount"] = 1000
    assert any("partitions of tasks.soil-analysis" in m for m in _checked(scaled, agent))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"signal": "tokens"}, "AgentScaling.signal must be one of lag, work, both"),
        ({"target_drain_seconds": 0}, "AgentScaling.target_drain_seconds must be > 0"),
        ({"gpus": 1}, "AgentScaling.gpus and AgentScaling.replicas_per_gpu go together"),
        ({"scaler_address": "scaler"}, "AgentScaling.scaler_address must be host:port"),
    ],
)
def test_bad_scaling_settings_name_the_field(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        AgentScaling(**kwargs)


def test_the_declared_estimator_is_the_workers_prior() -> None:
    refused = re.escape("Estimator.tokens_per_byte must be > 0")
    with pytest.raises(ConfigurationError, match=refused):
        Estimator(tokens_per_byte=0)
    estimator = _agent(estimator=Estimator(tokens_per_byte=2.0, minimum=10)).estimator.build()
    assert estimator.guess(100) == 200
    assert estimator.guess(1) == 10
    # Calibrated on measured tasks, as the default one is.
    for _ in range(40):
        estimator.observe(100, 50)
    assert estimator.guess(100) == pytest.approx(50, abs=1)


def test_an_agent_on_work_brings_expediter_scaler_into_the_base() -> None:
    catalog = load_catalog(ROOT / "topics" / "topics.yaml")
    agent = _agent(scaling=AgentScaling(signal="both"))
    built = build_manifests([AgentSource(agent, "agents/soil_analyzer.py")], catalog)
    manifests = {m.path: m for m in built}
    scaler = manifests["k8s/base/scaler.yaml"]
    assert "scaler.yaml" in manifests["k8s/base/kustomization.yaml"].documents[0]["resources"]
    objects = {o["kind"]: o for o in scaler.documents if isinstance(o, dict)}
    assert set(objects) == {"ServiceAccount", "Role", "RoleBinding", "Deployment", "Service",
                            "NetworkPolicy"}  # fmt: skip
    for obj in objects.values():
        kubernetes_validate.validate(obj, "1.30", strict=True)
    # The trigger's default address is this Service, on the port the pod serves.
    host, port = DeploySettings().scaler_endpoint.rsplit(":", 1)
    service = objects["Service"]
    assert host == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert service["spec"]["ports"][0]["port"] == int(port)
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["scaler", "--address", f"0.0.0.0:{port}", "--in-cluster"]
    assert container["securityContext"]["runAsNonRoot"] is True
    ingress = objects["NetworkPolicy"]["spec"]["ingress"][0]
    keda = ingress["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    assert keda == DeploySettings().keda_namespace
    # An agent on lag alone brings no scaler.
    lag = build_manifests([AgentSource(_agent(), "agents/soil_analyzer.py")], catalog)
    assert "k8s/base/scaler.yaml" not in {m.path for m in lag}


@pytest.mark.parametrize("signal", ["work", "both"])
def test_both_overlays_render_with_an_agent_on_work(signal: str, tmp_path: Path) -> None:
    # The local overlay strips Kafka triggers' authenticationRef: not from a ScaledObject that
    # has none (work alone), which kustomize would refuse.
    sources = [
        replace(s, agent=replace(s.agent, scaling=AgentScaling(signal=signal)))  # type: ignore[arg-type]
        if s.agent.name == "reasoning" else s
        for s in load_sources(ROOT / "agents")
    ]  # fmt: skip
    write_manifests(
        tmp_path, build_manifests(sources, load_catalog(ROOT / "topics" / "topics.yaml"))
    )
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "kubectl is not on PATH: install Debian's kubernetes-client"
    for overlay in ("local", "gpu"):
        out = subprocess.run([kubectl, "kustomize", str(tmp_path / "k8s" / "overlays" / overlay)],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert out.returncode == 0, out.stderr
        objects = [d for d in yaml.safe_load_all(out.stdout) if d]
        (scaled,) = [
            o
            for o in objects
            if o["kind"] == "ScaledObject" and o["metadata"]["name"] == "reasoning"
        ]
        assert scaled["spec"]["triggers"][-1]["type"] == "external"
        assert "expediter-scaler" in {o["metadata"]["name"] for o in objects}
        if overlay == "local":
            assert not any("authenticationRef" in t for t in scaled["spec"]["triggers"])
