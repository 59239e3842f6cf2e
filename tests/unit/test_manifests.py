"""The keda/ and k8s/ manifests: committed == rendered, valid for Kubernetes and KEDA, rendered
by kustomize in both overlays, and ``expediter keda check`` refusing what it must.

Validation is offline: core kinds against the schemas kubernetes-validate ships (strict: an
unknown field fails), ScaledObject and TriggerAuthentication against KEDA's CRD models from
cloudcoil-models-keda (a round trip must give back the object, so a misspelt field, which the
models would drop, fails too), and each ScaledObject's HPA part as Kubernetes' own
HorizontalPodAutoscaler. Overlays are rendered by ``kubectl kustomize``.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
from kubernetes_validate.utils import SchemaNotFoundError
from typer.testing import CliRunner

from expediter.cli import app
from expediter.deploying import (
    DeploySettings,
    build_manifests,
    check_documents,
    documents_of,
    find_drift,
    load_sources,
    scaling_profile,
    trigger_problems,
)
from expediter.messaging import load_catalog
from expediter.operating import operator_manifests
from expediter.scaling.working import EXTERNAL_METADATA_KEYS

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES_VERSIONS = ("1.30", "1.37")
"""The oldest Kubernetes these manifests target (everything they use, such as NetworkPolicy
endPort and Pod Security admission, is GA by then) and the newest kubernetes-validate ships."""
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "KafkaTopic"}
"""Kinds kubernetes-validate has no schema for; KEDA's are validated against cloudcoil's models,
Strimzi's KafkaTopic by hand below."""
OVERLAYS = ("local", "gpu")

runner = CliRunner()


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sources() -> list[Any]:
    return load_sources(ROOT / "agents")


@pytest.fixture(scope="module")
def agents(sources: list[Any]) -> dict[str, Any]:
    return {s.agent.name: s.agent for s in sources}


@pytest.fixture(scope="module")
def catalog() -> Any:
    return load_catalog(ROOT / "topics" / "topics.yaml")


def committed_objects() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted([*(ROOT / "keda").rglob("*.yaml"), *(ROOT / "k8s/base").rglob("*.yaml")]):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            yield path.relative_to(ROOT).as_posix(), document


def kustomize(overlay: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH: install Debian's kubernetes-client")
    result = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: kustomize(overlay) for overlay in OVERLAYS}


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}


