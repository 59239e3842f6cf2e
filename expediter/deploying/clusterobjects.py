"""The objects of k8s/base that belong to the cluster, not to one workload: the namespace, the
service account, KEDA's Secret reader, the NetworkPolicy, the Kafka client ConfigMap and the
Strimzi KafkaTopics of the catalog.

Called by :mod:`expediter.deploying.manifests`.
"""

from __future__ import annotations

from expediter.deploying.objects import (
    CAPABILITY_LABEL,
    KAFKA_CA_DIR,
    KAFKA_CLIENT_CONFIG,
    PART_OF,
    SERVICE_ACCOUNT,
    Object,
    meta,
    topic_object_name,
)
from expediter.deploying.profiles import DeploySettings
from expediter.messaging import TopicSpec

__all__ = [
    "kafka_client_config",
    "kafka_topic",
    "keda_secret_reader",
    "namespace",
    "network_policy",
    "service_account",
]


def namespace(settings: DeploySettings) -> Object:
    # Every pod here meets the "restricted" Pod Security Standard; the namespace enforces it.
    labels = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn")}
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": settings.namespace, "labels": {**PART_OF, **labels}},
    }


def service_account(settings: DeploySettings) -> Object:
    # Bound to no Role: agents and the orchestrator need nothing from the Kubernetes API.
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(SERVICE_ACCOUNT, settings.namespace),
        "automountServiceAccountToken": False,
    }


def keda_secret_reader(settings: DeploySettings) -> tuple[Object, Object]:
    # The only RBAC this deployment needs: KEDA's operator reads the Kafka Secret for the
    # TriggerAuthentication. On a KEDA installed with restricted secret access this grants
    # exactly that one Secret; elsewhere it is redundant and harmless.
    name = "expediter-keda-secret-reader"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta(name, settings.namespace),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [settings.kafka_secret],
                "verbs": ["get", "list", "watch"],
            }
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": meta(name, settings.namespace),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": settings.keda_service_account,
                "namespace": settings.keda_namespace,
            }
        ],
    }
    return role, binding


def network_policy(settings: DeploySettings) -> Object:
    low, high = settings.kafka_ports
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta("expediter", settings.namespace),
        "spec": {
            "podSelector": {"matchLabels": dict(PART_OF)},
            "policyTypes": ["Ingress", "Egress"],
            # Pods serve only /metrics, /healthz and /readyz (Prometheus, from any namespace).
            "ingress": [
                {
                    "from": [{"namespaceSelector": {}}],
                    "ports": [{"protocol": "TCP", "port": settings.http_port}],
                }
            ],
            # And talk only to DNS and the Kafka brokers. An `openai` engine needs one more
            # rule for its server; the in-process engines need none.
            "egress": [
                {
                    "ports": [
                        {"protocol": "UDP", "port": 53},
                        {"protocol": "TCP", "port": 53},
                    ]
                },
                {
                    "to": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {
                                    "kubernetes.io/metadata.name": settings.kafka_namespace
                                }
                            }
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": low, "endPort": high}],
                },
            ],
        },
    }


def kafka_client_config(settings: DeploySettings) -> Object:
    # Not secret, so a ConfigMap (credentials come from the Secret, key by key). Keys are the
    # variables themselves: pods take it whole with envFrom, and KEDA resolves it the same way.
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(KAFKA_CLIENT_CONFIG, settings.namespace),
        "data": {
            "EXPEDITER_BOOTSTRAP": settings.bootstrap,
            "EXPEDITER_SECURITY_PROTOCOL": settings.security_protocol,
            "EXPEDITER_SASL_MECHANISM": settings.sasl_mechanism,
            "EXPEDITER_SSL_CAFILE": f"{KAFKA_CA_DIR}/ca.crt",
        },
    }


def kafka_topic(spec: TopicSpec, settings: DeploySettings) -> Object:
    labels = {"strimzi.io/cluster": settings.kafka_cluster}
    if spec.capability:
        labels[CAPABILITY_LABEL] = spec.capability
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": meta(topic_object_name(spec.name), settings.kafka_namespace, labels),
        "spec": {
            "topicName": spec.name,
            "partitions": spec.partitions,
            "replicas": spec.replication_factor,
            "config": dict(sorted(spec.kafka_configs.items())),
        },
    }
