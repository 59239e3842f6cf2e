"""The kustomizations, and the two overlays of k8s/overlays: ``local`` (a laptop cluster:
PLAINTEXT, no Secret, one broker, image :dev) and ``gpu`` (GPU agents get a GPU, its node pool,
the llama engine, full offload).

Why GPU placement is an overlay, not base: base must schedule on any cluster (a GPU agent runs
its CPU engine there), and a cluster without NVIDIA's device plugin would leave base's GPU pods
Pending forever.

Called by :mod:`expediter.deploying.manifests`.
"""

from __future__ import annotations

from collections.abc import Sequence

from expediter.deploying.kedaobjects import retry_tiers
from expediter.deploying.objects import (
    ACCELERATOR_LABEL,
    CONTAINER,
    KAFKA_CA_DIR,
    KAFKA_CLIENT_CONFIG,
    SIGNAL_LABEL,
    Manifest,
    Object,
    env,
)
from expediter.deploying.profiles import DeploySettings
from expediter.messaging import TopicNames

__all__ = ["gpu_overlay", "kustomization", "local_overlay"]


def kustomization(folder: str, paths: Sequence[str], extra: Sequence[str] = ()) -> Manifest:
    resources = [p.removeprefix(f"{folder}/") for p in paths] + list(extra)
    document: Object = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    }
    return Manifest(f"{folder}/kustomization.yaml", (document,))


def overlay(
    name: str, description: str, patches: Sequence[tuple[str, Object | list[Object], Object]]
) -> list[Manifest]:
    folder = f"k8s/overlays/{name}"
    entries: list[Object] = []
    files: list[Manifest] = []
    for filename, patch, target in patches:
        entries.append({"path": filename, **({"target": target} if target else {})})
        files.append(Manifest(f"{folder}/{filename}", (patch,), description))
    kustomization: Object = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../../base"],
    }
    if name == "local":
        kustomization["images"] = [{"name": "expediter", "newTag": "dev"}]
    kustomization["patches"] = entries
    return [Manifest(f"{folder}/kustomization.yaml", (kustomization,), description), *files]


def deployment_patch(name: str, spec: Object) -> Object:
    # The name is only a placeholder: each patch applies to every Deployment its target selects.
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def local_overlay(settings: DeploySettings) -> list[Manifest]:
    no_credentials = deployment_patch(
        "all-pods",
        {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": CONTAINER,
                            # KEDA resolves every env of the target, and a secretKeyRef to a
                            # missing Secret fails that; a local cluster has no Secret.
                            "env": [
                                {"name": "EXPEDITER_SASL_USERNAME", "$patch": "delete"},
                                {"name": "EXPEDITER_SASL_PASSWORD", "$patch": "delete"},
                            ],
                            "volumeMounts": [{"mountPath": KAFKA_CA_DIR, "$patch": "delete"}],
                        }
                    ],
                    "volumes": [{"name": "kafka-ca", "$patch": "delete"}],
                }
            }
        },
    )
    plain_kafka = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": KAFKA_CLIENT_CONFIG, "namespace": settings.namespace},
        "data": {
            "EXPEDITER_BOOTSTRAP": settings.local_bootstrap,
            "EXPEDITER_SECURITY_PROTOCOL": "PLAINTEXT",
            "EXPEDITER_SASL_MECHANISM": None,
            "EXPEDITER_SSL_CAFILE": None,
        },
    }
    no_trigger_auth = {
        "$patch": "delete",
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": settings.kafka_secret, "namespace": settings.namespace},
    }
    # Every Kafka trigger's: the lag one, then one per retry tier (kedaobjects); on pending
    # work alone, the tiers' alone (the external trigger after them has none to remove, and
    # kustomize refuses removing a missing key).
    tiers = len(retry_tiers(TopicNames(), "any"))
    no_auth_ref, no_auth_ref_work = (
        [{"op": "remove", "path": f"/spec/triggers/{n}/authenticationRef"} for n in range(count)]
        for count in (1 + tiers, tiers)
    )
    one_broker = {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {"name": "all-topics"},
        "spec": {"replicas": 1, "config": {"min.insync.replicas": "1"}},
    }
    return overlay(
        "local",
        "expediter/deploying (the local overlay)",
        [
            ("kafka-client.yaml", plain_kafka, {}),
            (
                "no-credentials.yaml",
                no_credentials,
                {"kind": "Deployment", "labelSelector": "app.kubernetes.io/part-of=expediter"},
            ),
            ("no-trigger-authentication.yaml", no_trigger_auth, {}),
            (
                "no-authentication-ref.yaml",
                no_auth_ref,
                # Not the agents on pending work alone: they have no lag trigger.
                {
                    "group": "keda.sh",
                    "kind": "ScaledObject",
                    "labelSelector": f"{SIGNAL_LABEL}!=work",
                },
            ),
            (
                "no-authentication-ref-work.yaml",
                no_auth_ref_work,
                {
                    "group": "keda.sh",
                    "kind": "ScaledObject",
                    "labelSelector": f"{SIGNAL_LABEL}=work",
                },
            ),
            (
                "one-broker-topics.yaml",
                one_broker,
                {"group": "kafka.strimzi.io", "kind": "KafkaTopic"},
            ),
        ],
    )


def gpu_overlay(settings: DeploySettings) -> list[Manifest]:
    gpu_agents = deployment_patch(
        "gpu-agents",
        {
            # A rollout must not need a GPU beyond those the agent holds: replace in place.
            "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "template": {
                "spec": {
                    "nodeSelector": dict(settings.gpu_node_selector),
                    "tolerations": [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": settings.gpu_image,
                            "env": [
                                env("EXPEDITER_ENGINE_KIND", "llama"),
                                env("EXPEDITER_ENGINE_N_GPU_LAYERS", "-1"),
                            ],
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                    # Room for a real model, not only the 270M default. An emptyDir, not a
                    # shared PVC: replicas assembling the same file at once would race.
                    "volumes": [{"name": "model-cache", "emptyDir": {"sizeLimit": "20Gi"}}],
                }
            },
        },
    )
    return overlay(
        "gpu",
        "expediter/deploying (the gpu overlay)",
        [
            (
                "gpu-agents.yaml",
                gpu_agents,
                {"kind": "Deployment", "labelSelector": f"{ACCELERATOR_LABEL}=gpu"},
            ),
        ],
    )
