"""The conformance harness: one ScaledObject on the real KEDA and HPA, the engine beside it.

A :class:`Case` is a topic, a consumer group, the project's ScaledObject (keda/action.yaml, with
the case's trigger and spec settings) and a timeline of :class:`Phase` s: produce, commit, take
the broker down, add partitions, or just idle. :func:`run_case` applies the objects and, about
once a second, records a :class:`Sample`:

- the topic's latest and the group's committed offsets, read from the broker as KEDA reads them
  (:class:`expediter.supervising.LagSampler`), before and after KEDA's metric is read;
- KEDA's metric, from the external metrics API (the aggregated API the HPA itself reads);
- the Deployment's ``spec.replicas``, which KEDA (0 <-> 1) and the real HPA (1 <-> N) set;
- the ScaledObject's failure count (``status.health``) and Fallback condition;
- what the project's engine says when fed the same offsets at the same time
  (:class:`expediter.scaling.Simulation` built by :func:`expediter.scaling.read_scaled_object`
  from the very object applied): ``step`` when the offsets could be read, ``fail`` when the
  broker was unreachable or KEDA's scaler must fail on them.

Sampling goes on while a phase's action runs (a broker restart takes a while, and KEDA polls all
along). A phase ends once ``min_seconds`` have passed since its action was done and both the
cluster and the engine have held the same count for :data:`SETTLE_SECONDS`; or at
``max_seconds``, unsettled (the test then fails).
:mod:`tests.cluster.test_conformance` holds the cases and the assertions.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

from expediter.messaging import client_options, connected
from expediter.scaling import FailedStep, Simulation, StepResult, read_scaled_object
from expediter.settings import KafkaSettings
from expediter.supervising import LagSample, LagSampler
from expediter.watching import keda_metric as keda_value
from tests.cluster.conftest import Cluster

ROOT = Path(__file__).resolve().parents[2]
PROJECT_SCALED_OBJECT = ROOT / "keda" / "action.yaml"
SAMPLE_SECONDS = 1.0
"""One sample a second: KEDA polls every second here (pollingInterval 1), the HPA every 2 s."""
SETTLE_SECONDS = 6.0
"""Settled: the same count for three HPA syncs (2 s each) and six KEDA polls, on both sides;
longer than a case's ``min_run``, so that every settled count is counted in the sequence."""
ACTION_SECONDS = 2.0
"""How long after an action its effect may reach KEDA and this test's reads at different
moments: a new partition's metadata reached KEDA's DescribeTopics a sample before the metadata
this test reads. Metrics are compared from then on."""
READ_TIMEOUT = 3.0
NO_NODE = {"expediter.io/conformance": "no-node"}
"""A nodeSelector no node matches: pods stay Pending even where a local node runs, so that
``spec.replicas`` is only ever set by KEDA and the HPA."""


@dataclass
class Kafka:
    """The broker a case's ScaledObject points at, and what a phase may do to it."""

    settings: KafkaSettings
    stop: Callable[[], Awaitable[None]] | None = None
    start: Callable[[], Awaitable[None]] | None = None
    down: bool = False
    """The broker has stopped and has not begun to start again: nothing can read it."""

    @property
    def bootstrap(self) -> str:
        return self.settings.bootstrap


@dataclass
class Setup:
    """One case on the cluster: its namespace, topic, group and broker."""

    cluster: Cluster
    kafka: Kafka
    name: str
    namespace: str
    topic: str
    group: str

    async def produce(self, counts: Mapping[int, int]) -> None:
        """``counts[p]`` records to partition ``p``."""
        settings = self.kafka.settings
        async with connected(AIOKafkaProducer(**client_options(settings)), settings) as producer:
            for partition, count in counts.items():
                for n in range(count):
                    await producer.send(self.topic, f"task {n}".encode(), partition=partition)
            await producer.flush()

    async def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit ``offsets[p]`` for the group, as a consumer that worked that far would."""
        settings = self.kafka.settings
        tps = {TopicPartition(self.topic, p): offset for p, offset in offsets.items()}
        consumer = AIOKafkaConsumer(**client_options(settings), group_id=self.group,
                                    enable_auto_commit=False)  # fmt: skip
        async with connected(consumer, settings):
            consumer.assign(list(tps))
            await consumer.commit(tps)

    async def add_partitions(self, total: int) -> None:
        settings = self.kafka.settings
        async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
            await admin.create_partitions({self.topic: NewPartitions(total)})

    async def broker_down(self) -> None:
        assert self.kafka.stop is not None, "only a case on the dedicated broker stops it"
        await self.kafka.stop()
        self.kafka.down = True

    async def broker_back(self) -> None:
        assert self.kafka.start is not None, "only a case on the dedicated broker starts it"
        self.kafka.down = False
        await self.kafka.start()


Action = Callable[[Setup], Awaitable[None]]


@dataclass(frozen=True)
class Phase:
    name: str
    act: Action | None
    min_seconds: float
    max_seconds: float = 60.0
    read_metric: bool = True
    """Read KEDA's metric: an API read is one more read of a failing scaler, which KEDA counts
    as a failure while the engine counts KEDA's polls (see the fallback case)."""


