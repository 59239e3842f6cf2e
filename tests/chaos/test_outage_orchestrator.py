"""A 35 s broker outage under the orchestrator and its fleet of workers.

Issue 11, item 1: the orchestrator, like the worker, assumed a record enqueued in a transaction
was delivered. Workflows are started before the outage (running through it), during it (by a
client that holds its producer open, as a service would) and after it; each must complete
exactly once, counted by workflow id on the completed topic, read read_committed, and the same
orchestrator and workers serve them all.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from expediter.events import Producer, WorkflowCommand, WorkflowEvent, decode, to_record
from expediter.messaging import TopicNames, client_options, connected
from tests.chaos.conftest import ChaosBroker, read_for, spawn_expediter
from tests.support import cli, read, terminate

pytestmark = pytest.mark.slow

FLEET = ("soil_analyzer", "pest_detector", "crop_mapper")
OUTAGE_SECONDS = 35.0
CLIENT = Producer(name="chaos-client", version="0")


def start_command(n: int) -> WorkflowCommand:
    return WorkflowCommand(
        producer=CLIENT, action="start", workflow_id=f"wf-chaos-{uuid.uuid4().hex[:10]}",
        workflow="field-analysis", input={"field_id": f"field-{'abcde'[n % 5]}"},
    )  # fmt: skip


def print_logs(folder: Path) -> None:
    for log in sorted(folder.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")


def submit(env: dict[str, str], count: int) -> set[str]:
    done = cli(["submit", "field-analysis", "--input", '{"field_id": "field-a"}',
                "--count", str(count), "--rate", "50", "--json"], env, 120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {s["workflow_id"] for s in json.loads(done.stdout)}


async def test_workflows_before_during_and_after_a_35s_outage_complete_once(
    chaos_broker: ChaosBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    prefix = f"o{uuid.uuid4().hex[:8]}."
    names = TopicNames(prefix=prefix)
    env = {
        "EXPEDITER_BOOTSTRAP": chaos_broker.bootstrap,
        "EXPEDITER_TOPIC_PREFIX": prefix,
        "EXPEDITER_HTTP_PORT": "0",
        "EXPEDITER_DATA_DIR": str(tmp_path / "faust"),
    }
    applied = cli(["topics", "apply", "--prefix", prefix, "--json"], env)
    assert applied.returncode == 0, applied.stderr
    for agent in FLEET:
        processes.append(
            spawn_expediter(["worker", f"agents/{agent}.py"], env, tmp_path / f"{agent}.log")
        )
    orch = spawn_expediter(
        ["orchestrator", "--workflows", "workflows"], env, tmp_path / "orchestrator.log"
    )
    processes.append(orch)
    settings = chaos_broker.settings
    try:
        before = await asyncio.to_thread(submit, env, 60)
        await read(settings, names.completed, until=lambda r: len(r) >= 5, timeout=120)
        # A client that keeps its producer open across the outage; its sends wait for the
        # broker (the delivery timeout is longer than the outage).
        options = {
            **client_options(settings),
            "request_timeout_ms": int((OUTAGE_SECONDS + 60) * 1000),
        }
        producer = AIOKafkaProducer(**options, acks="all", enable_idempotence=True)
        async with connected(producer, settings):
            await producer.partitions_for(names.commands)  # known before the broker goes
            during: list[WorkflowCommand] = []
            deliveries = []
            async with chaos_broker.down():
                for n in range(20):
                    command = start_command(n)
                    record = to_record(command)
                    during.append(command)
                    deliveries.append(
                        await producer.send(
                            names.commands, record.value, key=record.key, headers=record.headers
                        )
                    )
                await asyncio.sleep(OUTAGE_SECONDS)
            await asyncio.gather(*deliveries)
        up_at = time.monotonic()
        after = await asyncio.to_thread(submit, env, 20)
        expected = before | after | {c.workflow_id for c in during}
        assert len(expected) == 100

        def completions(records: list[object]) -> Counter[str]:
            return Counter(decode(r.value, WorkflowEvent).workflow_id for r in records)  # type: ignore[attr-defined]

        await read_for(
            settings, names.completed, until=lambda r: set(completions(r)) >= expected,
            timeout=150,
        )  # fmt: skip
        print(f"\nall complete {time.monotonic() - up_at:.0f} s after the broker came back")
        await asyncio.sleep(5.0)  # a duplicate would show by now
        records = await read_for(
            settings, names.completed, until=lambda r: len(r) >= len(expected), timeout=10
        )
    finally:
        print_logs(tmp_path)
    assert orch.poll() is None, "the orchestrator stopped serving"
    assert [p.poll() for p in processes] == [None] * len(processes), "a worker stopped serving"
    counted = completions(records)
    missing = expected - set(counted)
    assert not missing, f"{len(missing)} of {len(expected)} workflows never completed"
    twice = {w: n for w, n in counted.items() if n > 1}
    assert not twice, f"{len(twice)} workflows completed more than once"
    statuses = Counter(decode(r.value, WorkflowEvent).status for r in records)
    assert statuses == {"completed": len(expected)}, statuses
    assert [terminate(p) for p in processes] == [0] * len(processes)
