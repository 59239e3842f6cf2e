"""The objects that run ``expediter scaler`` in the agents' namespace, for the agents scaled on
pending work (an ``external`` trigger whose ``scalerAddress`` is
``expediter-scaler.<namespace>.svc:9090``, :attr:`DeploySettings.scaler_address`).

- a ServiceAccount with a Role that reads ScaledObjects and Deployments: the cold-start rule
  counts the target's replicas not ready yet (``--in-cluster``,
  :mod:`expediter.scaler.readiness`); so this pod, unlike the workers, mounts its token;
- a Deployment of one replica: the scaler keeps per-ScaledObject state (the value held while
  replicas load), and KEDA retries a failed call, so one pod suffices; it serves gRPC on 9090,
  probed by TCP (KEDA's protocol has no health call);
- a Service ``expediter-scaler`` on 9090, and a NetworkPolicy that lets KEDA's namespace reach
  it and it reach the API server (the namespace's policy already lets it reach DNS and Kafka).

Called by :mod:`expediter.deploying.manifests`: ``k8s/base/scaler.yaml`` when an agent scales on
work, and ``keda/examples/expediter-scaler.yaml`` beside the work example.
"""

from __future__ import annotations

from expediter.deploying.objects import (
    APP_LABEL,
    CONTAINER,
    KAFKA_CA_DIR,
    KAFKA_CLIENT_CONFIG,
    PART_OF,
    Object,
    common_env,
    container_security,
    kafka_ca_volume,
    meta,
    pod_spec,
    selector,
)
from expediter.deploying.profiles import DeploySettings

__all__ = ["SCALER", "SCALER_PORT", "scaler_objects"]

SCALER = "expediter-scaler"
SCALER_PORT = 9090
_API_SERVER_PORTS = (443, 6443)
"""The API server's Service port and its usual endpoint port (the policy sees the endpoint)."""


def _tcp_probe(period: int, failures: int) -> Object:
    return {"tcpSocket": {"port": "grpc"}, "periodSeconds": period, "failureThreshold": failures}


def scaler_objects(settings: DeploySettings) -> tuple[Object, ...]:
    """ServiceAccount, Role, RoleBinding, Deployment, Service and NetworkPolicy, in that order."""
    labels = {APP_LABEL: SCALER, "app.kubernetes.io/component": "scaler"}
    namespace = settings.namespace
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": meta(SCALER, namespace, labels)}  # fmt: skip
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta(SCALER, namespace, labels),
        "rules": [
            {"apiGroups": ["keda.sh"], "resources": ["scaledobjects"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta(SCALER, namespace, labels),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SCALER},
        "subjects": [{"kind": "ServiceAccount", "name": SCALER, "namespace": namespace}],
    }
    container = {
        "name": CONTAINER,
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["scaler", "--address", f"0.0.0.0:{SCALER_PORT}", "--in-cluster"],
        "ports": [{"name": "grpc", "containerPort": SCALER_PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": KAFKA_CLIENT_CONFIG}}],
        "env": common_env(settings),
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        },
        "startupProbe": _tcp_probe(5, 24),
        "livenessProbe": _tcp_probe(10, 3),
        "readinessProbe": _tcp_probe(10, 3),
        "securityContext": container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir of the pod's own)
            {"name": "kafka-ca", "mountPath": KAFKA_CA_DIR, "readOnly": True},
        ],
    }
    pod = pod_spec(container, [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                               kafka_ca_volume(settings)], 30)  # fmt: skip
    # It reads the target Deployments' readiness from the API server (the cold-start rule).
    pod["serviceAccountName"], pod["automountServiceAccountToken"] = SCALER, True
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(SCALER, namespace, labels),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector(SCALER)},
            "template": {"metadata": {"labels": {**PART_OF, **labels}}, "spec": pod},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(SCALER, namespace, labels),
        "spec": {
            "selector": selector(SCALER),
            "ports": [{"name": "grpc", "port": SCALER_PORT, "targetPort": "grpc"}],
        },
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(SCALER, namespace, labels),
        "spec": {
            "podSelector": {"matchLabels": selector(SCALER)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"namespaceSelector": {"matchLabels": {
                        "kubernetes.io/metadata.name": settings.keda_namespace}}}],
                    "ports": [{"protocol": "TCP", "port": SCALER_PORT}],
                }
            ],
            "egress": [{"ports": [{"protocol": "TCP", "port": p} for p in _API_SERVER_PORTS]}],
        },
    }  # fmt: skip
    return account, role, binding, deployment, service, policy
