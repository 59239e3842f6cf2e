"""``expediter scaler``'s gRPC service on a real broker: pending tokens, not records, drive it.

The service is called as KEDA calls it (externalscaler.proto, over gRPC on loopback); the
tasks are real records with the producer's ``expediter-expected-tokens`` header, the group's
progress real committed offsets. A real worker records the estimate on its results.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from expediter import load_agent
from expediter.dev import Broker
from expediter.events import ResultEvent, decode, to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.reasoning import RuleEngine
from expediter.scaler import ExternalScaler, serve
from expediter.scaler import externalscaler_pb2 as pb
from expediter.scaler import externalscaler_pb2_grpc as pb_grpc
from expediter.scaling.estimating import EXPECTED_TOKENS_HEADER
from expediter.settings import WorkerSettings
from expediter.worker.working import Worker
from tests.support import create_topics, read, task

PROBE = Path(__file__).resolve().parents[1] / "agents" / "probe.py"


@dataclass
class Served:
    names: TopicNames
    scaler: ExternalScaler
    stub: Any
    ref: Any


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest_asyncio.fixture
async def served(kafka: Broker) -> AsyncIterator[Served]:
    names = TopicNames(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe", partitions=2)
    scaler = ExternalScaler(kafka.settings, names=names)
    address = f"127.0.0.1:{_free_port()}"
    ready = asyncio.Event()
    serving = asyncio.create_task(serve(scaler, address, ready=ready))
    await asyncio.wait_for(ready.wait(), 30)
    metadata = {"capability": "probe", "targetDrainSeconds": "60", "tokensPerSecond": "100",
                "scalerAddress": address}  # fmt: skip
    ref = pb.ScaledObjectRef(name="probe", namespace="agents", scalerMetadata=metadata)
    async with grpc.aio.insecure_channel(address) as channel:
        yield Served(names, scaler, pb_grpc.ExternalScalerStub(channel), ref)
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving


async def _produce(kafka: Broker, topic: str, costs: list[int]) -> None:
    async with connected(AIOKafkaProducer(**client_options(kafka.settings)), kafka.settings) as p:
        for n, tokens in enumerate(costs):
            record = to_record(task(n, f"wf-{n % 4}"))
            headers = [*record.headers, (EXPECTED_TOKENS_HEADER, str(tokens).encode())]
            await p.send(topic, record.value, key=record.key, headers=headers)
        await p.flush()


async def _metric(served: Served) -> float:
    request = pb.GetMetricsRequest(scaledObjectRef=served.ref, metricName="s0-pending-work-seconds")
    response = await served.stub.GetMetrics(request)
    return float(response.metricValues[0].metricValueFloat)


async def test_metric_is_pending_tokens_over_throughput_and_falls_as_the_group_commits(
    kafka: Broker, served: Served
) -> None:
    spec = await served.stub.GetMetricSpec(served.ref)
    assert [(m.metricName, m.targetSizeFloat) for m in spec.metricSpecs] == [
        ("pending-work-seconds", 60.0)
    ]
    assert not (await served.stub.IsActive(served.ref)).result
    # a few long tasks and many short ones: 4 x 4000 + 100 x 20 = 18,000 tokens
    await _produce(kafka, served.names.tasks("probe"), [4000] * 4 + [20] * 100)
    async with asyncio.timeout(30):
        while await _metric(served) != pytest.approx(180.0):  # noqa: ASYNC110 - polls KEDA-style
            await asyncio.sleep(0.2)
    assert (await served.stub.IsActive(served.ref)).result
    # the group works everything off: its committed offsets reach the end
    tail = served.scaler.tails["probe"]
    assert tail.work is not None
    group = AIOKafkaConsumer(**client_options(kafka.settings), group_id=served.names.group("probe"),
                             enable_auto_commit=False)  # fmt: skip
    async with connected(group, kafka.settings):
        ends = {TopicPartition(served.names.tasks("probe"), p): s.end
                for p, s in enumerate(tail.work.partitions)}  # fmt: skip
        group.assign(list(ends))
        await group.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items()})
    assert await _metric(served) == 0.0
    assert not (await served.stub.IsActive(served.ref)).result


async def test_bad_metadata_is_refused_with_the_problem_and_the_fix(served: Served) -> None:
    metadata = {"capability": "probe", "tokensPerSecnd": "5"}
    ref = pb.ScaledObjectRef(name="probe", namespace="agents", scalerMetadata=metadata)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await served.stub.GetMetricSpec(ref)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "did you mean tokensPerSecond" in (caught.value.details() or "")


async def test_the_worker_records_the_estimate_next_to_actual_tokens(
    kafka: Broker, served: Served
) -> None:
    names = served.names
    settings = WorkerSettings(topic_prefix=names.prefix, instance=f"w-{uuid.uuid4().hex[:6]}",
                              http_port=0)  # fmt: skip
    worker = Worker(load_agent(PROBE), RuleEngine(), kafka=kafka.settings, settings=settings)
    running = asyncio.create_task(worker.run())
    try:
        await _produce(kafka, names.tasks("probe"), [4000])
        async with connected(
            AIOKafkaProducer(**client_options(kafka.settings)), kafka.settings
        ) as p:
            record = to_record(task(99, "wf-9"))
            await p.send_and_wait(names.tasks("probe"), record.value, key=record.key,
                                  headers=record.headers)  # fmt: skip
        records = await read(kafka.settings, names.results, until=lambda r: len(r) >= 2)
    finally:
        worker.request_stop()
        await asyncio.wait_for(running, 60)
    results = {r.output["n"]: r for r in (decode(x.value, ResultEvent) for x in records)}  # type: ignore[index]
    assert (results[0].estimated_tokens, results[0].estimate_source) == (4000, "header")
    guessed = results[99]
    assert guessed.estimate_source == "estimator"
    assert guessed.input_bytes is not None
    assert guessed.estimated_tokens == max(1, round(guessed.input_bytes * 0.25))
