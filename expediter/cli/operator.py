"""``expediter operator``: reconcile ``Agent`` resources (expediter.io/v1alpha1) into Deployments,
ScaledObjects and topics, until SIGTERM.

In a cluster it runs as the Deployment of ``k8s/operator`` under its own service account; out
of cluster it takes ``--kubeconfig`` (the dev cluster's, for example). Options override the
``EXPEDITER_OPERATOR_*`` variables; Kafka (for topics and lag) is ``EXPEDITER_BOOTSTRAP`` and
friends, or ``--bootstrap``. Exits 0 on SIGTERM or SIGINT, 2 on a bad setting.

Registered in :mod:`expediter.cli` as ``operator``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from expediter.operating import OperatorSettings, run
from expediter.settings import KafkaSettings

__all__ = ["operator"]


def operator(
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            help="Run out of cluster against this kubeconfig (default: the pod's service "
            "account, else $KUBECONFIG).",
            dir_okay=False,
        ),
    ] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option(help="Watch Agents in this namespace only (repeatable; default: all)."),
    ] = None,
    resync_seconds: Annotated[
        float | None,
        typer.Option(help="Apply every Agent again and refresh its status this often (30)."),
    ] = None,
    health_host: Annotated[
        str | None, typer.Option(help="Bind address of GET /healthz (127.0.0.1).")
    ] = None,
    health_port: Annotated[int | None, typer.Option(help="Port of GET /healthz (8082).")] = None,
    catalog: Annotated[
        Path | None,
        typer.Option(help="The topic catalog (topics/topics.yaml).", dir_okay=False),
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (default $EXPEDITER_BOOTSTRAP).")
    ] = None,
    json_logs: Annotated[
        bool | None, typer.Option("--json-logs/--plain-logs", help="Log JSON lines.")
    ] = None,
) -> None:
    """Run the Agent operator until SIGTERM."""
    overrides: dict[str, Any] = {
        "kubeconfig": kubeconfig,
        "namespaces": namespace or None,
        "resync_seconds": resync_seconds,
        "health_host": health_host,
        "health_port": health_port,
        "catalog": catalog,
        "json_logs": json_logs,
    }
    settings = OperatorSettings(**{k: v for k, v in overrides.items() if v is not None})
    kafka = KafkaSettings()
    if bootstrap:
        kafka = kafka.model_copy(update={"bootstrap": bootstrap})
    run(settings, kafka)
