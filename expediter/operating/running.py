"""Running the operator: logging, credentials, the liveness endpoint, and kopf's loop.

:func:`run` blocks until SIGTERM or SIGINT; kopf stops its watches and handlers, the
:class:`~expediter.operating.reconciling.Reconciler` closes its API client and Kafka clients,
and the process exits 0. ``GET /healthz`` on ``health_host:health_port`` answers 200 while
kopf's watches run (kopf's liveness endpoint); the in-cluster Deployment probes it.

Called by ``expediter operator`` (:mod:`expediter.cli.operator`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from expediter.operating.handlers import kopf_settings, registry_for
from expediter.operating.reconciling import Reconciler
from expediter.operating.requesting import connection_info
from expediter.operating.settings import OperatorSettings
from expediter.settings import KafkaSettings

__all__ = ["liveness_url", "run"]

log = logging.getLogger(__name__)

_ROUTINE = ("Timer 'resync' succeeded", "Handler 'drift' succeeded")


class _QuietRoutine(logging.Filter):
    """Drops kopf's line for each successful resync and drift check: one per Agent per tick
    (and per status change of its Deployment) would bury everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_ROUTINE)


def liveness_url(settings: OperatorSettings) -> str:
    host = f"[{settings.health_host}]" if ":" in settings.health_host else settings.health_host
    return f"http://{host}:{settings.health_port}/healthz"


async def operate(settings: OperatorSettings, kafka: KafkaSettings) -> None:
    """The operator's whole life, in the running event loop."""
    # Credentials first: a wrong --kubeconfig is refused before anything starts.
    connection_info(settings.kubeconfig)
    async with Reconciler(settings, kafka) as reconciler:
        registry = registry_for(reconciler)

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            # Called again by kopf on a 401, so a rotated service-account token is re-read.
            return connection_info(settings.kubeconfig)

        scope = ", ".join(settings.namespaces) or "all namespaces"
        log.info(
            "expediter operator: watching Agents in %s; liveness on %s",
            scope,
            liveness_url(settings),
        )
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(),
            # One replica (the Deployment's strategy is Recreate): no peering objects needed.
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=liveness_url(settings),
        )
        stopping = time.monotonic()
    log.info(
        "expediter operator: stopped (%.1fs to close its clients)", time.monotonic() - stopping
    )


def run(settings: OperatorSettings, kafka: KafkaSettings) -> None:
    """Configure logging and run the operator until a signal stops it."""
    kopf.configure(
        verbose=False,
        log_format=kopf.LogFormat.JSON if settings.json_logs else kopf.LogFormat.FULL,
    )
    logging.getLogger("kopf.objects").addFilter(_QuietRoutine())
    # One access line per liveness probe (every 20 s from the kubelet) says nothing.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(operate(settings, kafka))
