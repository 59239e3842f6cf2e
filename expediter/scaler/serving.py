"""KEDA's external scaler service (externalscaler.proto), answering with pending work.

KEDA calls, for each ScaledObject with an ``external`` trigger whose ``scalerAddress`` points
here, with the trigger's metadata in ``scalerMetadata``:

- ``GetMetricSpec``: one metric, :data:`~expediter.scaling.working.WORK_METRIC_NAME`, with
  target ``targetDrainSeconds`` (the HPA reads it as an AverageValue);
- ``GetMetrics``: pending tokens / a replica's measured tokens/s (capped per GPU, held while
  replicas load their model): :class:`~expediter.scaling.working.WorkMeter`;
- ``IsActive`` and ``StreamIsActive``: pending tokens above ``activationTokens``;
- ``StreamMetricSpec`` answers UNIMPLEMENTED, which KEDA takes as "pull the spec instead".

Each capability gets one :class:`~expediter.scaler.tailing.WorkTail`, started at the first call
that names it; each ScaledObject (namespace/name) gets its own :class:`WorkMeter`, as the
cold-start hold is per scale target. Bad metadata answers INVALID_ARGUMENT with the problems,
which KEDA shows in the ScaledObject's events.

The message classes and the service registration are generated from KEDA's own
``pkg/scalers/externalscaler/externalscaler.proto`` (kedacore/keda v2.21.0) and committed next to
this module (see :mod:`expediter.scaler`). Who calls it: ``expediter scaler``
(:mod:`expediter.cli.scaler`) and the tests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from expediter.errors import ConfigurationError
from expediter.messaging import TopicNames
from expediter.scaler import externalscaler_pb2 as pb
from expediter.scaler import externalscaler_pb2_grpc as pb_grpc
from expediter.scaler.tailing import WorkTail
from expediter.scaling.estimating import TokenEstimator
from expediter.scaling.working import (
    WORK_METRIC_NAME,
    ExternalTrigger,
    WorkMeter,
    WorkMetric,
    parse_external_trigger,
)
from expediter.settings import KafkaSettings

__all__ = ["ExternalScaler", "LoadingReplicas", "ScalerReport", "serve"]

log = logging.getLogger(__name__)

LoadingReplicas = Callable[[str, str], int]
"""(namespace, ScaledObject name) -> replicas of its target still loading their model."""


@dataclass(frozen=True)
class ScalerReport:
    """The last answer for one ScaledObject: what ``GetMetrics`` sent and why."""

    scaled_object: str
    capability: str
    pending_tokens: float
    pending_records: int
    throughput: float
    metric: WorkMetric


class ExternalScaler:
    """The service's four calls; tails and meters are created on first use."""

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        names: TopicNames | None = None,
        loading: LoadingReplicas | None = None,
        stream_interval: float = 1.0,
    ) -> None:
        self.kafka = kafka
        self.names = names or TopicNames()
        self.loading = loading
        self.stream_interval = stream_interval
        self.tails: dict[str, WorkTail] = {}
        self._starting: dict[str, asyncio.Task[WorkTail]] = {}
        self._meters: dict[tuple[str, str], WorkMeter] = {}
        self.reports: dict[str, ScalerReport] = {}

    async def stop(self) -> None:
        for tail in self.tails.values():
            await tail.stop()
        self.tails.clear()

    async def measure(self, namespace: str, name: str, metadata: Mapping[str, str]) -> ScalerReport:
        """Read pending work for one ScaledObject; ConfigurationError for bad metadata."""
        trigger = parse_external_trigger(metadata, where=f"ScaledObject/{name}.trigger")
        meter = self._meter(namespace, name, trigger)
        tail = await self._tail(trigger)
        reading = await tail.read()
        loading = 0
        if self.loading is not None:
            try:
                loading = await asyncio.to_thread(self.loading, namespace, name)
            except Exception as exc:  # the apiserver: the work is still known, so answer it
                log.warning("%s/%s: replicas' readiness unknown (%s); none counted as loading",
                            namespace, name, exc)  # fmt: skip
        metric = meter.metric(
            reading.tokens,
            throughput=tail.throughput.tokens_per_second,
            loading=loading,
            records=reading.records,
        )
        report = ScalerReport(f"{namespace}/{name}", trigger.capability, reading.tokens,
                              reading.records, metric.throughput, metric)  # fmt: skip
        self.reports[report.scaled_object] = report
        return report

    # The four calls of externalscaler.proto; grpc.aio calls them by these names.
    async def IsActive(self, request: Any, context: Any) -> Any:
        report = await self._measured(request, context)
        return pb.IsActiveResponse(result=report.metric.active)

    async def StreamIsActive(self, request: Any, context: Any) -> AsyncIterator[Any]:
        # KEDA's push-based activation: an answer now, then one whenever activity changes.
        last: bool | None = None
        while True:
            report = await self._measured(request, context)
            if report.metric.active != last:
                last = report.metric.active
                yield pb.IsActiveResponse(result=last)
            await asyncio.sleep(self.stream_interval)

    async def GetMetricSpec(self, request: Any, context: Any) -> Any:
        trigger = await self._trigger(request, context)
        spec = pb.MetricSpec(
            metricName=WORK_METRIC_NAME,
            targetSize=max(1, round(trigger.target_drain_seconds)),
            targetSizeFloat=trigger.target_drain_seconds,
        )
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    async def GetMetrics(self, request: Any, context: Any) -> Any:
        report = await self._measured(request.scaledObjectRef, context)
        value = report.metric.metric
        log.info(
            "%s: %.0f tokens pending in %d records, %.1f tokens/s a replica: metric %.2f%s%s",
            report.scaled_object, report.pending_tokens, report.pending_records,
            report.throughput, value, " (capped per GPU)" if report.metric.capped else "",
            " (held: replicas loading)" if report.metric.held else "",
        )  # fmt: skip
        metric = pb.MetricValue(
            metricName=request.metricName or WORK_METRIC_NAME,
            metricValue=round(value),
            metricValueFloat=value,
        )
        return pb.GetMetricsResponse(metricValues=[metric])

    async def StreamMetricSpec(self, request: Any, context: Any) -> AsyncIterator[Any]:
        # Optional in the proto: UNIMPLEMENTED makes KEDA pull GetMetricSpec instead.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "pull GetMetricSpec instead")
        yield  # pragma: no cover - makes this an async generator, as the stream call needs

    async def _trigger(self, ref: Any, context: Any) -> ExternalTrigger:
        try:
            return parse_external_trigger(
                dict(ref.scalerMetadata), where=f"ScaledObject/{ref.name}.trigger"
            )
        except ConfigurationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # abort raises; this only tells the type checker

    async def _measured(self, ref: Any, context: Any) -> ScalerReport:
        await self._trigger(ref, context)
        try:
            return await self.measure(ref.namespace, ref.name, dict(ref.scalerMetadata))
        except Exception as exc:  # the broker, a missing topic: KEDA counts a failure
            log.warning("%s/%s: cannot read pending work: %s", ref.namespace, ref.name, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot read pending work: {exc}")
            raise

    def _meter(self, namespace: str, name: str, trigger: ExternalTrigger) -> WorkMeter:
        meter = self._meters.get((namespace, name))
        if meter is None or meter.trigger != trigger:
            meter = self._meters[(namespace, name)] = WorkMeter(trigger)
        return meter

    async def _tail(self, trigger: ExternalTrigger) -> WorkTail:
        capability = trigger.capability
        tail = self.tails.get(capability)
        if tail is not None:
            return tail
        starting = self._starting.get(capability)
        if starting is None:
            starting = asyncio.ensure_future(self._start_tail(trigger))
            self._starting[capability] = starting
        try:
            return await asyncio.shield(starting)
        finally:
            if starting.done():
                self._starting.pop(capability, None)

    async def _start_tail(self, trigger: ExternalTrigger) -> WorkTail:
        # The agent's declared estimator prior (tokensPerByte), so the scaler's guesses start
        # where the worker's do; both then calibrate on the same finished tasks.
        estimator = None
        if trigger.tokens_per_byte is not None:
            estimator = TokenEstimator(trigger.tokens_per_byte)
        tail = WorkTail(self.kafka, trigger.capability, names=self.names, estimator=estimator)
        await tail.start()
        self.tails[trigger.capability] = tail
        return tail


async def serve(
    scaler: ExternalScaler, address: str, *, ready: asyncio.Event | None = None
) -> None:
    """Serve ``scaler`` on ``address`` (host:port) until cancelled."""
    server = grpc.aio.server()
    pb_grpc.add_ExternalScalerServicer_to_server(scaler, server)  # type: ignore[no-untyped-call]
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpcio >= 1.60 raises where it used to return 0
        port = 0
    if port == 0:
        await scaler.stop()
        raise ConfigurationError(
            f"cannot listen on {address} (in use, or not an address of this host); pick a "
            "free one: --address 127.0.0.1:<port>"
        )
    await server.start()
    log.info("external scaler listening on %s", address)
    if ready is not None:
        ready.set()
    try:
        await server.wait_for_termination()
    finally:
        await server.stop(grace=1)
        await scaler.stop()
