"""The ``Agent`` custom resource (``expediter.io/v1alpha1``) as pydantic models: spec and status.

This module is the one source of the CRD: :mod:`expediter.operating.definitions` turns
:class:`AgentSpec` and :class:`AgentStatus` into the OpenAPI schema of
``k8s/crds/agents.expediter.io.yaml`` (a test fails when the committed file drifts), and the
operator parses what the API server stores with the same models. The rules the API server
enforces with CEL (``x-kubernetes-validations``) are declared here next to the fields, and
:meth:`AgentSpec._refuse_unreachable` enforces the same rules in Python, with the same words,
so an Agent checked offline is refused for what the server would refuse.

Defaults that depend on another field (``lagThreshold`` = 2 x ``concurrency``, ``minReplicas``
0 for CPU and 1 for GPU agents, ``maxReplicas`` = ``partitions``) are not schema defaults: they
are filled in by :func:`expediter.operating.desiring.scaling_profile_of` from the same
:func:`expediter.deploying.scaling_profile` that ``expediter keda render`` uses.

Called by the operator's handlers, :mod:`~expediter.operating.definitions` and the tests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "CATEGORY",
    "GROUP",
    "KIND",
    "PLURAL",
    "SINGULAR",
    "VERSION",
    "AgentSpec",
    "AgentStatus",
    "Condition",
    "GpuSpec",
    "ModelSpec",
    "Phase",
    "ResourcesSpec",
    "ScalingBehavior",
    "ScalingPolicy",
    "ScalingRules",
    "ScalingSpec",
    "spec_problems",
]

GROUP = "expediter.io"
VERSION = "v1alpha1"
KIND = "Agent"
PLURAL = "agents"
SINGULAR = "agent"
CATEGORY = "expediter"
"""``kubectl get expediter`` lists every Agent (and whatever else joins the category)."""

DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
"""An agent's capability: it names topics (``tasks.<capability>``) and the consumer group."""
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"

_MAX_BELOW_MIN = "must be >= minReplicas: raise maxReplicas or lower minReplicas"
_UNREACHABLE_MAX = (
    "must be <= partitions: KEDA caps the lag metric at partitions x lagThreshold, so "
    "replicas beyond the task topic's partitions are never reached (they would sit idle); "
    "lower maxReplicas or raise partitions"
)
_HOST_PORT = r"^[^\s:]+:[0-9]{1,5}$"
_GPUS_TOGETHER = (
    "gpus and replicasPerGpu go together (the cap is gpus x replicasPerGpu); set both or neither"
)
_MIN_ABOVE_PARTITIONS = (
    "must be <= partitions: a replica beyond the task topic's partitions gets no partition; "
    "lower minReplicas or raise partitions"
)


def _cel(rule: str, message: str, field_path: str) -> dict[str, Any]:
    # A static message: a messageExpression that prints the values costs more than the
    # API server's CEL budget allows for a CRD (it refused the CRD).
    return {
        "rule": rule,
        "message": message,
        "fieldPath": field_path,
        "reason": "FieldValueInvalid",
    }


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class ModelSpec(_Model):
    """The reasoning engine and its model. Without it the agent runs its deterministic
    ``rules`` engine (as the rendered k8s/base does)."""

    engine: Literal["rules", "llama", "openai"] = "llama"
    """``llama``: llama.cpp in the worker (needs the ``[llm]`` image); ``openai``: an
    OpenAI-compatible server (vLLM, llama-server); ``rules``: the agent's RuleBook."""
    gguf: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    """``llama``: the GGUF file's path in the image or a mounted volume
    (EXPEDITER_ENGINE_MODEL_PATH). Unset: Gemma 3 270M assembled from its PyPI package."""
    name: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """``openai``: the model name sent to the server (EXPEDITER_ENGINE_MODEL)."""
    base_url: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    """``openai``: the server's URL (EXPEDITER_ENGINE_BASE_URL)."""
    context_size: Annotated[int, Field(ge=256, le=1_048_576)] = 2048
    """The context window in tokens (EXPEDITER_ENGINE_N_CTX)."""
    gpu_layers: Annotated[int, Field(ge=-1, le=100_000)] | None = None
    """Layers offloaded to the GPU (EXPEDITER_ENGINE_N_GPU_LAYERS); -1 is all. Unset: all
    when the agent has a GPU, none otherwise."""


class GpuSpec(_Model):
    """GPUs for each replica. An agent with a GPU is a GPU agent: one warm replica, a slow
    scale-up and scale-down, a long startup budget (as ``accelerator: gpu`` in an agent file)."""

    count: Annotated[int, Field(ge=1, le=16)] = 1
    """GPUs per replica (the container's limit of ``resource``)."""
    type: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    """The GPU model to schedule on, as NVIDIA's GPU feature discovery labels nodes
    (``nvidia.com/gpu.product``, e.g. ``NVIDIA-H100-80GB-HBM3``). Unset: any GPU node."""
    resource: Annotated[str, Field(min_length=1, max_length=253)] = "nvidia.com/gpu"
    """The extended resource the device plugin advertises."""


