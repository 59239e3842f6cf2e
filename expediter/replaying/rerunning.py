"""Shadow re-runs: a range of tasks re-published under a prefix and run by the current agent.

``expediter replay <tasks topic> --rerun --into <prefix>`` copies the chosen task records into
``<prefix>tasks.<capability>`` with the same keys, values (event ids, step ids, attempts) and
partitions, plus a header ``expediter-shadow-of: <topic>/<partition>/<offset>``, in one Kafka
transaction. One field changes: a task's ``deadline`` is cleared (the original goes in the header
``expediter-original-deadline``). A re-run happens after the fact, usually past the deadline,
and a copy that kept it would come back ``expired`` without running; the handler's own time
limit still bounds each shadow task (see :mod:`expediter.replaying.deadlines`).

A shadow worker (``--run agents/<x>.py`` runs one in-process until every shadow task has its
outcome) consumes them in the shadow group ``<prefix>agents.<capability>`` and
publishes to ``<prefix>results``: the real groups, topics and offsets are never touched.

Side effects are replaced by the results recorded the first time: the shadow worker reads tool
records from the ORIGINAL ledger (``WorkerSettings.ledger_topic``), keyed by the task's event id
and step, which the shadow tasks keep. A call with no record (the new code calls a tool the old
one did not) fails the shadow task with ``shadow-unrecorded`` instead of running: a shadow run
never acts on the world and never writes to the original ledger. A plain ``expediter worker``
with ``EXPEDITER_LEDGER_TOPIC`` does reuse the records, but it would run unrecorded calls.

``--engine`` runs the shadow worker on another engine than the deployment's: a route of
``EXPEDITER_ENGINE_ROUTES`` by name, a kind, or a JSON route (``candidate_settings``), alone (no
fallback, so every shadow answer is the candidate's). That is how a candidate model is judged
on recorded traffic before it takes any live traffic.

Then ``expediter diff <prefix>`` (:mod:`expediter.replaying.diffing`) compares the outputs,
with per-field agreement figures.
Called by expediter.cli.replay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from expediter.authoring.agents import Agent
from expediter.authoring.tools import Tool
from expediter.errors import (
    BrokerError,
    ConfigurationError,
    DecodeError,
    ExpediterError,
    PermanentError,
)
from expediter.events import TaskEvent, decode
from expediter.messaging import TopicNames, client_options, connected
from expediter.messaging.partitionreading import Record
from expediter.reasoning import candidate_settings, engine_from_settings
from expediter.replaying.deadlines import ORIGINAL_DEADLINE_HEADER, iso_deadline, with_deadline
from expediter.replaying.reading import HistoryReader
from expediter.settings import EngineSettings, KafkaSettings, WorkerSettings
from expediter.worker.working import Worker

__all__ = [
    "SHADOW_HEADER",
    "RerunReport",
    "ShadowTarget",
    "publish_shadow",
    "recorded_only",
    "run_shadow",
    "shadow_target",
]

SHADOW_HEADER = "expediter-shadow-of"
"""On a shadow task: the original record, ``<topic>/<partition>/<offset>``."""

_TASKS = re.compile(r"^(?P<prefix>.*)tasks\.(?P<capability>[a-z0-9][a-z0-9-]*)$")
_RETRY = re.compile(r"^(?P<prefix>.*)retry\.(?P<capability>[a-z0-9][a-z0-9-]*)\.[^.]+$")
_PREFIX = re.compile(r"^[A-Za-z0-9._-]+$")
_TOPIC_ALREADY_EXISTS = 36
_SETTLE_SECONDS = 30.0


@dataclass(frozen=True)
class ShadowTarget:
    """Where a rerun of ``source`` goes, and which ledger its tool calls replay from."""

    source: str
    capability: str
    original_prefix: str
    into: str

    @property
    def names(self) -> TopicNames:
        return TopicNames(self.into)

    @property
    def tasks(self) -> str:
        return self.names.tasks(self.capability)

    @property
    def ledger(self) -> str:
        return TopicNames(self.original_prefix).ledger


def shadow_target(source: str, into: str) -> ShadowTarget:
    """Check that ``source`` is a task topic and ``into`` a prefix that moves every topic."""
    match = _TASKS.match(source) or _RETRY.match(source)
    if match is None:
        raise ConfigurationError(
            f"--rerun reads task records, and {source!r} is not a task topic "
            "([prefix]tasks.<capability> or a retry tier); replay a tasks topic"
        )
    if not into or not _PREFIX.match(into):
        raise ConfigurationError(
            f"--into {into!r}: give a topic-name prefix (letters, digits, '.', '_', '-'), such "
            "as 'shadow.'; every shadow topic and group is named with it"
        )
    if into == match["prefix"]:
        raise ConfigurationError(
            f"--into {into!r} is the original prefix of {source}: the shadow would write into the "
            "real topics; pick another prefix, such as 'shadow.'"
        )
    return ShadowTarget(
        source=source, capability=match["capability"], original_prefix=match["prefix"], into=into
    )


@dataclass
class RerunReport:
    """What a rerun published and, with an in-process shadow worker, what came of it."""

    source: str
    into: str
    shadow_topic: str
    ledger_topic: str
    capability: str
    published: int = 0
    positions: list[tuple[int, int]] = field(default_factory=list)
    """(partition, offset) of each shadow task, in publishing order."""
    task_ids: list[str | None] = field(default_factory=list)
    """The event id of each shadow task; None for a record that is not a task."""
    ran: bool = False
    succeeded: int = 0
    failed: int = 0
    dead_lettered: int = 0
    unrecorded: int = 0
    """Shadow tasks that failed because they asked for a tool call the original never made."""
    deadlines_cleared: int = 0
    """Shadow tasks whose original had a deadline, which the copy does not keep."""
    seconds: float = 0.0
    engine: str | None = None
    """The engine the shadow worker ran (``--engine``), or None for the deployment's own."""

    def worker_command(self) -> str:
        return (
            f"EXPEDITER_TOPIC_PREFIX={self.into} EXPEDITER_LEDGER_TOPIC={self.ledger_topic} "
            f"expediter worker agents/<the {self.capability} agent>.py"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "into": self.into,
            "shadow_topic": self.shadow_topic,
            "ledger_topic": self.ledger_topic,
            "capability": self.capability,
            "published": self.published,
            "ran": self.ran,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "dead_lettered": self.dead_lettered,
            "unrecorded": self.unrecorded,
            "deadlines_cleared": self.deadlines_cleared,
            "engine": self.engine,
            "seconds": round(self.seconds, 3),
            "next": f"expediter diff {self.into}",
        }


