"""A transaction of the orchestrator commits only when every record in it was delivered.

aiokafka fails a batch (no leader past the request timeout; a record the broker refuses)
without aborting the transaction, and commits over it, offsets included. The orchestrator's
producer (expediter.orchestrator.delivering) waits for each record's delivery before the commit;
one failed delivery aborts the transaction and stops the process, and the next process handles
the records again. A broker refusal stands in for an outage here: it fails the batch the same
way, deterministically.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from expediter.dev import Broker
from expediter.events import OutgoingRecord, WorkflowEvent, decode
from expediter.messaging import TopicNames, client_options, connected
from expediter.orchestrator.delivering import Producer, UndeliveredError, Write, delivered
from expediter.orchestrator.running import build_app
from expediter.settings import KafkaSettings, OrchestratorSettings
from tests.e2e.test_orchestrator import env, fleet, logs, orchestrator  # noqa: F401
from tests.support import cli, read, terminate

pytestmark = pytest.mark.slow


async def _max_message_bytes(settings: KafkaSettings, topic: str, value: int) -> None:
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(value)}
        )
        await admin.alter_configs([resource])


async def test_delivered_raises_for_a_record_the_broker_refused(
    kafka: Broker, topic_name: str
) -> None:
    """Real aiokafka delivery futures: one refused record among delivered ones is reported."""
    async with connected(AIOKafkaAdminClient(**client_options(kafka.settings)),
                         kafka.settings) as admin:  # fmt: skip
        small = NewTopic(topic_name, 1, 1, topic_configs={"max.message.bytes": "200"})
        await admin.create_topics([small])
    producer = AIOKafkaProducer(**client_options(kafka.settings), enable_idempotence=True)
    async with connected(producer, kafka.settings):
        fine = [await producer.send(topic_name, b"small") for _ in range(3)]
        await delivered(fine, "t-ok")  # all arrived: no error
        arrived = await producer.send(topic_name, b"small")
        await arrived  # its own batch: the broker refuses a whole batch
        refused = await producer.send(topic_name, b"x" * 1000)
        mixed = [arrived, refused]
        with pytest.raises(UndeliveredError, match=r"t-1: 1 of 2 records were not delivered"):
            await delivered(mixed, "t-1")
        await producer.flush()  # what aiokafka's commit does: it returns, failure or not
        assert refused.done()
        assert refused.exception() is not None


async def test_a_failed_delivery_aborts_the_transaction_and_the_restart_completes_it(
    kafka: Broker,
    env: dict[str, str],  # noqa: F811
    fleet: list[subprocess.Popen[bytes]],  # noqa: F811
    logs: Path,  # noqa: F811
) -> None:
    """field-a has pests, so its map task goes to tasks.crop-mapping, which refuses it: that
    transaction (table update, step events, the task) must not commit. Before the fix it did:
    the table said the map step was running, no task existed, and the workflow waited for its
    deadline."""
    names = TopicNames(env["EXPEDITER_TOPIC_PREFIX"])
    maps = names.tasks("crop-mapping")
    await _max_message_bytes(kafka.settings, maps, 100)
    first = orchestrator(env, logs / "orchestrator-1.log")
    try:
        submit = cli(["submit", "field-analysis", "--input", '{"field_id": "field-a"}',
                      "--json"], env, 60)  # fmt: skip
        assert submit.returncode == 0, submit.stderr
        workflow_id = json.loads(submit.stdout)["workflow_id"]
        code = await asyncio.to_thread(first.wait, 120)
    finally:
        if first.poll() is None:
            terminate(first)
    assert code != 0, "the orchestrator went on after a transaction lost a record"
    assert "were not delivered" in (logs / "orchestrator-1.log").read_text(errors="replace")

    # Nothing of the aborted transaction is visible: the map step never started.
    status = cli(["status", workflow_id, "--json"], env)
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["state"]["steps"]["map"]["status"] == "pending"
    started = [e["step_id"] for e in document["history"] if e["status"] == "step-started"]
    assert sorted(started) == ["pests", "soil"]

    await _max_message_bytes(kafka.settings, maps, 1_048_588)  # Kafka's default again
    second = orchestrator(env, logs / "orchestrator-2.log")
    try:
        await read(kafka.settings, names.completed, until=bool, timeout=180)
        await asyncio.sleep(3)  # a second completion would show up now
        records = await read(kafka.settings, names.completed, until=bool)
    finally:
        terminate(second)
    completions = Counter(
        (decode(r.value, WorkflowEvent).workflow_id, decode(r.value, WorkflowEvent).status)
        for r in records
    )
    assert completions == {(workflow_id, "completed"): 1}


async def test_a_commit_comes_before_or_after_all_of_a_handled_records_writes(
    kafka: Broker, topic_name: str, tmp_path: Path
) -> None:
    """A commit that falls due while a handled record's writes are being enqueued waits for
    all of them. Before the fix each write took the transaction's lock on its own, the commit
    ran between two of them and committed the table update without the step's events; a
    kill -9 right after left a workflow that never completed (a CI run lost one of 200)."""
    async with connected(AIOKafkaAdminClient(**client_options(kafka.settings)),
                         kafka.settings) as admin:  # fmt: skip
        await admin.create_topics([NewTopic(topic_name, 1, 1)])
    settings = OrchestratorSettings(data_dir=tmp_path, http_port=0, topic_prefix=topic_name)
    producer = cast(Producer, build_app(kafka.settings, settings, {}).producer)
    transaction = f"{topic_name}-0"
    await producer.start()
    try:
        await producer.begin_transaction(transaction)
        # The real producer, made to yield on each record as it does when its buffer is full.
        aiokafka = producer._transaction_producers[transaction]
        enqueue = aiokafka.send

        async def slow_send(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0.05)
            return await enqueue(*args, **kwargs)

        aiokafka.send = slow_send
        record = OutgoingRecord(key=b"wf-1", value=b"{}", headers=[])
        writes = [Write(topic_name, record._replace(value=b'{"n": %d}' % n)) for n in range(3)]
        sending = asyncio.create_task(producer.send_together(transaction, writes))
        await asyncio.sleep(0.01)  # the first write is on its way
        source = TopicPartition(topic_name, 0)  # any partition: the offset is what commits
        await producer.commit_transactions({transaction: {source: 0}}, f"{topic_name}-group")
        assert sending.done(), "the commit ran while the record's writes were being enqueued"
        committed = await read(kafka.settings, topic_name, until=lambda r: len(r) >= 3)
        assert [r.value for r in committed] == [w.record.value for w in writes]
    finally:
        await producer.stop()