class ResourcesSpec(_Model):
    """What one replica asks for. Unset values take the rendered defaults for its accelerator."""

    cpu: Annotated[str, Field(pattern=QUANTITY)] | None = None
    """CPU request, e.g. ``250m``."""
    cpu_limit: Annotated[str, Field(pattern=QUANTITY)] | None = None
    memory: Annotated[str, Field(pattern=QUANTITY)] | None = None
    """Memory request, e.g. ``256Mi``."""
    memory_limit: Annotated[str, Field(pattern=QUANTITY)] | None = None
    gpu: GpuSpec | None = None


class ScalingPolicy(_Model):
    """One HPA scaling policy."""

    type: Literal["Pods", "Percent"]
    value: Annotated[int, Field(gt=0)]
    period_seconds: Annotated[int, Field(gt=0, le=1800)]


class ScalingRules(_Model):
    """The HPA's rules for one direction."""

    stabilization_window_seconds: Annotated[int, Field(ge=0, le=3600)] | None = None
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    policies: list[ScalingPolicy] | None = None


class ScalingBehavior(_Model):
    """The HPA ``behavior`` KEDA passes on. Unset: the rendered default for the accelerator
    (CPU: Kubernetes' own scale-up, halve at most once a minute after five calm minutes;
    GPU: one pod a minute up, one per five minutes down after ten calm minutes)."""

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


class ScalingSpec(_Model):
    """What scales the agent: ``lag`` (KEDA's Kafka trigger on the group's lag, the default),
    ``work`` (an external trigger on ``expediter scaler``: pending tokens / a replica's
    tokens/s) or ``both`` (KEDA takes the larger of the two). The other fields tune the work
    trigger, as ``AgentScaling`` does in an agent file."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("has(self.gpus) == has(self.replicasPerGpu)", _GPUS_TOGETHER, ".gpus")
            ]
        }
    )

    signal: Literal["lag", "work", "both"] = "lag"
    """Which trigger(s) the ScaledObject gets."""
    scaler_address: Annotated[str, Field(pattern=_HOST_PORT, max_length=261)] | None = None
    """``host:port`` of ``expediter scaler``. Unset: ``expediter-scaler.<namespace>.svc:9090``."""
    target_drain_seconds: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    """Seconds of work one replica should have pending: the HPA's target."""
    tokens_per_second: Annotated[float, Field(gt=0, le=1_000_000_000)] = 50.0
    """One task's tokens/s on one replica, until the scaler measures it on results."""
    activation_tokens: Annotated[float, Field(ge=0, le=1_000_000_000)] = 0.0
    """Pending tokens above which KEDA wakes the agent from zero."""
    gpus: Annotated[int, Field(ge=1, le=100_000)] | None = None
    replicas_per_gpu: Annotated[int, Field(ge=1, le=1024)] | None = None
    """With ``gpus``: at most ``gpus x replicasPerGpu`` replicas' worth of work."""
    tokens_per_byte: Annotated[float, Field(gt=0, le=1_000_000)] | None = None
    """The estimator's prior for tasks without an expected-tokens header. Unset: 0.25."""

    @model_validator(mode="after")
    def _gpus_together(self) -> ScalingSpec:
        if (self.gpus is None) != (self.replicas_per_gpu is None):
            raise ValueError(f"spec.scaling.gpus: {_GPUS_TOGETHER}")
        return self