@dataclass(frozen=True)
class Case:
    name: str
    summary: str
    partitions: int
    trigger: Mapping[str, str]
    spec: Mapping[str, Any]
    phases: tuple[Phase, ...]
    expected: tuple[int, ...]
    """The settled replica sequence both sides must show (runs of one count, each at least
    ``min_run`` long; shorter runs are the transients of activation and HPA syncs)."""
    dedicated_broker: bool = False
    min_run: float = 5.0


@dataclass
class Sample:
    t: float
    phase: str
    latest: tuple[int, ...] | None
    committed: tuple[int | None, ...] | None
    read_error: str | None
    offsets_stable: bool
    keda_metric: float | None
    keda_error: str | None
    replicas: int
    keda_failures: int | None
    fallback_condition: str | None
    engine_metric: int | None
    engine_replicas: int
    engine_failures: int
    since_action: float | None = None
    """Seconds since the phase's action was done when this sample began; None while it ran."""


@dataclass
class CaseRun:
    case: Case
    objects: list[dict[str, Any]]
    samples: list[Sample] = field(default_factory=list)
    unsettled: list[str] = field(default_factory=list)
    """Phases that reached max_seconds without settling."""
    seconds: float = 0.0


def scaled_object(
    case: Case, namespace: str, topic: str, group: str, bootstrap: str
) -> dict[str, Any]:
    """The project's ScaledObject for this case: keda/action.yaml as rendered, in the case's
    namespace, pointed at the test broker directly (no TriggerAuthentication: PLAINTEXT), with
    the case's trigger and spec settings on top."""
    document: dict[str, Any] = yaml.safe_load(PROJECT_SCALED_OBJECT.read_text())
    document["metadata"].update(name=case.name, namespace=namespace)
    spec = document["spec"]
    spec["scaleTargetRef"]["name"] = case.name
    # The lag trigger only: the retry tiers' triggers read topics this case does not create,
    # and the engine is compared on the one trigger.
    spec["triggers"] = spec["triggers"][:1]
    trigger = spec["triggers"][0]
    trigger.pop("authenticationRef", None)
    metadata = trigger["metadata"]
    metadata.pop("bootstrapServersFromEnv", None)
    metadata.update(bootstrapServers=bootstrap, topic=topic, consumerGroup=group, **case.trigger)
    spec.update({"pollingInterval": 1, **case.spec})
    return document


def objects(case: Case, namespace: str, so: dict[str, Any]) -> list[dict[str, Any]]:
    labels = {"app": case.name}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": case.name, "namespace": namespace},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"nodeSelector": NO_NODE,
                     "containers": [{"name": "agent", "image": "expediter:dev"}]}}},
    }  # fmt: skip
    namespace_object = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    return [namespace_object, deployment, so]


async def run_case(case: Case, cluster: Cluster, kafka: Kafka) -> CaseRun:
    suffix = uuid.uuid4().hex[:6]
    namespace, topic = f"conform-{case.name}-{suffix}", f"conform.{case.name}.{suffix}"
    setup = Setup(cluster, kafka, case.name, namespace, topic, f"{topic}.group")
    async with connected(AIOKafkaAdminClient(**client_options(kafka.settings)),
                         kafka.settings) as admin:  # fmt: skip
        await admin.create_topics([NewTopic(topic, case.partitions, 1)])
    await _readable(kafka.settings, topic, setup.group)
    so = scaled_object(case, namespace, topic, setup.group, kafka.bootstrap)
    run = CaseRun(case, objects(case, namespace, so))
    listed = json.dumps({"apiVersion": "v1", "kind": "List", "items": run.objects})
    await asyncio.to_thread(cluster.kubectl, "apply", "--server-side", "-f", "-", stdin=listed)
    metric = await _metric_name(cluster, namespace, case.name)
    manifest = read_scaled_object(so)
    simulation = Simulation(manifest.trigger, manifest.spec)
    recorder = _Recorder(setup, metric, simulation)
    t0 = time.monotonic()
    try:
        for phase in case.phases:
            if not await recorder.observe(phase, t0, run.samples):
                run.unsettled.append(phase.name)
    finally:
        await recorder.close()
        run.seconds = time.monotonic() - t0
    return run


