"""A retried step inside a workflow: the worker retries in place, the workflow still completes.

The orchestrator and a worker as processes. The step's agent fails retriably on its first try
and succeeds on the second, in place. The result must keep the dispatched attempt, or the
orchestrator takes it for a late one, waits for the deadline and dispatches again. Counted by
workflow id: each completes once, none is lost, none has a late step.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

from expediter.dev import Broker
from expediter.events import WorkflowEvent, decode
from expediter.messaging import TopicNames, client_options, connected
from tests.support import cli, read, spawn, terminate

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

WORKFLOWS = 10
RETRIED = """
from expediter import Step, Workflow

def flaky_input(state):
    return {"n": 1, "mode": "retriable", "fail_attempts": 1}

def report(state):
    return {"output": state.steps["flaky"].output}

workflow = Workflow(
    name="retried",
    stages=[Step("flaky", "probe", flaky_input, deadline_seconds=30, max_attempts=1)],
    report=report,
)
"""


def _status(record: ConsumerRecord[bytes, bytes]) -> str:
    return decode(record.value, WorkflowEvent).status


def _print_logs(folder: Path) -> None:
    for log in sorted(folder.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")


PROBE = Path(__file__).resolve().parents[1] / "agents" / "probe.py"


async def test_a_step_retried_in_place_completes_its_workflow_once(
    kafka: Broker, tmp_path: Path
) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}."
    names = TopicNames(prefix)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EXPEDITER_")},
        "EXPEDITER_BOOTSTRAP": kafka.bootstrap,
        "EXPEDITER_TOPIC_PREFIX": prefix,
        "EXPEDITER_HTTP_PORT": "0",
        "EXPEDITER_DATA_DIR": str(tmp_path / "faust"),
        "EXPEDITER_RETRY_BACKOFF_SECONDS": "0.1",
    }
    applied = cli(["topics", "apply", "--prefix", prefix, "--json"], env)
    assert applied.returncode == 0, applied.stderr
    admin = AIOKafkaAdminClient(**client_options(kafka.settings))
    async with connected(admin, kafka.settings):
        await admin.create_topics([NewTopic(names.tasks("probe"), 3, 1),
                                   NewTopic(names.dlq("probe"), 1, 1)])  # fmt: skip
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "retried.py").write_text(RETRIED)
    worker = spawn(["worker", str(PROBE)], env, tmp_path / "worker.log")
    orch = spawn(["orchestrator", "--workflows", str(flows)], env, tmp_path / "orchestrator.log")
    try:
        submit = await asyncio.to_thread(
            cli, ["submit", "retried", "--workflows", str(flows), "--input", "{}", "--count",
                  str(WORKFLOWS), "--json"], env, 120,
        )  # fmt: skip
        assert submit.returncode == 0, submit.stderr
        ids = {s["workflow_id"] for s in json.loads(submit.stdout)}
        assert len(ids) == WORKFLOWS
        records = await read(
            kafka.settings, names.completed, until=lambda r: len(r) >= WORKFLOWS, timeout=120
        )
        await asyncio.sleep(3)  # a duplicate would show up now
        records = await read(kafka.settings, names.completed, until=lambda r: len(r) >= WORKFLOWS)
        events = await read(
            kafka.settings, names.workflow_events,
            until=lambda r: sum(_status(x) in ("completed", "failed") for x in r) >= WORKFLOWS,
        )  # fmt: skip
    finally:
        codes = (terminate(orch), terminate(worker))
        _print_logs(tmp_path)
    assert codes == (0, 0)
    completions = Counter(decode(r.value, WorkflowEvent).workflow_id for r in records)
    assert set(completions) == ids, "a workflow never completed"
    assert max(completions.values()) == 1, "a workflow completed twice"
    assert {decode(r.value, WorkflowEvent).status for r in records} == {"completed"}
    late = [r for r in events if _status(r) == "step-late"]
    assert late == [], "a result retried in place was taken for a late one"
