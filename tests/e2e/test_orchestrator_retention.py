"""A bounded orchestrator table, on a real broker: a finished workflow leaves the table after its
retention (a tombstone in the changelog), `status` still shows it, a late result for it is
ignored (with a warning) instead of bringing it back, and a restarted orchestrator does not
restore it."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from expediter.dev import Broker
from expediter.events import Producer, ResultEvent, WorkflowEvent, decode, to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.messaging.partitionreading import PartitionReader, Record
from expediter.settings import KafkaSettings
from tests.polling import until
from tests.support import cli, spawn, terminate

pytestmark = pytest.mark.slow

INSTANT = """
from expediter import Step, Workflow

workflow = Workflow(
    name="instant",
    stages=[Step("never", "probe", lambda s: {}, when=lambda s: False)],
    report=lambda s: {"done": True},
)
"""
RETENTION = 2.0


@pytest.fixture
def env(kafka: Broker, tmp_path: Path) -> dict[str, str]:
    prefix = f"r{uuid.uuid4().hex[:8]}."
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EXPEDITER_")},
        "EXPEDITER_BOOTSTRAP": kafka.bootstrap,
        "EXPEDITER_TOPIC_PREFIX": prefix,
        "EXPEDITER_HTTP_PORT": "0",
        "EXPEDITER_DATA_DIR": str(tmp_path / "faust"),
        "EXPEDITER_CACHE_DIR": os.environ.get("EXPEDITER_CACHE_DIR", ""),
        "EXPEDITER_FINISHED_RETENTION_SECONDS": str(RETENTION),
    }
    applied = cli(["topics", "apply", "--prefix", prefix, "--json"], env)
    assert applied.returncode == 0, applied.stderr
    return env


@pytest.fixture
def workflows(tmp_path: Path) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "instant.py").write_text(INSTANT)
    return folder


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for log in sorted(tmp_path.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")


async def changelog(settings: KafkaSettings, names: TopicNames, workflow_id: str) -> list[Record]:
    async with PartitionReader(settings) as reader:
        return await reader.read_key(
            names.changelog, workflow_id.encode(), match=json.dumps(workflow_id).encode()
        )


async def history(settings: KafkaSettings, names: TopicNames, workflow_id: str) -> list[str]:
    async with PartitionReader(settings) as reader:
        records = await reader.read_key(names.workflow_events, workflow_id.encode())
    return [decode(r.value, WorkflowEvent).status for r in records if r.value is not None]


async def late_result(settings: KafkaSettings, names: TopicNames, workflow_id: str) -> None:
    result = ResultEvent(
        producer=Producer(name="tests", version="0"), workflow_id=workflow_id, step_id="never",
        capability="probe", attempt=1, task_id=uuid.uuid4(), status="succeeded", output={},
    )  # fmt: skip
    record = to_record(result)
    async with connected(AIOKafkaProducer(**client_options(settings)), settings) as producer:
        await producer.send_and_wait(
            names.results, record.value, key=record.key, headers=record.headers
        )


def logged(log: Path, text: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return text in await asyncio.to_thread(log.read_text, errors="replace")

    return check


async def test_a_finished_workflow_leaves_the_table_and_status_still_shows_it(
    kafka: Broker, env: dict[str, str], workflows: Path, logs: Path
) -> None:
    names = TopicNames(env["EXPEDITER_TOPIC_PREFIX"])
    args = ["orchestrator", "--workflows", str(workflows)]
    first = spawn(args, env, logs / "orchestrator-1.log")
    try:
        done = await asyncio.to_thread(
            cli, ["submit", "instant", "--workflows", str(workflows), "--wait", "--timeout", "90",
                  "--json"], env, 150,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        submitted = json.loads(done.stdout)
        workflow_id = submitted["workflow_id"]
        assert submitted["outcome"]["status"] == "completed"

        async def retired() -> bool:
            records = await changelog(kafka.settings, names, workflow_id)
            return bool(records) and records[-1].value is None

        # No other record comes: the timer's nudge carries the deletion on an idle partition.
        await until("a tombstone for the finished workflow in the changelog", retired, poll=0.5)
        records = await changelog(kafka.settings, names, workflow_id)
        assert [r.value is None for r in records][-2:] == [False, True]

        status = cli(["status", workflow_id, "--json"], env)
        assert status.returncode == 0, status.stderr
        document = json.loads(status.stdout)
        assert document["found"] is True
        assert document["state"]["status"] == "completed"
        assert document["state"]["report"] == {"done": True}
        assert [e["status"] for e in document["history"]][-1] == "completed"

        # A late result for it is ignored with a reason, and does not bring it back.
        events_before = await history(kafka.settings, names, workflow_id)
        await late_result(kafka.settings, names, workflow_id)
        await until(
            "a warning: the late result ignored",
            logged(
                logs / "orchestrator-1.log",
                f"{workflow_id}/never ignored: it finished and left the table",
            ),
            poll=0.5,
        )
    finally:
        assert terminate(first) == 0

    second = spawn(args, env, logs / "orchestrator-2.log")
    try:
        # The restarted orchestrator works (it handles a new workflow) ...
        again = await asyncio.to_thread(
            cli, ["submit", "instant", "--workflows", str(workflows), "--wait", "--timeout", "90",
                  "--json"], env, 150,
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        # ... and has not restored the retired one: a late result finds no such workflow.
        await late_result(kafka.settings, names, workflow_id)
        await until(
            "a warning: not in the restored table",
            logged(
                logs / "orchestrator-2.log",
                f"{workflow_id}/never ignored: no such workflow in the table",
            ),
            poll=0.5,
        )
    finally:
        assert terminate(second) == 0
    records = await changelog(kafka.settings, names, workflow_id)
    assert records[-1].value is None, "the retired workflow got a table entry again"
    assert await history(kafka.settings, names, workflow_id) == events_before