async def _readable(settings: KafkaSettings, topic: str, group: str) -> None:
    """Wait until the topic and the group's offsets can be read. A fresh broker has no group
    coordinator until __consumer_offsets exists; KEDA's first read would fail meanwhile, and with
    failureThreshold 0 that alone engages the fallback (seen: 0 -> 1 -> 0 before any lag)."""
    deadline = time.monotonic() + 60
    async with LagSampler(settings) as sampler:
        while True:
            try:
                await asyncio.wait_for(sampler.sample(topic, group), READ_TIMEOUT)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)


async def _metric_name(cluster: Cluster, namespace: str, name: str) -> str:
    """KEDA's external metric, as its HPA names it (``s0-kafka-<topic>``), once the HPA exists."""
    path = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/keda-hpa-{name}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = await asyncio.to_thread(cluster.api.get, path)
        if reply.ok:
            return str(reply.json()["spec"]["metrics"][0]["external"]["metric"]["name"])
        await asyncio.sleep(0.5)
    raise AssertionError(f"KEDA made no HPA for {namespace}/{name} in 60 s")


class _Recorder:
    """Samples one case and steps its engine."""

    def __init__(self, setup: Setup, metric: str, simulation: Simulation) -> None:
        self.setup = setup
        self.simulation = simulation
        ns, name = setup.namespace, setup.name
        self._metric_path = (f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}"
                             f"?labelSelector=scaledobject.keda.sh%2Fname%3D{name}")  # fmt: skip
        self._deployment_path = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
        self._so_path = f"/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects/{name}"
        self._sampler: LagSampler | None = None

    async def close(self) -> None:
        if self._sampler is not None:
            sampler, self._sampler = self._sampler, None
            await sampler.__aexit__(None, None, None)

    async def _offsets(self) -> LagSample | str:
        try:
            if self._sampler is None:
                sampler = LagSampler(self.setup.kafka.settings)
                await asyncio.wait_for(sampler.__aenter__(), READ_TIMEOUT)
                self._sampler = sampler
            return await asyncio.wait_for(
                self._sampler.sample(self.setup.topic, self.setup.group), READ_TIMEOUT
            )
        except Exception as exc:  # the broker is down: aiokafka's errors or our timeout
            await self.close()  # a new client after the outage, rather than a wedged one
            return f"{type(exc).__name__}: {exc}"

    async def observe(self, phase: Phase, t0: float, samples: list[Sample]) -> bool:
        """Do the phase's action and sample meanwhile (a broker takes a while to start, and KEDA
        polls all along), then until the phase has settled (True) or reached max_seconds after
        the action (False)."""
        act = asyncio.ensure_future(phase.act(self.setup)) if phase.act else None
        done_at: float | None = None if act else time.monotonic()
        try:
            while True:
                began = time.monotonic()
                if done_at is None and act is not None and act.done():
                    act.result()  # an action that failed fails the case
                    done_at = began
                sample = await self._sample(phase, began - t0)
                sample.since_action = None if done_at is None else round(began - done_at, 1)
                samples.append(sample)
                elapsed = 0.0 if done_at is None else time.monotonic() - done_at
                if elapsed >= phase.min_seconds and _settled(samples, phase.name):
                    return True
                if elapsed >= phase.max_seconds:
                    return False
                await asyncio.sleep(max(0.0, SAMPLE_SECONDS - (time.monotonic() - began)))
        finally:
            if act is not None:
                act.cancel()

    async def _read(self, path: str) -> dict[str, Any]:
        """An object from the API server, tried three times: a loaded machine times out some."""
        for _ in range(3):
            reply = await asyncio.to_thread(self.setup.cluster.api.get, path)
            if reply.ok:
                return dict(reply.json())
            await asyncio.sleep(0.2)
        raise AssertionError(f"GET {path}: {reply.status} {reply.body[:300]}")

    async def _sample(self, phase: Phase, t: float) -> Sample:
        api = self.setup.cluster.api
        down = self.setup.kafka.down
        before = await self._offsets()
        keda_metric: float | None = None
        keda_error: str | None = "not read in this phase"
        if phase.read_metric:
            reply = await asyncio.to_thread(api.get, self._metric_path)
            if reply.ok:
                keda_metric, keda_error = keda_value(reply.json())
            else:
                keda_error = f"HTTP {reply.status}"
        after = await self._offsets() if phase.read_metric else before
        deployment, so = await asyncio.gather(
            self._read(self._deployment_path), self._read(self._so_path)
        )
        status = so.get("status", {})
        health = list((status.get("health") or {}).values())
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        result = self._step(t, before)
        latest = committed = None
        if isinstance(before, LagSample):
            latest, committed = before.latest, before.committed
        return Sample(
            t=round(t, 1), phase=phase.name, latest=latest, committed=committed,
            read_error=before if isinstance(before, str) else None,
            offsets_stable=_same(before, after, down=down and self.setup.kafka.down),
            keda_metric=keda_metric, keda_error=keda_error,
            replicas=int(deployment["spec"].get("replicas") or 0),
            keda_failures=health[0].get("numberOfFailures") if health else None,
            fallback_condition=conditions.get("Fallback"),
            engine_metric=result.metric if isinstance(result, FailedStep)
            else result.reading.metric,
            engine_replicas=result.replicas,
            engine_failures=result.failures if isinstance(result, FailedStep) else 0,
        )  # fmt: skip

    def _step(self, t: float, offsets: LagSample | str) -> StepResult | FailedStep:
        if isinstance(offsets, str):
            # The broker did not answer: KEDA's scaler fails too, and cannot be built anew.
            return self.simulation.fail(t, offsets, reachable=False)
        trigger = self.simulation.trigger
        if not any(trigger.partition_counts(p) for p in range(len(offsets.latest))):
            # kafka_scaler.go getTopicPartitions: the scaler connects, then fails the read.
            error = f"expected at least one active partition within the topic '{offsets.topic}'"
            return self.simulation.fail(t, error, reachable=True)
        return self.simulation.step(t, offsets.latest, offsets.committed)


