"""The orchestrator as a process (Faust), with the fleet's workers, on a real broker.

Request-reply with `submit --wait`, `status`, and the restart promise: kill -9 the orchestrator
with 200 workflows in flight, start another, and every workflow completes exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from expediter.dev import Broker
from expediter.events import TaskEvent, WorkflowEvent, decode
from expediter.messaging import TopicNames
from tests.support import cli, read, spawn, terminate

FLEET = ("soil_analyzer", "pest_detector", "crop_mapper")
HURRY = """
from expediter import Step, Workflow

def soil_input(state):
    return {"field_id": state.input["field_id"]}

def report(state):
    return {}

workflow = Workflow(
    name="hurry",
    stages=[Step("soil", "soil-analysis", soil_input, deadline_seconds=2, max_attempts=2)],
    report=report,
)
"""
pytestmark = pytest.mark.slow


@pytest.fixture
def env(kafka: Broker, tmp_path: Path) -> dict[str, str]:
    prefix = f"o{uuid.uuid4().hex[:8]}."
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("EXPEDITER_")},
        "EXPEDITER_BOOTSTRAP": kafka.bootstrap,
        "EXPEDITER_TOPIC_PREFIX": prefix,
        "EXPEDITER_HTTP_PORT": "0",
        "EXPEDITER_DATA_DIR": str(tmp_path / "faust"),
        "EXPEDITER_CACHE_DIR": os.environ.get("EXPEDITER_CACHE_DIR", ""),
    }


@pytest_asyncio.fixture
async def fleet(
    env: dict[str, str], tmp_path: Path
) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    applied = cli(["topics", "apply", "--prefix", env["EXPEDITER_TOPIC_PREFIX"], "--json"], env)
    assert applied.returncode == 0, applied.stderr
    procs = [spawn(["worker", f"agents/{a}.py"], env, tmp_path / f"{a}.log") for a in FLEET]
    yield procs
    for proc in procs:  # all at once, so they drain side by side
        proc.send_signal(signal.SIGTERM)
    try:
        assert [proc.wait(timeout=60) for proc in procs] == [0] * len(procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def orchestrator(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return spawn(
        ["orchestrator", "--workflows", "workflows"], {**env, "EXPEDITER_HTTP_PORT": "0"}, log
    )


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for log in sorted(tmp_path.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")


async def test_submit_wait_and_status(
    env: dict[str, str], fleet: list[subprocess.Popen[bytes]], logs: Path
) -> None:
    orch = orchestrator(env, logs / "orchestrator.log")
    try:
        results = {}
        for field in ("field-a", "field-e"):  # pests on a, none on e (deterministic agents)
            done = await asyncio.to_thread(
                cli, ["submit", "field-analysis", "--input", json.dumps({"field_id": field}),
                      "--wait", "--timeout", "90", "--json"], env, 150,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            results[field] = json.loads(done.stdout)
        with_pests = results["field-a"]["outcome"]
        assert with_pests["status"] == "completed"
        assert with_pests["report"]["pests"]["count"] > 0
        assert with_pests["report"]["map"]["zoom"] > 0, "the crop mapper zoomed in"
        without = results["field-e"]["outcome"]
        assert without["report"]["pests"]["count"] == 0
        assert without["report"]["map"] is None, "no pests, no map"

        status = cli(["status", results["field-a"]["workflow_id"], "--json"], env)
        assert status.returncode == 0, status.stderr
        document = json.loads(status.stdout)
        assert document["state"]["status"] == "completed"
        steps = document["state"]["steps"]
        assert steps.pop("drones")["status"] == "skipped", "12.6 ha: under the drone threshold"
        assert {s["status"] for s in steps.values()} == {"succeeded"}
        history = [e["status"] for e in document["history"]]
        assert history[0] == "started"
        assert history[-1] == "completed"
        assert history.count("step-started") == 3

        missing = cli(["status", "wf-nope"], env)
        assert missing.returncode == 1
        assert "no workflow" in missing.stderr
    finally:
        terminate(orch)


async def test_kill_9_with_200_in_flight_completes_each_exactly_once(
    kafka: Broker, env: dict[str, str], fleet: list[subprocess.Popen[bytes]], logs: Path
) -> None:
    names = TopicNames(env["EXPEDITER_TOPIC_PREFIX"])
    first = orchestrator(env, logs / "orchestrator-1.log")
    # Submitted over ~10 s, so that the kill lands with most workflows still to run.
    submitting = asyncio.create_task(asyncio.to_thread(
        cli, ["submit", "field-analysis", "--input", '{"field_id": "field-a"}', "--count", "200",
              "--rate", "20", "--json"], env, 120,
    ))  # fmt: skip
    before = await read(kafka.settings, names.completed, until=lambda r: len(r) >= 20, timeout=120)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert len(before) < 200, "every workflow had completed before the kill"
    submit = await submitting
    assert submit.returncode == 0, submit.stderr
    ids = {s["workflow_id"] for s in json.loads(submit.stdout)}
    assert len(ids) == 200
    second = orchestrator(env, logs / "orchestrator-2.log")
    try:
        records = await read(
            kafka.settings, names.completed, until=lambda r: len(r) >= 200, timeout=240
        )
        await asyncio.sleep(5)  # anything duplicated would show up now
        records = await read(kafka.settings, names.completed, until=lambda r: len(r) >= 200)
    finally:
        terminate(second)
    completions = Counter(decode(r.value, WorkflowEvent).workflow_id for r in records)
    assert set(completions) == ids, "a workflow never completed"
    assert max(completions.values()) == 1, "a workflow completed twice"
    statuses = {decode(r.value, WorkflowEvent).status for r in records}
    assert statuses == {"completed"}


async def test_two_replicas_share_the_partitions_and_complete_each_once(
    kafka: Broker, env: dict[str, str], fleet: list[subprocess.Popen[bytes]], logs: Path
) -> None:
    names = TopicNames(env["EXPEDITER_TOPIC_PREFIX"])
    first = orchestrator(env, logs / "orchestrator-a.log")
    second = None
    try:
        submit = await asyncio.to_thread(
            cli, ["submit", "field-analysis", "--input", '{"field_id": "field-b"}', "--count",
                  "100", "--rate", "50", "--json"], env, 120,
        )  # fmt: skip
        assert submit.returncode == 0, submit.stderr
        ids = {s["workflow_id"] for s in json.loads(submit.stdout)}
        await read(kafka.settings, names.completed, until=lambda r: len(r) >= 10, timeout=120)
        # A second replica joins mid-run: the group rebalances and each takes some partitions.
        second = orchestrator(env, logs / "orchestrator-b.log")
        records = await read(
            kafka.settings, names.completed, until=lambda r: len(r) >= 100, timeout=240
        )
        await asyncio.sleep(5)
        records = await read(kafka.settings, names.completed, until=lambda r: len(r) >= 100)
    finally:
        for proc in (first, second):
            if proc is not None:
                terminate(proc)
    completions = Counter(decode(r.value, WorkflowEvent).workflow_id for r in records)
    assert set(completions) == ids, "a workflow never completed"
    assert max(completions.values()) == 1, "a workflow completed twice"


async def test_a_missed_deadline_is_retried_then_fails_the_workflow(
    kafka: Broker, env: dict[str, str], tmp_path: Path, logs: Path
) -> None:
    """No agent answers: the orchestrator's timer expires the step, the retry expires too, and
    the workflow completes as failed. Deadlines are commands in the stream, not timers in
    memory, so this is the path that survives a restart."""
    names = TopicNames(env["EXPEDITER_TOPIC_PREFIX"])
    applied = cli(["topics", "apply", "--prefix", env["EXPEDITER_TOPIC_PREFIX"], "--json"], env)
    assert applied.returncode == 0, applied.stderr
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "hurry.py").write_text(HURRY)
    orch = spawn(["orchestrator", "--workflows", str(flows)], env, logs / "orchestrator.log")
    try:
        elsewhere = cli(["submit", "hurry", "--input", '{"field_id": "f"}'], env, 60)
        assert elsewhere.returncode == 2, "not in workflows/, and no topic tasks.hurry"
        assert "neither a workflow" in elsewhere.stderr
        assert "--workflows" in elsewhere.stderr
        submit = cli(["submit", "hurry", "--workflows", str(flows), "--input",
                      '{"field_id": "f"}', "--json"], env, 60)  # fmt: skip
        assert submit.returncode == 0, submit.stderr
        workflow_id = json.loads(submit.stdout)["workflow_id"]
        completed = await read(kafka.settings, names.completed, until=bool, timeout=120)
        status = cli(["status", workflow_id, "--json"], env)
    finally:
        terminate(orch)
    event = decode(completed[0].value, WorkflowEvent)
    assert (event.workflow_id, event.status) == (workflow_id, "failed")
    tasks = await read(kafka.settings, names.tasks("soil-analysis"), until=lambda r: len(r) >= 2)
    assert sorted(decode(r.value, TaskEvent).attempt for r in tasks) == [1, 2]
    assert status.returncode == 0, status.stderr
    step = json.loads(status.stdout)["state"]["steps"]["soil"]
    assert (step["status"], step["error"]["code"]) == ("failed", "deadline")
