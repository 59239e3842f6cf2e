"""``expediter scaler``: serve KEDA's external scaler protocol, scaling agents on pending work.

A ScaledObject uses it with an ``external`` trigger::

    triggers:
      - type: external
        metadata:
          scalerAddress: expediter-scaler.expediter:9090
          capability: planning
          targetDrainSeconds: "60"   # seconds of work one replica should have pending
          tokensPerSecond: "40"      # a replica's rate until one is measured on results

Binds 127.0.0.1 by default; a cluster Service needs ``--address 0.0.0.0:9090``. Exit code 2 on
bad options or an address it cannot listen on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from expediter.messaging import TopicNames
from expediter.scaler.serving import ExternalScaler, LoadingReplicas, serve
from expediter.settings import KafkaSettings

__all__ = ["scaler"]


def scaler(
    address: Annotated[
        str, typer.Option(help="host:port to listen on (loopback unless told otherwise).")
    ] = "127.0.0.1:9090",
    prefix: Annotated[
        str, typer.Option(help="Topic and group prefix.", envvar="EXPEDITER_TOPIC_PREFIX")
    ] = "",
    kubeconfig: Annotated[
        Path | None,
        typer.Option(
            help="Read the scale targets' readiness from this cluster, so replicas still "
            "loading their model hold the metric (cold start)."
        ),
    ] = None,
    in_cluster: Annotated[
        bool, typer.Option(help="As --kubeconfig, with the pod's service account.")
    ] = False,
) -> None:
    """Serve KEDA's externalscaler.proto: pending tokens / a replica's tokens/s per agent."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    loading: LoadingReplicas | None = None
    if kubeconfig is not None or in_cluster:
        from expediter.scaler.readiness import DeploymentReadiness

        loading = DeploymentReadiness(kubeconfig)
    service = ExternalScaler(KafkaSettings(), names=TopicNames(prefix), loading=loading)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_until_signalled(serve(service, address)))


async def _until_signalled(serving: Coroutine[Any, Any, None]) -> None:
    """Run ``serving`` until SIGTERM or SIGINT, then stop it (the server closes, the tails
    stop) and return: a pod's scaler exits 0 on Kubernetes' SIGTERM."""
    task = asyncio.ensure_future(serving)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
