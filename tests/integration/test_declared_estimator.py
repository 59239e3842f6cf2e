"""An agent's declared estimator on a real broker: its worker stamps the estimate on the result,
and ``expediter scaler``, told the same prior by the rendered trigger (``tokensPerByte``),
counts the very same tokens for the task while it is pending (issue 18)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from dataclasses import replace
from pathlib import Path

import grpc
from aiokafka import AIOKafkaProducer

from expediter import AgentScaling, Estimator, load_agent
from expediter.dev import Broker
from expediter.events import ResultEvent, decode, to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.reasoning import RuleEngine
from expediter.scaler import ExternalScaler, serve
from expediter.scaler import externalscaler_pb2 as pb
from expediter.scaler import externalscaler_pb2_grpc as pb_grpc
from expediter.scaling.working import external_metadata
from expediter.settings import WorkerSettings
from expediter.worker.working import Worker
from tests.support import create_topics, read, task

PROBE = Path(__file__).resolve().parents[1] / "agents" / "probe.py"
TOKENS_PER_BYTE = 2.0
"""Eight times the default prior: a guess the default estimator would not make."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_worker_and_the_scaler_estimate_with_the_agents_declared_estimator(
    kafka: Broker,
) -> None:
    names = TopicNames(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe", partitions=1)
    agent = replace(load_agent(PROBE), estimator=Estimator(tokens_per_byte=TOKENS_PER_BYTE))
    # The trigger expediter keda render writes for it: one token a second and a target far
    # above the work, so the metric is the pending tokens themselves (no cap).
    scaling = AgentScaling(signal="work", tokens_per_second=1, target_drain_seconds=1e9)
    address = f"127.0.0.1:{_free_port()}"
    metadata = external_metadata(
        scaling.trigger("probe", estimator=agent.estimator), address
    )  # concurrency 1: the metric is tokens / 1 token/s
    assert metadata["tokensPerByte"] == "2"
    scaler = ExternalScaler(kafka.settings, names=names)
    ready = asyncio.Event()
    serving = asyncio.create_task(serve(scaler, address, ready=ready))
    await asyncio.wait_for(ready.wait(), 30)
    ref = pb.ScaledObjectRef(name="probe", namespace="agents", scalerMetadata=metadata)
    try:
        record = to_record(task(7, "wf-7", note="x" * 300))  # no expected-tokens header
        async with connected(
            AIOKafkaProducer(**client_options(kafka.settings)), kafka.settings
        ) as producer:
            await producer.send_and_wait(names.tasks("probe"), record.value, key=record.key,
                                         headers=record.headers)  # fmt: skip
        expected = round(len(record.value) * TOKENS_PER_BYTE)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.ExternalScalerStub(channel)
            request = pb.GetMetricsRequest(scaledObjectRef=ref, metricName="s0-work")
            async with asyncio.timeout(30):
                while True:
                    reply = await stub.GetMetrics(request)
                    if reply.metricValues[0].metricValueFloat > 0:
                        break
                    await asyncio.sleep(0.2)
        assert reply.metricValues[0].metricValueFloat == expected

        settings = WorkerSettings(topic_prefix=names.prefix, http_port=0,
                                  instance=f"w-{uuid.uuid4().hex[:6]}")  # fmt: skip
        worker = Worker(agent, RuleEngine(), kafka=kafka.settings, settings=settings)
        running = asyncio.create_task(worker.run())
        try:
            (result,) = await read(kafka.settings, names.results, until=lambda r: len(r) >= 1)
        finally:
            worker.request_stop()
            await asyncio.wait_for(running, 60)
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    event = decode(result.value, ResultEvent)
    assert event.estimate_source == "estimator"
    assert event.input_bytes == len(record.value)
    assert event.estimated_tokens == expected  # the scaler's number for the same task
