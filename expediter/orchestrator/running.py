"""The orchestrator's Faust app: the workflow table, the command and result streams, the timer.

- ``workflows.commands`` (start, expire) and ``results`` are read by agents that update the
  Faust table ``workflows`` (keyed by workflow id; changelog: the compacted
  ``expediter-orchestrator-workflows-changelog``). All three are co-partitioned (the topic
  catalog's ``workflows`` group), so the stream that reads a workflow's records owns its entry.
- Processing is exactly-once: the table update, the next tasks, the workflow events and the
  completion commit in one Kafka transaction with the offset of the record that caused them. A
  replica killed with -9 leaves nothing half-done; the next owner restores the table from the
  changelog (read_committed) and goes on, and no workflow completes twice.

  Faust's ``exactly_once`` opens one transaction per source partition and commits the offsets
  in it, but its own sends do not go there (faust-streaming#177): ``Topic.send`` picks the
  transaction by the *destination's* partition, and table changelog writes go through the plain
  producer, unflushed at commit time. A kill -9 then loses some workflows and completes others
  twice. So every write here names the transaction of the record being handled
  (:func:`_transaction_of`), and the table writes its changelog the same way
  (:class:`WorkflowTable`). A record's writes are decided first and enqueued together, under
  the lock that Faust's commit (offsets, then commit) takes too, which makes each handled
  record's writes and its offset one atomic unit. Which offset of a partition
  may commit is worked out by :mod:`expediter.orchestrator.consuming` (Faust's own rule can
  stop committing a partition for good after a rebalance), and a transaction commits only once
  every record in it was delivered (:mod:`expediter.orchestrator.delivering`; aiokafka commits
  over failed records).
- A record that cannot be handled (undecodable, an unknown workflow, handling that raises)
  becomes a dead letter in ``dlq.orchestrator``, in the record's transaction
  (:mod:`expediter.orchestrator.deadlettering`); a workflow's own code that raises fails that
  workflow (:mod:`expediter.orchestrator.stepping`). Neither stops the stream.
- Deadlines: a timer sends ``expire`` commands for overdue steps and approvals. The deadlines
  are in the table; the timer finds the due ones in an index of them
  (:mod:`expediter.orchestrator.scheduling`), rebuilt from the table after each rebalance, so a
  scan costs what is due, not what waits. The command is handled in the stream like a result,
  so deadlines survive restarts.
- Retention: a finished workflow leaves the table ``finished_retention_seconds`` after it
  ended (:mod:`expediter.orchestrator.retiring`). The deletion is a tombstone in the changelog,
  sent in the transaction of a record handled on the same partition (any record: the table
  shrinks as a side effect of the traffic that grows it), at most :data:`RETIRE_PER_RECORD` a
  record. A partition with no traffic gets a nudge from the timer: an ``expire`` command
  without a step, keyed by the due workflow, which does nothing itself and so lets the stream
  retire what is due. A late result for a retired workflow is ignored with a log line; its
  history stays in ``workflows.events`` for ``status`` and ``trace``.
- Approvals: ``approvals.decisions`` (people's decisions, keyed by workflow id, co-partitioned)
  is a third stream on the table (:func:`~expediter.orchestrator.stepping.apply_decision`).
  Requests go to the compacted ``approvals.requests`` under their request id, and a tombstone
  follows once one is resolved, in the same transaction as the state that resolved it. A
  decision for a workflow this orchestrator does not have is a dead letter (unknown-workflow).

Called by ``expediter orchestrator`` (expediter.cli.orchestrator) and the tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import faust
from aiokafka import AIOKafkaProducer

from expediter.authoring.state import WorkflowState
from expediter.authoring.workflows import Workflow
from expediter.events import (
    ApprovalDecision,
    OutgoingRecord,
    ResultEvent,
    TraceParent,
    WorkflowCommand,
    continue_trace,
    decode,
    to_record,
)
from expediter.messaging import TopicNames, client_options
from expediter.messaging.topology import partition_for_key
from expediter.orchestrator.consuming import Consumer, OrchestratorApp
from expediter.orchestrator.deadlettering import Unhandled, dead_letter
from expediter.orchestrator.delivering import Producer, Write
from expediter.orchestrator.discovering import REFRESH_SECONDS, Discovery
from expediter.orchestrator.recovering import Tables
from expediter.orchestrator.retiring import Nudging, RecentlyRetired, RetentionIndex, retire_at
from expediter.orchestrator.scheduling import DeadlineIndex, Due
from expediter.orchestrator.stepping import (
    PRODUCER,
    Effects,
    apply_decision,
    apply_result,
    expire,
    start,
)
from expediter.settings import KafkaSettings, OrchestratorSettings

__all__ = ["APP_ID", "RETIRE_PER_RECORD", "build_app"]

APP_ID = "expediter-orchestrator"
"""Faust names the table's changelog ``<app id>-workflows-changelog``: the catalog lists it."""

