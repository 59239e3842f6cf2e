"""What an Agent should become: its Deployment, Service, PodDisruptionBudget, ScaledObject and
the namespace's TriggerAuthentication, built by the same code as ``expediter keda render``.

:func:`desired_objects` makes a stand-in :class:`~expediter.authoring.Agent` from the spec
(the renderer reads only its name, capability and resources; the agent file itself is in the
image), derives the :class:`~expediter.deploying.ScalingProfile` with
:func:`~expediter.deploying.scaling_profile` and overrides it with what the spec sets, then
lays the objects out with :mod:`expediter.deploying`'s own builders. So an Agent whose spec
says what an agent file says gets exactly the objects of the committed keda/ and k8s/base/
files (a test checks it for every agent of agents/), plus three things only the operator adds:

- ``ownerReferences`` to the Agent, so deleting it deletes them (the TriggerAuthentication is
  shared by the namespace and has none);
- the label ``app.kubernetes.io/managed-by: expediter-operator``, which the drift watch selects;
- for a GPU agent, the ``gpu`` overlay's patch (node pool, toleration, the GPU, the llama
  engine), merged here as kustomize merges it; and the model's engine settings as env.

Called by :mod:`expediter.operating.reconciling` and the tests.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from expediter.authoring.agents import Agent, TaskContext
from expediter.authoring.scaling import AgentScaling, Estimator
from expediter.deploying import AgentSource, DeploySettings, ScalingProfile, scaling_profile
from expediter.deploying.kedaobjects import scaled_object, trigger_authentication
from expediter.deploying.objects import CONTAINER
from expediter.deploying.overlays import gpu_overlay
from expediter.deploying.workloads import agent_objects
from expediter.events import AgentResources
from expediter.messaging import TopicNames
from expediter.operating.resources import GROUP, KIND, VERSION, AgentSpec
from expediter.operating.settings import OperatorSettings

__all__ = [
    "GPU_PRODUCT_LABEL",
    "MANAGED_BY",
    "AgentRef",
    "DesiredObjects",
    "deploy_settings",
    "desired_objects",
    "scaling_profile_of",
    "stand_in_agent",
]

Object = dict[str, Any]

MANAGED_BY = {"app.kubernetes.io/managed-by": "expediter-operator"}
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
"""The node label NVIDIA's GPU feature discovery sets to the GPU model."""


@dataclass(frozen=True)
class AgentRef:
    """Which Agent: what owner references and names need."""

    namespace: str
    name: str
    uid: str

    def owner_reference(self) -> Object:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class DesiredObjects:
    """Everything one Agent is reconciled into, in the order it is applied."""

    trigger_authentication: Object
    deployment: Object
    service: Object
    budget: Object
    scaled_object: Object

    @property
    def owned(self) -> tuple[Object, ...]:
        """The objects the Agent owns (and a deletion cascades to)."""
        return (self.deployment, self.service, self.budget, self.scaled_object)

    @property
    def all(self) -> tuple[Object, ...]:
        return (self.trigger_authentication, *self.owned)


class _Unused(BaseModel):
    """The payload model of the stand-in agent: the renderer never reads it."""


async def _never_called(task: _Unused, ctx: TaskContext) -> _Unused:
    raise AssertionError("the operator's stand-in agent is rendered, never run")


def stand_in_agent(name: str, spec: AgentSpec) -> Agent[Any, Any]:
    """An :class:`Agent` with what the renderer reads (name, capability, resources, scaling
    and the estimator's prior)."""
    gpu = spec.resources is not None and spec.resources.gpu is not None
    return Agent(
        name=name,
        capability=spec.capability,
        version="0",
        input_model=_Unused,
        output_model=_Unused,
        handler=_never_called,
        resources=AgentResources(
            accelerator="gpu" if gpu else "cpu",
            concurrency=spec.concurrency,
            max_task_seconds=spec.max_task_seconds,
        ),
        **_scaling(spec),
    )


def _scaling(spec: AgentSpec) -> dict[str, Any]:
    # spec.scaling is the agent file's AgentScaling and Estimator, as the API stores them.
    scaling = spec.scaling
    if scaling is None:
        return {}
    chosen: dict[str, Any] = {
        "scaling": AgentScaling(
            signal=scaling.signal,
            target_drain_seconds=scaling.target_drain_seconds,
            tokens_per_second=scaling.tokens_per_second,
            activation_tokens=scaling.activation_tokens,
            gpus=scaling.gpus,
            replicas_per_gpu=scaling.replicas_per_gpu,
            scaler_address=scaling.scaler_address,
        )
    }
    if scaling.tokens_per_byte is not None:
        chosen["estimator"] = Estimator(tokens_per_byte=scaling.tokens_per_byte)
    return chosen


def deploy_settings(namespace: str, spec: AgentSpec, settings: OperatorSettings) -> DeploySettings:
    return DeploySettings(
        namespace=namespace,
        image=spec.image,
        gpu_image=spec.image,
        kafka_secret=settings.kafka_secret,
        kafka_namespace=settings.kafka_namespace,
        kafka_cluster=settings.kafka_cluster,
        # The scaler serves the namespace's agents, as the TriggerAuthentication does.
        scaler_address=f"expediter-scaler.{namespace}.svc:9090",
    )


def _behavior(default: Mapping[str, Any], spec: AgentSpec) -> dict[str, Any]:
    behavior = copy.deepcopy(dict(default))
    if spec.behavior is not None:
        # A direction the spec sets replaces the default's; the HPA fills what it leaves out.
        behavior.update(spec.behavior.model_dump(by_alias=True, exclude_none=True))
    return behavior