def copy_tree(tmp_path: Path) -> Path:
    """A repository root in tmp with the committed agents, catalog and manifests."""
    for folder in ("agents", "topics", "keda", "k8s"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def edit(path: Path, change: Any, index: int = 0) -> None:
    documents = list(yaml.safe_load_all(path.read_text()))
    change(documents[index])
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def keda(*args: str) -> Any:
    return runner.invoke(app, ["keda", *args])


def check_in(root: Path, *args: str) -> Any:
    return keda(
        "check",
        "--root",
        str(root),
        "--agents",
        str(root / "agents"),
        "--catalog",
        str(root / "topics" / "topics.yaml"),
        *args,
    )


# -- drift -----------------------------------------------------------------------------------


def test_committed_files_are_the_render(sources: list[Any], catalog: Any) -> None:
    drift = find_drift(ROOT, build_manifests(sources, catalog) + operator_manifests())
    assert not drift, "\n".join(d.message for d in drift) + "\nrun `expediter keda render`"


def test_render_check_names_drifted_files_and_render_repairs_them(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    common = ["--root", str(root), "--agents", str(root / "agents")]
    common += ["--catalog", str(root / "topics" / "topics.yaml")]
    assert keda("render", "--check", *common).exit_code == 0

    edit(root / "keda" / "action.yaml", lambda so: so["spec"].update(maxReplicaCount=3))
    (root / "k8s" / "base" / "agents" / "perception.yaml").unlink()
    (root / "keda" / "retired-agent.yaml").write_text("kind: ScaledObject\n")
    result = keda("render", "--check", "--json", *common)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["drift"] == [
        {"file": "k8s/base/agents/perception.yaml", "change": "missing"},
        {"file": "keda/action.yaml", "change": "differs"},
        {"file": "keda/retired-agent.yaml", "change": "extra"},
    ]
    plain = keda("render", "--check", *common)
    assert plain.exit_code == 1
    assert "keda/action.yaml differs" in plain.stderr

    result = keda("render", "--json", *common)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["written"] == ["keda/action.yaml", "k8s/base/agents/perception.yaml"]
    assert report["removed"] == ["keda/retired-agent.yaml"]
    assert keda("render", "--check", *common).exit_code == 0


def test_render_twice_gives_the_same_bytes(sources: list[Any], catalog: Any) -> None:
    first = build_manifests(sources, catalog)
    second = build_manifests(load_sources(ROOT / "agents"), catalog)
    assert first == second


# -- Kubernetes and KEDA schemas -------------------------------------------------------------


def all_objects(rendered: dict[str, list[dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    found = list(committed_objects())
    for overlay, objects in rendered.items():
        found += [(f"kustomize {overlay}", o) for o in objects]
    return found


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_validate_against_kubernetes_schemas(
    version: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    validated = 0
    for where, obj in all_objects(rendered):
        label = f"{where}: {obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except SchemaNotFoundError:
            assert obj["kind"] in CRD_KINDS, f"{label}: no Kubernetes {version} schema"
            continue
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{label}: {exc.message} at {list(exc.path)}")
        validated += 1
    assert validated > 50


def test_strict_validation_refuses_a_misspelt_field() -> None:
    deployment = next(o for _, o in committed_objects() if o["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    container(broken)["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_keda_objects_validate_against_keda_crd_models(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    models = {"ScaledObject": ScaledObject, "TriggerAuthentication": TriggerAuthentication}
    seen = {kind: 0 for kind in models}
    for where, obj in all_objects(rendered):
        model = models.get(obj["kind"])
        if model is None:
            continue
        parsed = model.model_validate(obj)
        back = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
        assert back == obj, (
            f"{where}: {obj['kind']}/{obj['metadata']['name']} has fields KEDA lacks"
        )
        seen[obj["kind"]] += 1
    assert seen["ScaledObject"] >= 6 * 3
    assert seen["TriggerAuthentication"] == 2  # keda/ and the gpu overlay; local drops it


def test_keda_models_refuse_a_misspelt_field() -> None:
    obj = yaml.safe_load((ROOT / "keda" / "action.yaml").read_text())
    obj["spec"]["maxReplicas"] = obj["spec"].pop("maxReplicaCount")
    back = ScaledObject.model_validate(obj).model_dump(
        mode="json", by_alias=True, exclude_unset=True
    )
    assert back != obj


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_each_scaled_objects_hpa_is_a_valid_kubernetes_hpa(version: str) -> None:
    # KEDA creates this HPA from the ScaledObject (controllers/keda/hpa.go): the behavior is
    # copied as is, the minimum is max(minReplicaCount, 1), the metric an AverageValue.
    for where, obj in committed_objects():
        if obj["kind"] != "ScaledObject":
            continue
        spec = obj["spec"]
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": f"keda-hpa-{obj['metadata']['name']}"},
            "spec": {
                "scaleTargetRef": spec["scaleTargetRef"],
                "minReplicas": max(spec["minReplicaCount"], 1),
                "maxReplicas": spec["maxReplicaCount"],
                "behavior": spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],
                "metrics": [
                    {
                        "type": "External",
                        "external": {
                            "metric": {"name": "s0-kafka-lag"},
                            "target": {
                                "type": "AverageValue",
                                "averageValue": spec["triggers"][0]["metadata"]["lagThreshold"],
                            },
                        },
                    }
                ],
            },
        }
        try:
            kubernetes_validate.validate(hpa, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where}: {exc.message} at {list(exc.path)}")


def test_kafka_topics_mirror_the_catalog(catalog: Any) -> None:
    topics = {
        o["spec"]["topicName"]: o for _, o in committed_objects() if o["kind"] == "KafkaTopic"
    }
    assert set(topics) == {spec.name for spec in catalog.topics}
    for spec in catalog.topics:
        obj = topics[spec.name]
        assert obj["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert obj["metadata"]["labels"]["strimzi.io/cluster"] == DeploySettings().kafka_cluster
        assert re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", obj["metadata"]["name"])
        assert obj["spec"]["partitions"] == spec.partitions
        assert obj["spec"]["replicas"] == spec.replication_factor
        assert obj["spec"]["config"] == spec.kafka_configs


# -- kustomize -------------------------------------------------------------------------------


def test_both_overlays_hold_every_agent_and_the_orchestrator(
    rendered: dict[str, list[dict[str, Any]]], agents: dict[str, Any], catalog: Any
) -> None:
    for overlay, objects in rendered.items():
        deployments = by_kind(objects, "Deployment")
        assert set(deployments) == {*agents, "orchestrator"}, overlay
        assert set(by_kind(objects, "ScaledObject")) == set(agents), overlay
        assert set(by_kind(objects, "PodDisruptionBudget")) == {*agents, "orchestrator"}
        assert set(by_kind(objects, "Service")) == {*agents, "orchestrator"}
        assert len(by_kind(objects, "KafkaTopic")) == len(catalog.topics)
        for kind in ("Namespace", "ServiceAccount", "NetworkPolicy", "Role", "RoleBinding"):
            assert by_kind(objects, kind), f"{overlay}: no {kind}"
        orchestrator = deployments["orchestrator"]
        assert orchestrator["spec"]["replicas"] == 2
        assert container(orchestrator)["args"] == ["orchestrator"]
        assert "orchestrator" not in by_kind(objects, "ScaledObject")
        for name, agent in agents.items():
            assert container(deployments[name])["args"][0] == "worker"
            assert container(deployments[name])["args"][1].startswith("agents/")
            assert env_of(deployments[name])["EXPEDITER_HTTP_HOST"] == "0.0.0.0"  # noqa: S104
            instance = env_of(deployments[name])["EXPEDITER_INSTANCE"]
            assert instance["fieldRef"]["fieldPath"] == "metadata.name"
            trigger = by_kind(objects, "ScaledObject")[name]["spec"]["triggers"][0]
            assert trigger["metadata"]["consumerGroup"] == f"agents.{agent.capability}"


def test_gpu_overlay_puts_gpu_agents_on_gpus_and_only_them(
    rendered: dict[str, list[dict[str, Any]]], agents: dict[str, Any]
) -> None:
    deployments = by_kind(rendered["gpu"], "Deployment")
    gpu_agents = {n for n, a in agents.items() if a.resources.accelerator == "gpu"}
    assert gpu_agents, "the reference agents include GPU agents"
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        limits = container(deployment)["resources"]["limits"]
        env = env_of(deployment)
        if name in gpu_agents:
            assert limits["nvidia.com/gpu"] == "1"
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
                "tolerations"
            ]
            assert pod["nodeSelector"] == dict(DeploySettings().gpu_node_selector)
            assert env["EXPEDITER_ENGINE_KIND"] == "llama"
            assert env["EXPEDITER_ENGINE_N_GPU_LAYERS"] == "-1"
            assert container(deployment)["image"] == DeploySettings().gpu_image
        else:
            assert "nvidia.com/gpu" not in limits
            assert "tolerations" not in pod
            assert "nodeSelector" not in pod
            assert env.get("EXPEDITER_ENGINE_KIND") in (None, "rules")


def test_local_overlay_needs_no_secret_and_one_broker(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["local"]
    assert not by_kind(objects, "TriggerAuthentication")
    text = yaml.safe_dump_all(objects)
    assert "secretKeyRef" not in text
    assert "secretName" not in text
    for scaled in by_kind(objects, "ScaledObject").values():
        # Every trigger's, the retry tiers' included: the TriggerAuthentication is gone.
        assert not [t for t in scaled["spec"]["triggers"] if "authenticationRef" in t]
    config = by_kind(objects, "ConfigMap")["expediter-kafka-client"]["data"]
    assert config["EXPEDITER_SECURITY_PROTOCOL"] == "PLAINTEXT"
    for topic in by_kind(objects, "KafkaTopic").values():
        assert topic["spec"]["replicas"] == 1
        assert topic["spec"]["config"]["min.insync.replicas"] == "1"
    for deployment in by_kind(objects, "Deployment").values():
        assert container(deployment)["image"] == "expediter:dev"


# -- what every pod must have ----------------------------------------------------------------


def test_pods_are_locked_down_and_probed(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, objects in rendered.items():
        for name, deployment in by_kind(objects, "Deployment").items():
            where = f"{overlay}: Deployment/{name}"
            pod = deployment["spec"]["template"]["spec"]
            main = container(deployment)
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["runAsUser"] == 10001, where
            assert pod["automountServiceAccountToken"] is False, where
            security = main["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert security["seccompProfile"]["type"] == "RuntimeDefault", where
            assert main["readinessProbe"]["httpGet"]["path"] == "/readyz", where
            assert main["livenessProbe"]["httpGet"]["path"] == "/healthz", where
            assert main["startupProbe"]["httpGet"]["path"] == "/healthz", where
            assert main["lifecycle"]["preStop"], where
            assert main["resources"]["requests"], where
            assert main["resources"]["limits"], where
            mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
            volumes = {v["name"] for v in pod["volumes"]}
            assert mounts["tmp"] == "/tmp", where  # noqa: S108
            assert {"tmp", "model-cache"} <= volumes, where


def test_gpu_agents_get_a_model_load_budget_and_a_gentle_hpa(
    agents: dict[str, Any], catalog: Any
) -> None:
    for agent in agents.values():
        partitions = catalog.topic(f"tasks.{agent.capability}").partitions
        profile = scaling_profile(agent, partitions)
        assert profile.max_replicas == partitions
        assert profile.lag_threshold > 0
        if agent.resources.accelerator == "gpu":
            assert profile.startup_budget_seconds >= 300
            assert profile.behavior["scaleDown"]["stabilizationWindowSeconds"] >= 600
            assert profile.behavior["scaleUp"]["policies"] == [
                {"type": "Pods", "value": 1, "periodSeconds": 60}
            ]
            assert profile.min_replicas >= 1
        else:
            assert profile.min_replicas == 0


def test_grace_covers_the_longest_task_and_the_drain(agents: dict[str, Any]) -> None:
    deployments = {
        o["metadata"]["name"]: o for _, o in committed_objects() if o["kind"] == "Deployment"
    }
    settings = DeploySettings()
    for name, agent in agents.items():
        deployment = deployments[name]
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        env = env_of(deployment)
        drain = float(env["EXPEDITER_DRAIN_SECONDS"])
        hard = float(env["EXPEDITER_HARD_DEADLINE_SECONDS"])
        prestop = float(container(deployment)["lifecycle"]["preStop"]["exec"]["command"][1])
        task = agent.resources.max_task_seconds
        # The task running at SIGTERM finishes within the drain...
        assert drain >= task, name
        # ...and the kubelet waits for preStop + that drain + the hard deadline: the longest
        # task plus the shutdown around it.
        assert grace >= prestop + drain + hard, name
        assert grace >= task + prestop + hard, name
        assert prestop == settings.prestop_seconds
        assert hard == settings.hard_deadline_seconds


def test_no_secret_value_is_committed() -> None:
    credential = re.compile(r"password|passwd|token|api[_-]?key|private", re.IGNORECASE)
    for path in sorted([*(ROOT / "keda").rglob("*"), *(ROOT / "k8s").rglob("*")]):
        if not path.is_file():
            continue
        text = path.read_text()
        assert "BEGIN " not in text, f"{path}: PEM material"
        for document in yaml.safe_load_all(text):
            assert not (isinstance(document, dict) and document.get("kind") == "Secret"), path
            for key, value in walk(document):
                if key in ("stringData",):
                    pytest.fail(f"{path}: {key}")
                # expediter scaler's settings count tokens of work (tokensPerSecond...).
                setting = key in EXTERNAL_METADATA_KEYS
                if credential.search(key) and not setting and isinstance(value, str) and value:
                    # Only references may carry such names: a Secret's key, never a value.
                    pytest.fail(f"{path}: {key} = {value!r} looks like a credential")
    for _, obj in committed_objects():
        for deployment_env in _envs(obj):
            if credential.search(deployment_env["name"]) or "USERNAME" in deployment_env["name"]:
                assert "secretKeyRef" in deployment_env.get("valueFrom", {}), deployment_env


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def _envs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    if obj["kind"] != "Deployment":
        return []
    return list(container(obj).get("env", []))


# -- expediter keda check --------------------------------------------------------------------


def test_check_passes_the_committed_manifests() -> None:
    result = keda("check", "--root", str(ROOT), "--agents", str(ROOT / "agents"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True


def test_check_refuses_more_replicas_than_partitions(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    edit(root / "keda" / "action.yaml", lambda so: so["spec"].update(maxReplicaCount=7))
    result = check_in(root)
    assert result.exit_code == 2
    assert (
        "keda/action.yaml: ScaledObject/action: maxReplicaCount 7 is above the 6 partitions of "
        "tasks.action"
    ) in result.stderr
    assert "set maxReplicaCount to at most 6" in result.stderr

    def allow_idle(so: dict[str, Any]) -> None:
        so["spec"]["triggers"][0]["metadata"]["allowIdleConsumers"] = "true"

    edit(root / "keda" / "action.yaml", allow_idle)
    assert check_in(root).exit_code == 0


def test_check_refuses_a_catalog_that_shrank_under_the_manifests(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    catalog = root / "topics" / "topics.yaml"
    text = catalog.read_text()
    catalog.write_text(
        text.replace(
            '  - name: "tasks.{capability}"\n    role: tasks\n',
            '  - name: "tasks.{capability}"\n    role: tasks\n    partitions: 3\n',
        )
    )
    result = check_in(root, "--json")
    assert result.exit_code == 2
    refusals = json.loads(result.stdout)["refusals"]
    assert {r["object"] for r in refusals} == {f"ScaledObject/{n}" for n in load_names(root)}
    assert all("maxReplicaCount 6 is above the 3 partitions" in r["problem"] for r in refusals)


def load_names(root: Path) -> set[str]:
    return {s.agent.name for s in load_sources(root / "agents")}


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        (
            {"allowIdleConsumers": "true", "limitToPartitionsWithLag": "true"},
            'trigger.allowIdleConsumers and trigger.limitToPartitionsWithLag cannot both be "true"',
        ),
        (
            {"limitToPartitionsWithLag": "true", "ensureEvenDistributionOfPartitions": "true"},
            "trigger.limitToPartitionsWithLag and trigger.ensureEvenDistributionOfPartitions "
            'cannot both be "true"',
        ),
        ({"lagThreshold": "0"}, 'trigger.lagThreshold must be > 0, got "0"'),
        ({"lagThreshold": "10.0"}, 'trigger.lagThreshold: "10.0" is not a whole number'),
        ({"activationLagThreshold": "-1"}, 'trigger.activationLagThreshold must be >= 0, got "-1"'),
        ({"allowIdleConsumers": "True"}, 'trigger.allowIdleConsumers: "True" is not a boolean'),
        ({"lagTreshold": "5"}, "trigger.lagTreshold is not a setting of KEDA's Kafka trigger"),
    ],
)
def test_check_refuses_invalid_trigger_combinations(
    tmp_path: Path, metadata: dict[str, str], expected: str
) -> None:
    root = copy_tree(tmp_path)
    edit(
        root / "keda" / "reasoning.yaml",
        lambda so: so["spec"]["triggers"][0]["metadata"].update(metadata),
    )
    result = check_in(root)
    assert result.exit_code == 2
    assert f"keda/reasoning.yaml: ScaledObject/reasoning: {expected}" in result.stderr


def test_partition_options_need_a_topic() -> None:
    for key in ("limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions"):
        problems = trigger_problems({key: "true", "consumerGroup": "agents.x"})
        assert [p for p, _ in problems] == [
            f"trigger.{key} needs trigger.topic (KEDA refuses it without one)"
        ]
    assert trigger_problems({"topic": "tasks.x", "lagThreshold": " 5 ", "sasl": ""}) == []


def test_check_refuses_a_trigger_on_another_agents_group(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    edit(
        root / "keda" / "reasoning.yaml",
        lambda so: so["spec"]["triggers"][0]["metadata"].update(consumerGroup="agents.action"),
    )
    result = check_in(root)
    assert result.exit_code == 2
    assert "trigger consumerGroup 'agents.action' is not the 'agents.reasoning'" in result.stderr


def test_check_refuses_a_grace_period_shorter_than_the_longest_task(
    tmp_path: Path, agents: dict[str, Any]
) -> None:
    root = copy_tree(tmp_path)
    path = root / "k8s" / "base" / "agents" / "reasoning.yaml"
    edit(path, lambda d: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=30))
    result = check_in(root)
    assert result.exit_code == 2
    task = agents["reasoning"].resources.max_task_seconds
    needed = 5 + (math.ceil(task) + 5) + 5
    assert (
        "k8s/base/agents/reasoning.yaml: Deployment/reasoning: terminationGracePeriodSeconds 30 "
        f"is shorter than the longest task of reasoning ({task:g} s)"
    ) in result.stderr
    assert f"set terminationGracePeriodSeconds to at least {needed}" in result.stderr


def test_check_refuses_a_drain_shorter_than_the_longest_task(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)

    def short_drain(deployment: dict[str, Any]) -> None:
        for env in container(deployment)["env"]:
            if env["name"] == "EXPEDITER_DRAIN_SECONDS":
                env["value"] = "25"

    edit(root / "k8s" / "base" / "agents" / "crop-mapper.yaml", short_drain)
    result = check_in(root, "--json")
    assert result.exit_code == 2
    (refusal,) = json.loads(result.stdout)["refusals"]
    assert refusal["object"] == "Deployment/crop-mapper"
    assert refusal["problem"].startswith("EXPEDITER_DRAIN_SECONDS 25 is shorter than")
    assert refusal["fix"] == "set EXPEDITER_DRAIN_SECONDS to at least 120"


def test_render_sizes_grace_for_a_long_task_agent(tmp_path: Path, catalog: Any) -> None:
    folder = tmp_path / "agents"
    folder.mkdir()
    source = (ROOT / "agents" / "perception.py").read_text()
    slow = re.sub(r"max_task_seconds=\d+", "max_task_seconds=900", source)
    assert slow != source
    (folder / "perception.py").write_text(slow)
    manifests = build_manifests(load_sources(folder), catalog)
    deployment = next(
        d
        for m in manifests
        if m.path == "k8s/base/agents/perception.yaml"
        for d in m.documents
        if isinstance(d, dict) and d["kind"] == "Deployment"
    )
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 900 + 10
    assert (
        check_documents(documents_of(manifests), [s.agent for s in load_sources(folder)], catalog)
        == []
    )


def test_check_exits_2_from_the_real_command_line(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    edit(root / "keda" / "action.yaml", lambda so: so["spec"].update(maxReplicaCount=50))
    result = subprocess.run(
        [sys.executable, "-m", "expediter.cli", "keda", "check", "--root", str(root)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "maxReplicaCount 50 is above the 6 partitions" in result.stderr
