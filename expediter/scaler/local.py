"""The scaler's answer for ``expediter up`` and ``expediter watch``, without gRPC or KEDA.

:func:`work_reader` turns an in-process :class:`~expediter.scaler.serving.ExternalScaler` into a
:data:`~expediter.supervising.workreading.WorkReader`: for an agent with a work trigger it calls
:meth:`ExternalScaler.measure` with the trigger's metadata, as ``GetMetrics`` does when KEDA
asks, so the local supervisor scales on the very number a cluster's HPA would get.

Who calls it: ``expediter up`` and ``expediter watch`` (:mod:`expediter.cli`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from expediter.errors import ConfigurationError
from expediter.messaging import TopicNames
from expediter.scaler.serving import ExternalScaler
from expediter.settings import KafkaSettings
from expediter.supervising.scaledobjects import ScaledAgent
from expediter.supervising.workreading import WorkReader, WorkReading

__all__ = ["LOCAL_NAMESPACE", "local_work_reader", "work_reader"]

LOCAL_NAMESPACE = "local"
"""The namespace the scaler's per-ScaledObject state is kept under on one machine."""


def work_reader(scaler: ExternalScaler) -> WorkReader:
    """Read ``scaler`` for an agent's work trigger; ConfigurationError for an agent without."""

    async def read(agent: ScaledAgent) -> WorkReading:
        if agent.work is None:
            raise ConfigurationError(f"{agent.name} has no work trigger to read")
        report = await scaler.measure(LOCAL_NAMESPACE, agent.name, agent.work_metadata)
        metric = report.metric
        return WorkReading(report.pending_tokens, report.pending_records, metric.throughput,
                           metric.metric, metric.active, metric.capped, metric.held)  # fmt: skip

    return read


@contextlib.asynccontextmanager
async def local_work_reader(kafka: KafkaSettings, names: TopicNames) -> AsyncIterator[WorkReader]:
    """A :func:`work_reader` on a scaler of its own, whose Kafka tails close on exit."""
    scaler = ExternalScaler(kafka, names=names)
    try:
        yield work_reader(scaler)
    finally:
        await scaler.stop()