class AgentSpec(_Model):
    """The desired state of one agent: its code, its model, and how KEDA scales it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "!has(self.minReplicas) || !has(self.maxReplicas) || "
                    "self.maxReplicas >= self.minReplicas",
                    _MAX_BELOW_MIN,
                    ".maxReplicas",
                ),
                _cel(
                    "!has(self.maxReplicas) || self.maxReplicas <= self.partitions",
                    _UNREACHABLE_MAX,
                    ".maxReplicas",
                ),
                _cel(
                    "!has(self.minReplicas) || self.minReplicas <= self.partitions",
                    _MIN_ABOVE_PARTITIONS,
                    ".minReplicas",
                ),
            ]
        }
    )

    capability: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)]
    """What the agent does: its topics are ``tasks.<capability>`` and ``dlq.<capability>``,
    its consumer group ``agents.<capability>``."""
    agent: Annotated[str, Field(min_length=1, max_length=4096)]
    """The agent file baked into the image, as ``expediter worker`` takes it
    (``agents/soil_analyzer.py``)."""
    image: Annotated[str, Field(min_length=1, max_length=4096)]
    """The image holding expediter and the agent file (``expediter:dev``)."""
    model: ModelSpec | None = None
    resources: ResourcesSpec | None = None
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 1
    """Tasks one replica runs at once, as the agent file declares; ``lagThreshold`` defaults
    to twice it."""
    max_task_seconds: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    """The longest one task may run: the drain on scale-down and the grace period cover it."""
    min_replicas: Annotated[int, Field(ge=0, le=1000)] | None = None
    """KEDA's minReplicaCount. Unset: 0 (scale to zero) for CPU agents, 1 for GPU agents."""
    max_replicas: Annotated[int, Field(ge=1, le=1000)] | None = None
    """KEDA's maxReplicaCount; at most ``partitions``. Unset: ``partitions``."""
    lag_threshold: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    """Target lag per replica (KEDA's lagThreshold). Unset: 2 x ``concurrency``."""
    activation_lag_threshold: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    """Lag above which KEDA wakes the agent from zero."""
    polling_interval: Annotated[int, Field(ge=1, le=3600)] | None = None
    """Seconds between KEDA's reads of the lag. Unset: 15 (CPU) or 30 (GPU)."""
    cooldown_period: Annotated[int, Field(ge=0, le=86_400)] | None = None
    """Seconds without lag before KEDA scales to zero. Unset: 300 (CPU) or 600 (GPU)."""
    behavior: ScalingBehavior | None = None
    scaling: ScalingSpec | None = None
    partitions: Annotated[int, Field(ge=1, le=10_000)] = 6
    """Partitions of the task topic (and its DLQ): the most replicas that can work at once.
    The operator creates the topics with this many and raises them, never lowers them."""

    @model_validator(mode="after")
    def _refuse_unreachable(self) -> AgentSpec:
        problems = spec_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def spec_problems(spec: AgentSpec) -> list[str]:
    """What the CRD's CEL rules refuse in ``spec``, each as ``spec.FIELD: MESSAGE`` as the
    API server words it (none for a valid spec)."""
    problems = []
    if (
        spec.min_replicas is not None
        and spec.max_replicas is not None
        and spec.max_replicas < spec.min_replicas
    ):
        problems.append(f"spec.maxReplicas: {spec.max_replicas}: {_MAX_BELOW_MIN}")
    if spec.max_replicas is not None and spec.max_replicas > spec.partitions:
        problems.append(f"spec.maxReplicas: {spec.max_replicas}: {_UNREACHABLE_MAX}")
    if spec.min_replicas is not None and spec.min_replicas > spec.partitions:
        problems.append(f"spec.minReplicas: {spec.min_replicas}: {_MIN_ABOVE_PARTITIONS}")
    return problems


Phase = Literal["Pending", "Idle", "Scaling", "Running", "Degraded", "Terminating"]


class Condition(_Model):
    """A status condition, shaped like Kubernetes' own (metav1.Condition)."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[str, Field(max_length=1024)] = ""
    message: Annotated[str, Field(max_length=32_768)] = ""
    last_transition_time: datetime | None = None
    observed_generation: Annotated[int, Field(ge=0)] | None = None


class AgentStatus(_Model):
    """What the operator last saw: written from the Deployment, the ScaledObject (and KEDA's
    metric through the external metrics API) and the consumer group's lag."""

    model_config = ConfigDict(extra="ignore")

    phase: Phase = "Pending"
    """Pending (objects not made yet), Idle (scaled to zero), Scaling (ready != desired),
    Running (all desired replicas ready), Degraded (a reconcile or KEDA failed: see
    conditions), Terminating (draining before deletion)."""
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The spec generation the objects were last made from."""
    desired_replicas: Annotated[int, Field(ge=0)] | None = None
    """The Deployment's spec.replicas, as KEDA and the HPA set it."""
    ready_replicas: Annotated[int, Field(ge=0)] | None = None
    ready: str | None = None
    """``ready/desired``, for ``kubectl get agents``."""
    lag: Annotated[int, Field(ge=0)] | None = None
    """The consumer group's total lag on the task topic, counted as KEDA counts it."""
    keda_metric: str | None = None
    """The value KEDA's metrics adapter serves the HPA (the lag capped at partitions x
    lagThreshold), as a Kubernetes quantity."""
    last_scale_time: datetime | None = None
    """When the desired replica count last changed."""
    topics: list[str] | None = None
    """The task and DLQ topics the operator made sure of."""

    def as_patch(self) -> dict[str, Any]:
        """The status as a merge patch: camelCase; a field not known now is null, which
        removes a stale value rather than keeping it. ``topics`` is left out when unknown: only
        a reconcile that made sure of them knows, and a timer's write must not erase them."""
        patch = self.model_dump(mode="json", by_alias=True)
        if patch["topics"] is None:
            del patch["topics"]
        return patch
