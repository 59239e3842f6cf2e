"""The orchestrator's Faust app: the workflow table, the command and result streams, the timer.

- ``workflows.commands`` (start, expire) and ``results`` are read by agents that update the
  Faust table ``workflows`` (keyed by workflow id; changelog: the compacted
  ``expediter-orchestrator-workflows-changelog``). All three are co-partitioned (the topic
  catalog's ``workflows`` group), so the stream that reads a workflow's records owns its entry.
- Processing is exactly-once (Faust's ``exactly_once``: Kafka transactions per partition): the
  table update, the next tasks, the workflow events and the completion commit with the offset
  of the record that caused them. A replica killed with -9 leaves nothing half-done; the next
  owner restores the table from the changelog and goes on, and no workflow completes twice.
- Deadlines: a timer scans the local table and sends ``expire`` commands for overdue steps.
  Nothing waits in memory: the command is handled in the stream like a result, so deadlines
  survive restarts.

Called by ``expediter orchestrator`` (expediter.cli.orchestrator) and the tests.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from expediter.errors import DecodeError
from expediter.events import (
    ResultEvent,
    TraceParent,
    WorkflowCommand,
    continue_trace,
    decode,
    to_record,
)
from expediter.messaging import TopicNames, client_options
from expediter.orchestrator.defining import Workflow
from expediter.orchestrator.state import WorkflowState
from expediter.orchestrator.stepping import PRODUCER, Effects, apply_result, expire, overdue, start
from expediter.settings import KafkaSettings, OrchestratorSettings

__all__ = ["APP_ID", "build_app"]

APP_ID = "expediter-orchestrator"
"""Faust names the table's changelog ``<app id>-workflows-changelog``: the catalog lists it."""

log = logging.getLogger("expediter.orchestrator")


def _broker(kafka: KafkaSettings) -> dict[str, Any]:
    servers = ";".join(f"kafka://{server}" for server in kafka.bootstrap_servers)
    options: dict[str, Any] = {"broker": servers}
    client = client_options(kafka)
    if kafka.security_protocol.startswith("SASL_"):
        options["broker_credentials"] = faust.SASLCredentials(
            username=client["sasl_plain_username"],
            password=client["sasl_plain_password"],
            mechanism=client["sasl_mechanism"],
            ssl_context=client.get("ssl_context"),
        )
    elif kafka.security_protocol == "SSL":
        options["broker_credentials"] = client["ssl_context"]
    return options