def scaling_profile_of(name: str, spec: AgentSpec, settings: DeploySettings) -> ScalingProfile:
    """The rendered profile for the stand-in agent, with what the spec sets on top."""
    profile = scaling_profile(stand_in_agent(name, spec), spec.partitions, settings)
    resources = spec.resources
    requests = dict(profile.requests)
    limits = dict(profile.limits)
    if resources is not None:
        for target, key, value in (
            (requests, "cpu", resources.cpu),
            (limits, "cpu", resources.cpu_limit),
            (requests, "memory", resources.memory),
            (limits, "memory", resources.memory_limit),
        ):
            if value is not None:
                target[key] = value

    def pick(value: int | None, default: int) -> int:
        return default if value is None else value

    return replace(
        profile,
        lag_threshold=pick(spec.lag_threshold, profile.lag_threshold),
        activation_lag_threshold=spec.activation_lag_threshold,
        min_replicas=pick(spec.min_replicas, profile.min_replicas),
        max_replicas=pick(spec.max_replicas, profile.max_replicas),
        polling_interval=pick(spec.polling_interval, profile.polling_interval),
        cooldown_period=pick(spec.cooldown_period, profile.cooldown_period),
        behavior=_behavior(profile.behavior, spec),
        requests=requests,
        limits=limits,
    )


def _merge(base: Any, patch: Any) -> Any:
    """A strategic merge as kustomize does it for these patches: maps merge, lists of named
    maps (containers, env, volumes) merge by name, other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in [*base, *patch])
    ):
        merged_list = [dict(item) for item in base]
        names = [item["name"] for item in merged_list]
        for item in patch:
            if item["name"] in names:
                at = names.index(item["name"])
                merged_list[at] = _merge(merged_list[at], item)
            else:
                merged_list.append(copy.deepcopy(item))
        return merged_list
    return copy.deepcopy(patch)


def _gpu_patch(settings: DeploySettings) -> Object:
    (manifest,) = [m for m in gpu_overlay(settings) if m.path.endswith("/gpu-agents.yaml")]
    document = manifest.documents[0]
    assert isinstance(document, dict)
    spec = document["spec"]
    assert isinstance(spec, dict)
    return spec


def _container(deployment: Object) -> Object:
    containers: list[Object] = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == CONTAINER]
    return container


def _set_env(container: Object, values: Mapping[str, str]) -> None:
    env = container["env"]
    for name, value in values.items():
        for entry in env:
            if entry["name"] == name:
                entry.clear()
                entry.update({"name": name, "value": value})
                break
        else:
            env.append({"name": name, "value": value})


def _engine_env(spec: AgentSpec, gpu: bool) -> dict[str, str]:
    model = spec.model
    if model is None:
        return {}
    values = {
        "EXPEDITER_ENGINE_KIND": model.engine,
        "EXPEDITER_ENGINE_N_CTX": str(model.context_size),
        "EXPEDITER_ENGINE_N_GPU_LAYERS": str(
            model.gpu_layers if model.gpu_layers is not None else (-1 if gpu else 0)
        ),
    }
    if model.gguf is not None:
        values["EXPEDITER_ENGINE_MODEL_PATH"] = model.gguf
    if model.name is not None:
        values["EXPEDITER_ENGINE_MODEL"] = model.name
    if model.base_url is not None:
        values["EXPEDITER_ENGINE_BASE_URL"] = model.base_url
    return values


def _place_on_gpus(deployment: Object, spec: AgentSpec, settings: DeploySettings) -> Object:
    assert spec.resources is not None
    assert spec.resources.gpu is not None
    gpu = spec.resources.gpu
    deployment = {**deployment, "spec": _merge(deployment["spec"], _gpu_patch(settings))}
    pod = deployment["spec"]["template"]["spec"]
    limits = _container(deployment)["resources"]["limits"]
    for key in [k for k in limits if k.endswith("/gpu")]:
        del limits[key]  # the overlay's one nvidia.com/gpu, replaced by the spec's
    limits[gpu.resource] = str(gpu.count)
    if gpu.type is not None:
        pod["nodeSelector"] = {**pod.get("nodeSelector", {}), GPU_PRODUCT_LABEL: gpu.type}
    return deployment


def _owned(obj: Object, ref: AgentRef) -> Object:
    metadata = obj["metadata"]
    metadata["labels"] = {**metadata.get("labels", {}), **MANAGED_BY}
    metadata["ownerReferences"] = [ref.owner_reference()]
    return obj


def desired_objects(ref: AgentRef, spec: AgentSpec, settings: OperatorSettings) -> DesiredObjects:
    """The objects ``spec`` asks for, ready to server-side apply."""
    rendering = deploy_settings(ref.namespace, spec, settings)
    profile = scaling_profile_of(ref.name, spec, rendering)
    agent = stand_in_agent(ref.name, spec)
    deployment, service, budget = copy.deepcopy(
        agent_objects(AgentSource(agent, spec.agent), profile, rendering)
    )
    gpu = agent.resources.accelerator == "gpu"
    if gpu:
        deployment = _place_on_gpus(deployment, spec, rendering)
    _set_env(_container(deployment), _engine_env(spec, gpu))
    scaled = scaled_object(agent, profile, TopicNames(), rendering)
    return DesiredObjects(
        trigger_authentication=trigger_authentication(rendering),
        deployment=_owned(deployment, ref),
        service=_owned(service, ref),
        budget=_owned(budget, ref),
        scaled_object=_owned(scaled, ref),
    )