log = logging.getLogger("expediter.orchestrator")

RETIRE_PER_RECORD = 500
"""The most finished workflows one handled record's transaction deletes: a burst of expiries
(a restart after a long stop) is spread over records instead of one huge transaction."""
REBUILD_CHUNK = 2000
"""Table entries the index rebuild reads between two yields to the event loop."""

Outcome = tuple[WorkflowState, Effects] | None
"""What handling one record decided: the workflow's new state and what to publish, or nothing."""


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
    app = OrchestratorApp(
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
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=settings.session_timeout_seconds / 5,
        # Faust insists on request timeout > session timeout.
        broker_request_timeout=max(
            kafka.request_timeout_ms / 1000, 90.0, settings.session_timeout_seconds + 30
        ),
        broker_commit_interval=settings.commit_interval_seconds,
        Table=WorkflowTable,
        TableManager=Tables,  # its recovery ends where the changelog's last record is
    )
    commands = app.topic(names.commands, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")  # fmt: skip
    results = app.topic(names.results, key_type=bytes, value_type=bytes,
                        key_serializer="raw", value_serializer="raw")  # fmt: skip
    decisions = app.topic(names.approval_decisions, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")  # fmt: skip
    # Values are JSON: the changelog stays readable by `expediter status` and any Kafka tool.
    table = cast(WorkflowTable, app.Table("workflows", default=None, key_type=str))
    discovery = Discovery(kafka, names, log)  # warns of capabilities no live agent serves

    @app.timer(REFRESH_SECONDS)  # type: ignore[untyped-decorator]
    async def refresh_registry() -> None:
        await discovery.refresh()

    def publish(writes: list[Write], effects: Effects, trace: TraceParent) -> None:
        for task in effects.tasks:
            writes.append(Write(names.tasks(task.capability), to_record(task, trace=trace.child())))
        for change in effects.events:
            writes.append(Write(names.workflow_events, to_record(change, trace=trace.child())))
        if effects.completion is not None:
            completion = to_record(effects.completion, trace=trace.child())
            writes.append(Write(names.completed, completion))
        for request in effects.requests:
            # Keyed by request id, compacted: the topic holds the open requests.
            record = to_record(request, trace=trace.child())
            writes.append(Write(names.approval_requests,
                                record._replace(key=request.request_id.encode())))  # fmt: skip
        for request_id in effects.resolved:
            tombstone = OutgoingRecord(key=request_id.encode(), value=None, headers=[])  # type: ignore[arg-type]
            writes.append(Write(names.approval_requests, tombstone))

    def load(workflow_id: str) -> WorkflowState | None:
        value = table.get(workflow_id)
        return WorkflowState.model_validate(value) if value else None

    index = DeadlineIndex()
    retention = RetentionIndex(settings.finished_retention_seconds)
    retired = RecentlyRetired()

    def save(writes: list[Write], event: Any, state: WorkflowState) -> None:
        value = state.model_dump(mode="json")
        table[state.workflow_id] = value
        index.track(state.workflow_id, value)
        retention.track(state.workflow_id, event.message.partition, value)
        key, _ = table.changelog_topic.prepare_key(state.workflow_id, table.key_serializer)
        data, _ = table.changelog_topic.prepare_value(value, table.value_serializer)
        # The changelog partition is the table partition, which is the handled record's.
        writes.append(Write(table.changelog_topic.get_topic_name(),
                            OutgoingRecord(key=key, value=data, headers=[]),
                            event.message.partition))  # fmt: skip

    def on_command(command: WorkflowCommand) -> Outcome:
        workflow = workflows.get(command.workflow)
        now = datetime.now(UTC)
        state = load(command.workflow_id)
        if command.action == "start":
            if state is not None:
                return None  # a resubmission of the same id (or a record read twice)
            if workflow is None:
                raise Unhandled(
                    "unknown-workflow",
                    f"no workflow {command.workflow!r} here (known: {', '.join(sorted(workflows))})"
                    "; add its file to the orchestrator's workflows folder, then redrive",
                )
            discovery.check(workflow.name, command.workflow_id,
                            [step.capability for step in workflow.steps()])  # fmt: skip
            return start(workflow, command.workflow_id, command.input, now)
        if state is None or workflow is None or command.step_id is None:
            return None
        return state, expire(workflow, state, command.step_id, command.attempt or 0, now)

    def on_decision(decision: ApprovalDecision) -> Outcome:
        state = load(decision.workflow_id)
        workflow = workflows.get(state.workflow) if state else None
        if state is None or workflow is None:
            # Recorded (a dead letter, with the reason) rather than dropped: a person's answer.
            gone = " (it finished and left the table)" if decision.workflow_id in retired else ""
            raise Unhandled(
                "unknown-workflow",
                f"decision {decision.event_id} by {decision.decider} on {decision.request_id}: "
                f"no workflow {decision.workflow_id!r} here{gone} (unknown request); ignored",
            )
        return state, apply_decision(workflow, state, decision, datetime.now(UTC))

    def on_result(result: ResultEvent) -> Outcome:
        state = load(result.workflow_id)
        workflow = workflows.get(state.workflow) if state else None
        if state is None and result.step_id != "submit":  # not `expediter submit <capability>`
            # Never a new entry: the workflow finished and left the table (or never ran here).
            # A warning: a result this late means the retention is shorter than a task's path.
            why = (
                "it finished and left the table"
                if result.workflow_id in retired
                else "no such workflow in the table (it finished and left it, or never ran)"
            )
            log.warning("result %s for %s/%s ignored: %s; if results come this late, raise "
                        "EXPEDITER_FINISHED_RETENTION_SECONDS", result.event_id,
                        result.workflow_id, result.step_id, why)  # fmt: skip
        if state is None or workflow is None:
            return None
        return state, apply_result(workflow, state, result, datetime.now(UTC))

    def retire(writes: list[Write], event: Any) -> None:
        """Delete the finished workflows of ``event``'s partition whose retention ended, in
        ``event``'s transaction (the changelog partition is the handled record's)."""
        partition = event.message.partition
        now = time.time()
        for workflow_id in retention.due(partition, now, RETIRE_PER_RECORD):
            value = table.data.get(workflow_id)
            at = retire_at(value, retention.retention)
            if at is None or at > now:
                retention.track(workflow_id, partition, value)  # it changed since: keep it
                continue
            del table[workflow_id]
            index.track(workflow_id, None)
            retired.add(workflow_id)
            key, _ = table.changelog_topic.prepare_key(workflow_id, table.key_serializer)
            tombstone = OutgoingRecord(key=key, value=None, headers=[])  # type: ignore[arg-type]
            writes.append(Write(table.changelog_topic.get_topic_name(), tombstone, partition))
            log.debug("workflow %s left the table (finished, retention over)", workflow_id)

    async def handle(event: Any, model: type[Any], decide: Callable[[Any], Outcome]) -> None:
        # Decided first, then written as one unit: a commit of the record's transaction comes
        # before all of its writes or after all of them (expediter.orchestrator.delivering).
        # aiokafka would commit the transaction even if a record failed; the app's producer
        # keeps each delivery future and commits only once every record arrived; otherwise it
        # aborts and crashes the app, and the records are handled again after the restart.
        writes: list[Write] = []
        decide_writes(writes, event, model, decide)
        retire(writes, event)
        producer = cast(Producer, app.producer)
        await producer.send_together(_transaction_of(app, event), writes)

    def decide_writes(
        writes: list[Write], event: Any, model: type[Any], decide: Callable[[Any], Outcome]
    ) -> None:
        try:
            outcome = decide(decode(event.value, model))
        except Exception as exc:
            # A record that cannot be handled must not stop the stream (each restart would
            # read it again): it becomes a dead letter, committed with its offset. Only the
            # deciding is guarded; a failed write below is the broker's, and crashes the app.
            letter = dead_letter(event.message, exc, PRODUCER)
            log.error("dead letter %s[%d]@%d (%s): %s", letter.source_topic,
                      letter.source_partition, letter.source_offset, letter.reason,
                      letter.detail)  # fmt: skip
            writes.append(Write(names.orchestrator_dlq, to_record(letter, trace=_trace(event))))
            return
        if outcome is not None:
            state, effects = outcome
            save(writes, event, state)
            publish(writes, effects, _trace(event))

    app.agent(commands, name=f"{APP_ID}.commands")(
        _handling(app, WorkflowCommand, on_command, handle)
    )
    app.agent(results, name=f"{APP_ID}.results")(_handling(app, ResultEvent, on_result, handle))
    app.agent(decisions, name=f"{APP_ID}.decisions")(
        _handling(app, ApprovalDecision, on_decision, handle)
    )

    built: list[int | None] = [None]  # the consumer generation the indexes were built in
    nudging = Nudging()

    def busy() -> bool:
        return bool(app.rebalancing or app.in_recovery
                    or not app.tables.recovery.completed.is_set())  # type: ignore[attr-defined]  # fmt: skip

    async def rebuild(generation: int | None) -> bool:
        """Both indexes from the table, a chunk at a time (the loop goes on between chunks;
        what is saved meanwhile is tracked by ``save`` and read again here, current)."""
        index.rebuild([])
        retention.clear()
        partitions = app.consumer.topic_partitions(names.commands)
        restored = getattr(table.data, "_key_partition", {})  # Faust's memory store: key -> tp
        keys = list(table.data.keys())
        for n, key in enumerate(keys, 1):
            value = table.data.get(key)
            index.track(key, value)
            index.cost.rebuild_examined += 1
            partition = restored.get(key)
            if partition is None and partitions:
                partition = partition_for_key(key.encode(), partitions)
            if partition is not None:
                retention.track(key, partition, value)
            if n % REBUILD_CHUNK == 0:
                await asyncio.sleep(0)
                if busy() or app.consumer_generation_id != generation:
                    return False  # a rebalance began: the next scan starts over
        log.info("table: %d workflows on this replica, %d of them finished (they leave it "
                 "%gs after they end), %d deadlines", len(keys), len(retention),
                 retention.retention, len(index))  # fmt: skip
        return True

    def nudges(now: float) -> list[WorkflowCommand]:
        """An ``expire`` without a step for each partition whose due retirements no record
        came to carry: handling it retires them (:func:`retire`)."""
        found = []
        for workflow_id in nudging.due(retention, now):
            workflow = (table.data.get(workflow_id) or {}).get("workflow") or "unknown"
            found.append(WorkflowCommand(producer=PRODUCER, action="expire",
                                         workflow_id=workflow_id, workflow=workflow))  # fmt: skip
        return found

    @app.timer(settings.deadline_scan_seconds)  # type: ignore[untyped-decorator]
    async def scan_deadlines() -> None:
        if busy():
            return  # the table is being restored: the indexes are rebuilt once it is
        generation = app.consumer_generation_id
        if built[0] != generation:
            # After a rebalance (and at start) the table holds other partitions: read it once.
            if not await rebuild(generation):
                return
            built[0] = generation
        now = datetime.now(UTC).timestamp()
        due = index.due(now)
        commands = [_expiry(entry, table.get(entry.workflow_id)) for entry in due]
        commands.extend(nudges(now))
        if not commands:
            return
        # Its own idempotent producer, started only when a deadline passed (rare; or a nudge,
        # on a partition with no traffic, which the next scan sends again if it fails): the timer
        # runs outside any stream, so outside Faust's per-partition transactions.
        producer = AIOKafkaProducer(**client_options(kafka), enable_idempotence=True)
        await producer.start()
        try:
            deliveries = []
            for command in commands:
                record = to_record(command)
                deliveries.append(await producer.send(
                    names.commands, record.value, key=record.key, headers=record.headers
                ))  # fmt: skip
            # flush() ignores failed records: their outcomes are read here instead.
            outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
        finally:
            await producer.stop()
        for entry, outcome in zip(due, outcomes[: len(due)], strict=True):
            if isinstance(outcome, BaseException):
                index.retry(entry)  # the next scan sends it again
                log.warning("expire command for %s not sent: %r", entry.workflow_id, outcome)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"alive": True})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = not app.rebalancing and app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        return web.json({"ready": ready}, status=200 if ready else 503)

    return app