def build_app(
    kafka: KafkaSettings, settings: OrchestratorSettings, workflows: dict[str, Workflow]
) -> faust.App:
    names = TopicNames(settings.topic_prefix)
    app = faust.App(
        f"{settings.topic_prefix}{APP_ID}",
        **_broker(kafka),
        store="memory://",
        processing_guarantee="exactly_once",
        table_standby_replicas=settings.standby_replicas,
        topic_replication_factor=1,
        topic_allow_declare=False,  # topics come from topics/topics.yaml (`topics apply`)
        topic_disable_leader=True,
        web_enabled=settings.http_port > 0,
        web_bind=settings.http_host,
        web_port=settings.http_port or 8081,
        web_host=settings.http_host,
        datadir=str(settings.data_dir),
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        # Faust insists on request timeout > session timeout (60 s by default).
        broker_request_timeout=max(kafka.request_timeout_ms / 1000, 90.0),
    )
    commands = app.topic(names.commands, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")  # fmt: skip
    results = app.topic(names.results, key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw")  # fmt: skip
    # Keys are the raw workflow id (Faust's default key codec is raw), values JSON: the
    # changelog stays readable by `expediter status` and by any Kafka tool.
    table = app.Table("workflows", default=None, key_type=str)

    async def publish(effects: Effects, trace: TraceParent) -> None:
        for task in effects.tasks:
            record = to_record(task, trace=trace.child())
            await app.topic(names.tasks(task.capability)).send(
                key=record.key, value=record.value, headers=record.headers,
                key_serializer="raw", value_serializer="raw",
            )  # fmt: skip
        for event in effects.events:
            record = to_record(event, trace=trace.child())
            await app.topic(names.workflow_events).send(
                key=record.key, value=record.value, headers=record.headers,
                key_serializer="raw", value_serializer="raw",
            )  # fmt: skip
        if effects.completion is not None:
            record = to_record(effects.completion, trace=trace.child())
            await app.topic(names.completed).send(
                key=record.key, value=record.value, headers=record.headers,
                key_serializer="raw", value_serializer="raw",
            )  # fmt: skip

    def load(workflow_id: str) -> WorkflowState | None:
        value = table.get(workflow_id)
        return WorkflowState.model_validate(value) if value else None

    def save(state: WorkflowState) -> None:
        table[state.workflow_id] = state.model_dump(mode="json")

    @app.agent(commands)
    async def on_command(stream: Any) -> Any:
        async for event in stream.events():
            trace = _trace(event)
            try:
                command = decode(event.value, WorkflowCommand)
            except DecodeError as exc:
                log.error("undecodable command at %s: %s", event.message.offset, exc)
                continue
            workflow = workflows.get(command.workflow)
            now = datetime.now(UTC)
            state = load(command.workflow_id)
            if command.action == "start":
                if state is not None:
                    continue  # a resubmission of the same id: the first one stands
                if workflow is None:
                    log.error(
                        "unknown workflow %r (known: %s)", command.workflow, sorted(workflows)
                    )
                    continue
                state, effects = start(workflow, command.workflow_id, command.input, now)
            elif state is None or workflow is None or command.step_id is None:
                continue
            else:
                effects = expire(workflow, state, command.step_id, command.attempt or 0, now)
            save(state)
            await publish(effects, trace)

    @app.agent(results)
    async def on_result(stream: Any) -> Any:
        async for event in stream.events():
            trace = _trace(event)
            try:
                result = decode(event.value, ResultEvent)
            except DecodeError as exc:
                log.error("undecodable result at %s: %s", event.message.offset, exc)
                continue
            state = load(result.workflow_id)
            workflow = workflows.get(state.workflow) if state else None
            if state is None or workflow is None:
                continue  # a result for a task no workflow sent (`expediter submit <capability>`)
            effects = apply_result(workflow, state, result, datetime.now(UTC))
            save(state)
            await publish(effects, trace)

    sent: dict[tuple[str, str, int], float] = {}

    @app.timer(settings.deadline_scan_seconds)  # type: ignore[untyped-decorator]
    async def scan_deadlines() -> None:
        now = datetime.now(UTC)
        due: list[WorkflowCommand] = []
        for workflow_id, value in list(table.items()):
            if not value:
                continue
            state = WorkflowState.model_validate(value)
            for step_id, attempt in overdue(state, now):
                key = (workflow_id, step_id, attempt)
                # Not a source of truth, only a damper: a lost entry means one more command,
                # and `expire` ignores commands that are stale.
                if time.monotonic() - sent.get(key, 0.0) < 10:
                    continue
                sent[key] = time.monotonic()
                due.append(
                    WorkflowCommand(
                        producer=PRODUCER,
                        action="expire",
                        workflow_id=workflow_id,
                        workflow=state.workflow,
                        step_id=step_id,
                        attempt=attempt,
                    )
                )
        if not due:
            return
        # Its own idempotent producer, started only when a deadline passed (rare): the timer
        # runs outside any stream, so outside Faust's per-partition transactions.
        producer = AIOKafkaProducer(**client_options(kafka), enable_idempotence=True)
        await producer.start()
        try:
            for command in due:
                record = to_record(command)
                await producer.send(
                    names.commands, record.value, key=record.key, headers=record.headers
                )
            await producer.flush()
        finally:
            await producer.stop()

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"alive": True})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = not app.rebalancing and app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        return web.json({"ready": ready}, status=200 if ready else 503)

    return app


def _trace(event: Any) -> TraceParent:
    """A child of the incoming record's trace (tasks, events and completions continue it)."""
    return continue_trace(list(event.message.headers or ()))