def recorded_only(agent: Agent[Any, Any]) -> Agent[Any, Any]:
    """``agent`` with every tool replaced by one that refuses to run: the ToolBox returns the
    recorded result before it would call the tool, so only unrecorded calls reach the refusal."""

    def refuse(item: Tool[Any, Any]) -> Tool[Any, Any]:
        async def run(args: Any) -> Any:
            raise PermanentError(
                f"shadow re-run: tool {item.name!r} has no recorded result for this task in the "
                "original ledger (the original run never made this call), and a shadow run "
                "performs no side effects; the handler now calls tools differently",
                code="shadow-unrecorded",
            )

        return dataclasses.replace(item, run=run)

    tools = [refuse(item) if isinstance(item, Tool) else item for item in agent.tools]
    return dataclasses.replace(agent, tools=tools)


async def publish_shadow(
    settings: KafkaSettings,
    reader: HistoryReader,
    records: Sequence[Record],
    target: ShadowTarget,
) -> tuple[RerunReport, dict[TopicPartition, int]]:
    """Create the shadow topics and publish ``records`` to them in one transaction.

    Returns the report and, for :func:`run_shadow`, where the shadow results and DLQ ended
    before publishing (earlier reruns into the same prefix left outcomes there).
    """
    if not records:
        raise ConfigurationError(f"empty range: no task of {target.source} to re-run")
    topics = await reader.topics()
    source_partitions = topics[target.source]
    names, original = target.names, TopicNames(target.original_prefix)
    wanted = {
        target.tasks: (source_partitions, {}),
        names.results: (topics.get(original.results, source_partitions), {}),
        names.dlq(target.capability): (topics.get(original.dlq(target.capability), 1), {}),
        names.registry: (1, {"cleanup.policy": "compact"}),
    }
    await _create(reader, wanted)
    topics = await reader.topics(refresh=True)
    same_layout = topics[target.tasks] == source_partitions
    marks = await _ends(reader, [names.results, names.dlq(target.capability)], topics)
    report = RerunReport(
        source=target.source, into=target.into, shadow_topic=target.tasks,
        ledger_topic=target.ledger, capability=target.capability,
    )  # fmt: skip
    producer = AIOKafkaProducer(
        **client_options(settings),
        transactional_id=f"expediter-rerun.{target.tasks}.{uuid.uuid4().hex[:8]}",
        acks="all",
        enable_idempotence=True,
    )
    try:
        async with connected(producer, settings), producer.transaction():
            futures = []
            for record in records:
                value, headers = _shadow_copy(record)
                report.deadlines_cleared += value is not record.value
                futures.append(
                    await producer.send(
                        target.tasks, value, key=record.key, headers=headers,
                        partition=record.partition if same_layout else None,
                    )
                )  # fmt: skip
            # Delivered before the commit, inside the transaction: aiokafka commits over a
            # batch it failed, which would publish part of the shadow run and lose the rest.
            for record, future in zip(records, futures, strict=True):
                meta = await future
                report.positions.append((meta.partition, meta.offset))
                report.task_ids.append(_event_id(record.value))
    except KafkaError as exc:
        raise BrokerError(
            f"publishing the shadow tasks to {target.tasks} failed and nothing was published "
            f"({exc!r}); check the broker and run the same command again"
        ) from exc
    report.published = len(records)
    return report, marks