class WorkflowTable(faust.Table[str, Any]):
    """Faust's table, minus its own changelog writes: :func:`build_app`'s ``save`` and
    ``retire`` write them."""

    def on_key_set(self, key: Any, value: Any) -> None:
        # Faust would send the changelog record through the plain producer, outside the
        # transaction that commits the offset of the record that caused the change.
        return None

    def on_key_del(self, key: Any) -> None:
        # The same for a deletion's tombstone. Faust's memory store keeps the partition of each
        # key it restored and never forgets one deleted since: drop it, or it grows for good.
        getattr(self.data, "_key_partition", {}).pop(key, None)


def _handling(app: faust.App, model: type[Any], decide: Any, handle: Any) -> Any:
    """The agent that calls ``handle(event, model, decide)`` for each record, one at a time.

    A record is marked handled once ``handle`` returns (with its writes, or its dead letter; see
    :mod:`expediter.orchestrator.consuming`); an exception (a failed send) crashes the app.
    """

    async def agent(stream: Any) -> None:
        async for event in stream.events():
            await handle(event, model, decide)
            cast(Consumer, app.consumer).handled(event.message)

    return agent


def _expiry(entry: Due, value: Any) -> WorkflowCommand:
    """The ``expire`` command for a due deadline (the stream checks it against the state)."""
    workflow = (value or {}).get("workflow") or "unknown"
    return WorkflowCommand(
        producer=PRODUCER, action="expire", workflow_id=entry.workflow_id, workflow=workflow,
        step_id=entry.step_id, attempt=entry.attempt,
    )  # fmt: skip


def _transaction_of(app: faust.App, event: Any) -> str:
    """The transactional id Faust commits ``event``'s offset with (TransactionManager.commit)."""
    tp = event.message.tp
    return f"{app.conf.id}-{app.assignor.group_for_topic(tp.topic)}-{tp.partition}"


def _trace(event: Any) -> TraceParent:
    """A child of the incoming record's trace (tasks, events and completions continue it)."""
    return continue_trace(list(event.message.headers or ()))
