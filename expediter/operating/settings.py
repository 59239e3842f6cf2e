"""How ``expediter operator`` runs: :class:`OperatorSettings`, read from ``EXPEDITER_OPERATOR_*``.

The Kafka connection (for topics and lag) is the usual :class:`~expediter.settings.KafkaSettings`
(``EXPEDITER_BOOTSTRAP`` and friends). Built by the CLI (:mod:`expediter.cli.operator`), which
is the only place that reads the environment; passed to :mod:`expediter.operating.running`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from expediter.messaging import DEFAULT_CATALOG

__all__ = ["FIELD_MANAGER", "OperatorSettings"]

FIELD_MANAGER = "expediter-operator"
"""The server-side apply field manager: the fields the operator owns on the objects it makes."""


class OperatorSettings(BaseSettings):
    """The operator's knobs. The defaults suit a cluster; tests shorten the periods."""

    model_config = SettingsConfigDict(env_prefix="EXPEDITER_OPERATOR_", extra="ignore")

    kubeconfig: Path | None = None
    """Run out of cluster against this kubeconfig. None: the pod's service account."""
    namespaces: list[str] = Field(default_factory=list)
    """Watch Agents in these namespaces only; empty watches the whole cluster."""
    resync_seconds: float = Field(default=30.0, gt=0)
    """How often each Agent's objects are applied again (drift) and its status refreshed.
    A deleted Deployment or ScaledObject is put back at once, from the watch."""
    drain_poll_seconds: float = Field(default=2.0, gt=0)
    """How often a deleted Agent's drain checks whether its workers are gone."""
    health_host: str = "127.0.0.1"
    """Bind address of the liveness endpoint; the in-cluster Deployment sets 0.0.0.0."""
    health_port: int = Field(default=8082, ge=0, le=65535)
    """``GET /healthz`` answers 200 while the operator's watches run (kopf's liveness). Not
    8080 or 8081: a worker and the orchestrator on the same machine take those."""
    json_logs: bool = False
    """One JSON object per log line (the in-cluster Deployment sets it)."""
    catalog: Path = DEFAULT_CATALOG
    """The topic catalog: an Agent's topics take its per-capability templates (retention,
    replication, configs); ``spec.partitions`` sets the task topic's partitions."""
    kafka_secret: str = "expediter-kafka"  # noqa: S105 (a Secret's name, not a secret)
    """The Secret in each Agent's namespace that the workers and KEDA read (as in k8s/base)."""
    kafka_namespace: str = "kafka"
    """Where KafkaTopics go when Strimzi's CRD is installed."""
    kafka_cluster: str = "expediter"
    """The Strimzi Kafka resource the KafkaTopics belong to (``strimzi.io/cluster``)."""