def _shadow_copy(record: Record) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The value and headers of ``record``'s shadow: the same, less a task's deadline."""
    skipped = (SHADOW_HEADER, ORIGINAL_DEADLINE_HEADER)
    headers = [(n, v) for n, v in record.headers or () if n not in skipped]
    origin = f"{record.topic}/{record.partition}/{record.offset}"
    headers.append((SHADOW_HEADER, origin.encode()))
    value = record.value
    try:
        task = decode(value, TaskEvent)
    except DecodeError:
        return value, headers  # not a task: byte for byte, the shadow worker dead-letters it
    if task.deadline is not None:
        headers.append((ORIGINAL_DEADLINE_HEADER, iso_deadline(task.deadline).encode()))
        # Only the field changes: fields this reader does not know stay as they were.
        value = with_deadline(json.loads(value or b"{}"), None)
    return value, headers


async def run_shadow(
    settings: KafkaSettings,
    report: RerunReport,
    agent: Agent[Any, Any],
    marks: dict[TopicPartition, int],
    *,
    timeout: float = 300.0,
    engine: str | None = None,
) -> RerunReport:
    """Run ``agent`` in-process on the shadow topics until every shadow task has a result or a
    dead letter, then stop it (drained, committed, out of the shadow group). ``engine`` names
    the engine to run instead of the configured one (see :func:`candidate_settings`)."""
    if agent.capability != report.capability:
        raise ConfigurationError(
            f"--run: the agent's capability is {agent.capability!r}, the tasks are "
            f"{report.capability!r}; run the {report.capability} agent's file"
        )
    worker_settings = WorkerSettings().model_copy(
        update={
            "topic_prefix": report.into,
            "ledger_topic": report.ledger_topic,
            "instance": f"shadow-{uuid.uuid4().hex[:8]}",
            "http_port": 0,
            "static_membership": False,
        }
    )
    engine_settings = EngineSettings.from_env()
    if engine is not None:
        engine_settings = candidate_settings(engine_settings, engine)
        report.engine = engine
    running_engine = engine_from_settings(engine_settings, rules=agent.rules)
    worker = Worker(recorded_only(agent), running_engine, kafka=settings, settings=worker_settings)
    started = time.monotonic()
    running = asyncio.create_task(worker.run())
    try:
        await _follow(settings, report, marks, running, timeout)
    finally:
        worker.request_stop()
        budget = worker_settings.drain_seconds + worker_settings.hard_deadline_seconds
        await asyncio.wait({running}, timeout=budget)
        if not running.done():
            running.cancel()
    if running.done() and not running.cancelled() and running.exception() is not None:
        raise ExpediterError(f"the shadow worker crashed: {running.exception()!r}")
    report.ran = True
    report.seconds = time.monotonic() - started
    return report


async def _follow(
    settings: KafkaSettings,
    report: RerunReport,
    marks: dict[TopicPartition, int],
    running: asyncio.Task[None],
    timeout: float,
) -> None:
    """Read the shadow results and DLQ from ``marks`` until each shadow task has an outcome."""
    ids = {task_id for task_id in report.task_ids if task_id is not None}
    positions = set(report.positions)
    settled_ids: set[str] = set()
    settled_positions: set[tuple[int, int]] = set()
    results_topic = TopicNames(report.into).results

    def left() -> int:
        return sum(
            1
            for position, task_id in zip(report.positions, report.task_ids, strict=True)
            if position not in settled_positions and (task_id is None or task_id not in settled_ids)
        )

    consumer = AIOKafkaConsumer(
        **client_options(settings), group_id=None, enable_auto_commit=False,
        isolation_level="read_committed",
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    async with connected(consumer, settings):
        consumer.assign(list(marks))
        for tp, offset in marks.items():
            consumer.seek(tp, offset)
        while left():
            if running.done():
                running.result()  # a crash raises here
                raise ExpediterError("the shadow worker stopped before the shadow tasks were done")
            if time.monotonic() > deadline:
                raise ExpediterError(
                    f"the shadow worker did not finish {left()} of {report.published} shadow "
                    f"tasks within {timeout:.0f}s; they stay in {report.shadow_topic}: raise "
                    f"--timeout, or finish them with `{report.worker_command()}`"
                )
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    document = _json(record.value)
                    if tp.topic == results_topic:
                        task_id = str(document.get("task_id"))
                        if task_id in ids and task_id not in settled_ids:
                            settled_ids.add(task_id)
                            _count_result(report, document)
                    elif document.get("source_topic") == report.shadow_topic:
                        where = (document.get("source_partition"), document.get("source_offset"))
                        if where in positions:
                            settled_positions.add(where)
                            report.dead_lettered += 1


def _count_result(report: RerunReport, document: dict[str, Any]) -> None:
    if document.get("status") == "succeeded":
        report.succeeded += 1
        return
    report.failed += 1
    error = document.get("error")
    if isinstance(error, dict) and error.get("code") == "shadow-unrecorded":
        report.unrecorded += 1


def _json(value: bytes | None) -> dict[str, Any]:
    try:
        document = json.loads(value) if value is not None else None
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _event_id(value: bytes | None) -> str | None:
    found = _json(value).get("event_id")
    return str(found) if found is not None else None


async def _create(reader: HistoryReader, wanted: dict[str, tuple[int, dict[str, str]]]) -> None:
    topics = await reader.topics()
    missing = {name: spec for name, spec in wanted.items() if name not in topics}
    if not missing:
        return
    admin = reader.admin
    try:
        cluster: dict[str, Any] = await admin.describe_cluster()
        replication = max(1, min(3, len(cluster["brokers"])))
        response = await admin.create_topics(
            [
                NewTopic(name, partitions, replication, topic_configs=configs)
                for name, (partitions, configs) in missing.items()
            ]
        )
    except KafkaError as exc:
        raise BrokerError(f"creating the shadow topics failed: {exc!r}; check the broker") from exc
    failed = [
        f"{topic} (error {code})"
        for topic, code, *_ in response.topic_errors
        if code not in (0, _TOPIC_ALREADY_EXISTS)
    ]
    if failed:
        raise BrokerError(
            f"creating the shadow topics failed: {', '.join(failed)}; fix the cause (or create "
            "them with `expediter topics apply --prefix <prefix>`) and run again"
        )
    deadline = time.monotonic() + _SETTLE_SECONDS
    # A new topic reaches every broker's metadata a moment after CreateTopics returns.
    while set(missing) - set(await reader.topics(refresh=True)):
        if time.monotonic() > deadline:
            raise BrokerError(
                f"the shadow topics {', '.join(missing)} were created but do not show after "
                f"{_SETTLE_SECONDS:.0f}s; check the brokers"
            )
        await asyncio.sleep(0.1)


async def _ends(
    reader: HistoryReader, names: Sequence[str], topics: dict[str, int]
) -> dict[TopicPartition, int]:
    tps = [TopicPartition(name, p) for name in names for p in range(topics[name])]
    try:
        ends: dict[TopicPartition, int] = await reader.consumer.end_offsets(tps)
    except KafkaError as exc:
        raise BrokerError(f"reading the shadow topics' offsets failed: {exc!r}") from exc
    return ends