def _same(before: LagSample | str, after: LagSample | str, *, down: bool) -> bool:
    """The offsets did not move while KEDA's metric was read; or the broker was down all along
    (KEDA could not read it either; a failed read alone may be a client still reconnecting)."""
    if isinstance(before, str) or isinstance(after, str):
        return isinstance(before, str) and isinstance(after, str) and down
    return (before.latest, before.committed) == (after.latest, after.committed)


def _settled(samples: list[Sample], phase: str) -> bool:
    """Both sides held one and the same count for the last SETTLE_SECONDS of this phase, since
    its action was done."""
    mine = [s for s in samples if s.phase == phase and s.since_action is not None]
    if not mine or mine[-1].t - mine[0].t < SETTLE_SECONDS:
        return False
    recent = [s for s in mine if s.t >= mine[-1].t - SETTLE_SECONDS]
    return len({(s.replicas, s.engine_replicas) for s in recent}) == 1 and (
        recent[-1].replicas == recent[-1].engine_replicas
    )


def settled_sequence(samples: list[Sample], *, engine: bool, min_run: float) -> list[int]:
    """The counts held at least ``min_run`` seconds, in order (the last run always counts)."""
    runs: list[list[float]] = []  # [count, first t, last t]
    for s in samples:
        count = s.engine_replicas if engine else s.replicas
        if runs and runs[-1][0] == count:
            runs[-1][2] = s.t
        else:
            if runs:
                runs[-1][2] = s.t  # a run lasts until the sample that ends it
            runs.append([count, s.t, s.t])
    kept = [int(r[0]) for i, r in enumerate(runs) if r[2] - r[1] >= min_run or i == len(runs) - 1]
    return [c for i, c in enumerate(kept) if i == 0 or kept[i - 1] != c]


def table(run: CaseRun) -> str:
    """The samples where anything changed, one a line, for the log and for failure messages."""
    lines = [f"{run.case.name}: {run.case.summary}",
             "     t phase       latest / committed        KEDA metric  engine  replicas  engine"
             "  failures(KEDA/engine) fallback"]  # fmt: skip
    previous: tuple[Any, ...] | None = None
    for s in run.samples:
        offsets = s.read_error[:28] if s.read_error else f"{s.latest} / {s.committed}"
        keda = s.keda_error if s.keda_metric is None else f"{s.keda_metric:g}"
        key = (s.phase, offsets, keda, s.engine_metric, s.replicas, s.engine_replicas,
               s.keda_failures, s.engine_failures, s.fallback_condition)  # fmt: skip
        if key != previous:
            lines.append(f"{s.t:6.1f} {s.phase:<11} {offsets:<26} {keda!s:>12} "
                         f"{s.engine_metric!s:>7} {s.replicas:>9} {s.engine_replicas:>7}  "
                         f"{s.keda_failures!s:>6}/{s.engine_failures:<6} "
                         f"{s.fallback_condition}")  # fmt: skip
        previous = key
    return "\n".join(lines)
