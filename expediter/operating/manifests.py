"""The operator's own install, as files of k8s/: the CRD, and the operator's RBAC and Deployment.

::

    k8s/crds/                  agents.expediter.io.yaml (the CRD), kustomization.yaml
    k8s/operator/              rbac.yaml, deployment.yaml, kustomization.yaml (includes ../crds)

``expediter keda render`` writes them with the rest of k8s/ (and ``--check`` reports their
drift), from :func:`operator_manifests`. The RBAC is the least the operator needs, each rule
saying what for; nothing may delete (the garbage collector removes owned objects) and Secrets
are not readable at all. The Deployment runs one replica (Recreate, so two never overlap) as
the image's non-root user, with a read-only root filesystem, and probes kopf's liveness
endpoint.

Called by :mod:`expediter.cli.keda_render` and the tests.
"""

from __future__ import annotations

from expediter.deploying import DeploySettings, Manifest
from expediter.deploying.objects import (
    KAFKA_CA_DIR,
    KAFKA_CLIENT_CONFIG,
    Object,
    container_security,
    env,
    kafka_ca_volume,
    meta,
    pod_security,
    secret_env,
)
from expediter.operating.definitions import CRD_NAME, custom_resource_definition
from expediter.operating.resources import GROUP, PLURAL

__all__ = ["OPERATOR", "OPERATOR_PORT", "cluster_role_rules", "operator_manifests"]

OPERATOR = "expediter-operator"
OPERATOR_PORT = 8080
_CRD_FILE = f"k8s/crds/{CRD_NAME}.yaml"
_SOURCES = "expediter/operating (the Agent model and the operator's install)"


def cluster_role_rules() -> list[Object]:
    """What the operator may do, cluster-wide (Agents live in any namespace)."""

    def rule(group: str, resources: list[str], verbs: list[str], **extra: object) -> Object:
        return {"apiGroups": [group], "resources": resources, **extra, "verbs": verbs}

    return [
        # Agents: watched, annotated with kopf's progress, finalizer added and removed.
        rule(GROUP, [PLURAL], ["get", "list", "watch", "patch"]),
        rule(GROUP, [f"{PLURAL}/status"], ["get", "patch"]),
        # Owner references with blockOwnerDeletion need this on the owner.
        rule(GROUP, [f"{PLURAL}/finalizers"], ["update"]),
        # What an Agent becomes (server-side apply: create and patch). Deployments and
        # ScaledObjects are watched for drift.
        rule("apps", ["deployments"], ["get", "list", "watch", "create", "patch"]),
        rule("", ["services"], ["get", "create", "patch"]),
        rule("policy", ["poddisruptionbudgets"], ["get", "create", "patch"]),
        rule("keda.sh", ["scaledobjects"], ["get", "list", "watch", "create", "patch"]),
        rule("keda.sh", ["triggerauthentications"], ["get", "create", "patch"]),
        rule("kafka.strimzi.io", ["kafkatopics"], ["get", "create", "patch"]),
        # kopf watches which resources exist (a CRD installed later is picked up), and the
        # operator asks whether Strimzi's KafkaTopic is one (then topics are KafkaTopics).
        rule("apiextensions.k8s.io", ["customresourcedefinitions"], ["get", "list", "watch"]),
        # The drain waits for the workers' pods to be gone.
        rule("", ["pods"], ["list"]),
        # KEDA's metric for the status, read as the HPA reads it.
        rule("external.metrics.k8s.io", ["*"], ["list"]),
        # kopf reports handler failures as Events on the Agent.
        rule("", ["events"], ["create"]),
        rule("events.k8s.io", ["events"], ["create"]),
    ]


def _rbac(settings: DeploySettings) -> tuple[Object, ...]:
    labels = {"app.kubernetes.io/name": OPERATOR}
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(OPERATOR, settings.namespace, labels),
    }
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": OPERATOR, "labels": meta(OPERATOR, "", labels)["labels"]},
        "rules": cluster_role_rules(),
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": OPERATOR, "labels": meta(OPERATOR, "", labels)["labels"]},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": OPERATOR,
        },
        "subjects": [{"kind": "ServiceAccount", "name": OPERATOR, "namespace": settings.namespace}],
    }
    return account, role, binding


def _deployment(settings: DeploySettings) -> Object:
    # Not part-of=expediter on the pod: k8s/base's NetworkPolicy lets those pods reach only
    # DNS and Kafka, and the operator also talks to the API server.
    pod_labels = {"app.kubernetes.io/name": OPERATOR, "app.kubernetes.io/component": "operator"}
    container = {
        "name": "operator",
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["operator"],
        "ports": [{"name": "health", "containerPort": OPERATOR_PORT, "protocol": "TCP"}],
        # The agents' Kafka client settings: the operator makes topics and reads lag.
        "envFrom": [{"configMapRef": {"name": KAFKA_CLIENT_CONFIG}}],
        "env": [
            env("EXPEDITER_OPERATOR_JSON_LOGS", "true"),
            env("EXPEDITER_OPERATOR_HEALTH_HOST", "0.0.0.0"),  # noqa: S104 (the pod's own)
            env("EXPEDITER_OPERATOR_HEALTH_PORT", str(OPERATOR_PORT)),
            env("EXPEDITER_OPERATOR_KAFKA_SECRET", settings.kafka_secret),
            secret_env("EXPEDITER_SASL_USERNAME", "username", settings),
            secret_env("EXPEDITER_SASL_PASSWORD", "password", settings),
            env("PYTHONDONTWRITEBYTECODE", "1"),
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "256Mi"},
        },
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": "health"},
            "initialDelaySeconds": 10,
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir of the pod's own)
            {"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(OPERATOR, settings.namespace, pod_labels),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": OPERATOR}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": OPERATOR,
                    "automountServiceAccountToken": True,
                    "enableServiceLinks": False,
                    # kopf stops its watches and handlers on SIGTERM within seconds.
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": pod_security(),
                    "containers": [container],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        kafka_ca_volume(settings),
                    ],
                },
            },
        },
    }


def operator_manifests(settings: DeploySettings | None = None) -> list[Manifest]:
    """The files of k8s/crds and k8s/operator, in a stable order."""
    settings = settings or DeploySettings()
    crds = Manifest(_CRD_FILE, (custom_resource_definition(),), "expediter/operating/resources.py")
    operator = [
        Manifest("k8s/operator/rbac.yaml", _rbac(settings), _SOURCES),
        Manifest("k8s/operator/deployment.yaml", (_deployment(settings),), _SOURCES),
    ]
    return [
        crds,
        Manifest(
            "k8s/crds/kustomization.yaml",
            (
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [_CRD_FILE.removeprefix("k8s/crds/")],
                },
            ),
            _SOURCES,
        ),
        *operator,
        Manifest(
            "k8s/operator/kustomization.yaml",
            (
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [
                        "../crds",
                        *(m.path.removeprefix("k8s/operator/") for m in operator),
                    ],
                },
            ),
            _SOURCES,
        ),
    ]
