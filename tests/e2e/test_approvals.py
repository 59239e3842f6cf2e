"""Human approval as a workflow step, on a real broker with the orchestrator as a process.

A person approves or rejects with `expediter approvals`, sees the wait in `approvals list`,
`status` and `trace`; each deadline policy fires from the workflow table; a decision is applied
once, refused (and recorded) from someone not allowed, parked when it comes before its request;
a kill -9 in the middle of a wait loses nothing; 1,000 approvals can wait at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from expediter.dev import Broker
from expediter.events import ApprovalDecision, DeadLetter, WorkflowEvent, decode, to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.orchestrator.deciding import CLIENT, open_requests
from expediter.orchestrator.submitting import Submitter
from expediter.settings import KafkaSettings
from tests.support import cli, read, spawn, terminate

pytestmark = pytest.mark.slow

FLOWS = {
    "gate.py": """
from expediter import Approval, Group, Workflow

AGRONOMISTS = Group("agronomists", ["ana", "ben"])

workflow = Workflow(
    name="gate",
    stages=[Approval("drones", ask=lambda s: {"field": s.input.get("field", "f")},
                     approvers=[AGRONOMISTS, "chief"], title="Fly the drones?",
                     deadline_seconds=86_400)],
    report=lambda s: {"drones": s.output("drones")},
)
""",
    "two_gates.py": """
from expediter import Approval, Workflow

workflow = Workflow(
    name="two-gates",
    stages=[
        Approval("first", ask=lambda s: {}, approvers=["ana"]),
        Approval("second", ask=lambda s: {"after": s.output("first")["by"]}, approvers=["ben"]),
    ],
    report=lambda s: {"first": s.output("first"), "second": s.output("second")},
)
""",
}


def _deadline_flow(policy: str, more: str = "") -> str:
    return f"""
from expediter import Approval, Group, Workflow

workflow = Workflow(
    name="by-deadline-{policy}",
    stages=[Approval("drones", ask=lambda s: {{}}, approvers=["ana"], deadline_seconds=3,
                     on_deadline="{policy}"{more})],
    report=lambda s: {{"drones": s.output("drones")}},
)
"""


def write_flows(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gate.py").write_text(FLOWS["gate.py"])
    (folder / "two_gates.py").write_text(FLOWS["two_gates.py"])
    (folder / "by_deadline_reject.py").write_text(_deadline_flow("reject"))
    (folder / "by_deadline_approve.py").write_text(_deadline_flow("approve"))
    escalate = (', escalate_to=[Group("farm-managers", ["carla"])], escalation_seconds=4,'
                ' after_escalation="reject"')  # fmt: skip
    (folder / "by_deadline_escalate.py").write_text(_deadline_flow("escalate", escalate))
    return folder


def make_env(kafka: Broker, scratch: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("EXPEDITER_")},
        "EXPEDITER_BOOTSTRAP": kafka.bootstrap,
        "EXPEDITER_TOPIC_PREFIX": f"a{uuid.uuid4().hex[:8]}.",
        "EXPEDITER_HTTP_PORT": "0",
        "EXPEDITER_DATA_DIR": str(scratch / "faust"),
        "EXPEDITER_CACHE_DIR": os.environ.get("EXPEDITER_CACHE_DIR", ""),
    }


def start_orchestrator(env: dict[str, str], flows: Path, log: Path) -> subprocess.Popen[bytes]:
    return spawn(["orchestrator", "--workflows", str(flows)], env, log)


class Deployment:
    """One prefix with its topics, the workflow files, and an orchestrator process."""

    def __init__(self, kafka: Broker, scratch: Path) -> None:
        self.kafka = kafka
        self.scratch = scratch
        self.env = make_env(kafka, scratch)
        self.names = TopicNames(self.env["EXPEDITER_TOPIC_PREFIX"])
        self.flows = write_flows(scratch / "flows")
        applied = cli(["topics", "apply", "--prefix", self.names.prefix, "--json"], self.env)
        assert applied.returncode == 0, applied.stderr
        self.runs = 0
        self.proc = self.start()

    @property
    def settings(self) -> KafkaSettings:
        return self.kafka.settings

    def start(self) -> subprocess.Popen[bytes]:
        self.runs += 1
        return start_orchestrator(self.env, self.flows, self.scratch / f"orch-{self.runs}.log")

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return cli([*args], self.env, timeout)

    async def submit(self, workflow: str, count: int = 1, **given: Any) -> list[str]:
        async with Submitter(self.settings, self.names, {workflow}) as client:
            return [(await client.submit(workflow, given)).workflow_id for _ in range(count)]

    async def open_ids(self, want: int, timeout: float = 120) -> set[str]:
        """The open request ids once at least ``want`` are open."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = {r.request_id for r in await open_requests(self.settings, self.names)}
            if len(found) >= want:
                return found
            assert loop.time() < deadline, f"{len(found)} of {want} requests open"
            await asyncio.sleep(0.5)

    async def opened(self, request_id: str, timeout: float = 120) -> None:
        """Once ``request_id`` is open."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while request_id not in await self.open_ids(0):
            assert loop.time() < deadline, f"{request_id} never opened"
            await asyncio.sleep(0.5)

    async def completions(self, ids: set[str], timeout: float = 120) -> dict[str, WorkflowEvent]:
        def done(records: list[Any]) -> bool:
            return ids <= {decode(r.value, WorkflowEvent).workflow_id for r in records}

        records = await read(self.settings, self.names.completed, until=done, timeout=timeout)
        events = [decode(r.value, WorkflowEvent) for r in records]
        counts = Counter(e.workflow_id for e in events)
        assert all(counts[i] == 1 for i in ids), "a workflow completed twice"
        return {e.workflow_id: e for e in events if e.workflow_id in ids}

    async def decide(self, *decisions: ApprovalDecision) -> None:
        producer = AIOKafkaProducer(**client_options(self.settings), enable_idempotence=True)
        async with connected(producer, self.settings):
            for decision in decisions:
                record = to_record(decision)
                await producer.send(self.names.approval_decisions, record.value,
                                    key=record.key, headers=record.headers)  # fmt: skip
            await producer.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            terminate(self.proc)


def print_logs(folder: Path) -> None:
    for log in sorted(folder.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")


def decision(workflow_id: str, by: str, verdict: str = "approve", step: str = "drones",
             **extra: Any) -> ApprovalDecision:  # fmt: skip
    return ApprovalDecision(producer=CLIENT, request_id=f"{workflow_id}/{step}",
                            workflow_id=workflow_id, step_id=step, decision=verdict,
                            decider=by, **extra)  # fmt: skip


@pytest.fixture(scope="module")
def deployment(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    scratch = tmp_path_factory.mktemp("approvals")
    running = Deployment(kafka, scratch)
    try:
        yield running
    finally:
        running.stop()
        print_logs(scratch)


@pytest.mark.timeout(600)  # a dozen CLI processes, each a Python start on 2 busy cores
async def test_a_person_approves_from_the_cli_and_the_workflow_reads_who_and_why(
    deployment: Deployment,
) -> None:
    [workflow_id] = await deployment.submit("gate", field="f-7")
    request_id = f"{workflow_id}/drones"
    await deployment.open_ids(1)
    listed = deployment.cli("approvals", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    pending = {r["request_id"]: r for r in json.loads(listed.stdout)["pending"]}
    assert pending[request_id]["ask"] == {"field": "f-7"}
    assert pending[request_id]["approvers"] == ["ana", "ben", "chief"]
    assert pending[request_id]["left_seconds"] > 86_000
    assert pending[request_id]["age_seconds"] >= 0
    plain = deployment.cli("approvals", "list")
    assert request_id in plain.stdout
    assert "Fly the drones?" in plain.stdout

    waiting = deployment.cli("status", workflow_id)
    assert "drones: waiting since" in waiting.stdout, waiting.stdout
    shown = deployment.cli("approvals", "show", request_id, "--json")
    assert json.loads(shown.stdout)["open"] is True

    approved = deployment.cli("approvals", "approve", request_id, "--as", "ben",
                              "--comment", "zone confirmed", "--json")  # fmt: skip
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert json.loads(approved.stdout)["outcome"] == "approval-decided"
    done = await deployment.completions({workflow_id})
    decided = done[workflow_id].detail["report"]["drones"]
    assert (decided["approved"], decided["by"], decided["comment"]) == (
        True, "ben", "zone confirmed",
    )  # fmt: skip
    assert request_id not in await deployment.open_ids(0), "resolved: no longer listed"

    status = deployment.cli("status", workflow_id, "--json")
    state = json.loads(status.stdout)
    assert state["state"]["steps"]["drones"]["status"] == "approved"
    history = [e["status"] for e in state["history"]]
    assert history[:3] == ["started", "approval-requested", "approval-decided"]
    assert "drones: approved by ben" in deployment.cli("status", workflow_id).stdout
    trace = deployment.cli("trace", workflow_id, "--prefix", deployment.names.prefix, "--json")
    assert trace.returncode == 0, trace.stderr
    entries = json.loads(trace.stdout)["entries"]
    summaries = " ".join(e["summary"] for e in entries)
    assert "approval-requested" in summaries
    assert "approval-decided" in summaries
    [sent] = [e for e in entries if e["type"] == "approval-decision"]
    assert (sent["value"]["decider"], sent["value"]["comment"]) == ("ben", "zone confirmed")

    again = deployment.cli("approvals", "reject", request_id, "--as", "ana")
    assert again.returncode == 1
    assert "already approved by ben" in again.stderr


async def test_a_rejection_completes_the_workflow_with_the_answer(deployment: Deployment) -> None:
    [workflow_id] = await deployment.submit("gate")
    await deployment.opened(f"{workflow_id}/drones")
    rejected = deployment.cli("approvals", "reject", f"{workflow_id}/drones", "--as", "chief",
                              "--comment", "too windy")  # fmt: skip
    assert rejected.returncode == 0, rejected.stderr
    assert "rejected by chief" in rejected.stdout
    done = await deployment.completions({workflow_id})
    assert done[workflow_id].status == "completed", "a rejection is an answer, not a failure"
    assert done[workflow_id].detail["report"]["drones"]["approved"] is False


async def test_someone_not_allowed_is_refused_recorded_and_the_request_stays_open(
    deployment: Deployment,
) -> None:
    [workflow_id] = await deployment.submit("gate")
    request_id = f"{workflow_id}/drones"
    await deployment.opened(request_id)
    refused = deployment.cli("approvals", "approve", request_id, "--as", "mallory", "--json")
    assert refused.returncode == 1
    answer = json.loads(refused.stdout)
    assert (answer["outcome"], answer["reason"]) == ("decision-ignored", "not-allowed")
    assert request_id in await deployment.open_ids(1)
    plain = deployment.cli("approvals", "approve", request_id, "--as", "eve")
    assert "refused (not-allowed) and recorded" in plain.stderr
    status = json.loads(deployment.cli("status", workflow_id, "--json").stdout)
    approval = status["state"]["steps"]["drones"]["approval"]
    assert [(i["by"], i["reason"]) for i in approval["ignored"]] == [
        ("mallory", "not-allowed"), ("eve", "not-allowed"),
    ]  # fmt: skip
    bad = deployment.cli("approvals", "approve", request_id, "--as", "not a name")
    assert bad.returncode == 2
    assert "decider's name" in bad.stderr
    assert deployment.cli("approvals", "approve", request_id, "--as", "ana").returncode == 0
    await deployment.completions({workflow_id})


async def test_a_decision_is_applied_once_and_later_ones_are_recorded_and_ignored(
    deployment: Deployment,
) -> None:
    [workflow_id] = await deployment.submit("gate")
    await deployment.opened(f"{workflow_id}/drones")
    first = decision(workflow_id, "ana")
    # The same event twice (a client's retry), then a second person's contrary decision.
    await deployment.decide(first, first, decision(workflow_id, "ben", "reject"))
    done = await deployment.completions({workflow_id})
    assert done[workflow_id].detail["report"]["drones"]["by"] == "ana"
    await asyncio.sleep(2)  # anything applied twice would show up now
    await deployment.completions({workflow_id})  # still exactly one completion
    state = json.loads(deployment.cli("status", workflow_id, "--json").stdout)
    step = state["state"]["steps"]["drones"]
    assert step["duplicates"] == 1, "the redelivered event was counted, not applied"
    assert [(i["by"], i["reason"]) for i in step["approval"]["ignored"]] == [
        ("ben", "already-decided")
    ]
    decided = [e for e in state["history"] if e["status"] == "approval-decided"]
    assert len(decided) == 1

    # A decision for a workflow the orchestrator does not have: a dead letter, with the reason.
    await deployment.decide(decision("wf-nobody", "ana"))
    letters = await read(deployment.settings, deployment.names.orchestrator_dlq, until=bool)
    letter = decode(letters[0].value, DeadLetter)
    assert letter.reason == "unknown-workflow"
    assert "wf-nobody" in letter.detail


async def test_a_decision_that_comes_before_its_request_waits_for_it(
    deployment: Deployment,
) -> None:
    [workflow_id] = await deployment.submit("two-gates")
    await deployment.opened(f"{workflow_id}/first")
    early = deployment.cli("approvals", "approve", f"{workflow_id}/second", "--as", "ben")
    assert early.returncode == 1, "not open yet: refused without --early"
    assert "has not asked it" in early.stderr
    parked = deployment.cli("approvals", "approve", f"{workflow_id}/second", "--as", "ben",
                            "--early", "--comment", "ahead of time", "--json")  # fmt: skip
    assert parked.returncode == 0, parked.stdout + parked.stderr
    assert json.loads(parked.stdout)["outcome"] == "decision-parked"
    approved = deployment.cli("approvals", "approve", f"{workflow_id}/first", "--as", "ana")
    assert approved.returncode == 0, approved.stderr
    done = await deployment.completions({workflow_id})
    report = done[workflow_id].detail["report"]
    assert report["second"]["by"] == "ben"
    assert report["second"]["comment"] == "ahead of time"
    assert f"{workflow_id}/second" not in await deployment.open_ids(0)


async def test_each_deadline_policy_fires_from_the_table(deployment: Deployment) -> None:
    ids = {policy: (await deployment.submit(f"by-deadline-{policy}"))[0]
           for policy in ("reject", "approve", "escalate")}  # fmt: skip
    escalated = f"{ids['escalate']}/drones"
    loop = asyncio.get_running_loop()
    until = loop.time() + 90
    while True:  # round 2 of the escalation, asked of the farm managers too
        requests = {r.request_id: r for r in await open_requests(deployment.settings,
                                                                  deployment.names)}  # fmt: skip
        if escalated in requests and requests[escalated].round == 2:
            assert requests[escalated].approvers == ["ana", "carla"]
            assert requests[escalated].groups == ["farm-managers"]
            break
        assert loop.time() < until, "the escalation never came"
        await asyncio.sleep(0.3)
    done = await deployment.completions(set(ids.values()))
    outcome = {p: done[i].detail["report"]["drones"] for p, i in ids.items()}
    assert {p: (o["decision"], o["reason"], o["by"]) for p, o in outcome.items()} == {
        "reject": ("rejected", "deadline", None),
        "approve": ("approved", "deadline", None),
        "escalate": ("rejected", "deadline", None),
    }
    assert outcome["escalate"]["round"] == 2


async def test_a_kill_9_mid_wait_keeps_the_wait_and_its_deadline(
    kafka: Broker, tmp_path: Path
) -> None:
    """The deadline passes while no orchestrator runs: the next one reads it from the table
    and fires it; the long wait survives too and takes its decision after the restart."""
    deployment = Deployment(kafka, tmp_path)
    try:
        [short] = await deployment.submit("by-deadline-reject")
        [long] = await deployment.submit("gate")
        await deployment.open_ids(2)
        deployment.proc.send_signal(signal.SIGKILL)
        deployment.proc.wait(timeout=10)
        await asyncio.sleep(5)  # past the short one's deadline, with nothing running
        assert {f"{short}/drones", f"{long}/drones"} <= await deployment.open_ids(2)
        deployment.proc = deployment.start()
        done = await deployment.completions({short}, timeout=180)
        assert done[short].detail["report"]["drones"]["reason"] == "deadline"
        approved = deployment.cli("approvals", "approve", f"{long}/drones", "--as", "ana",
                                  "--wait", "120")  # fmt: skip
        assert approved.returncode == 0, approved.stderr
        done = await deployment.completions({long})
        assert done[long].detail["report"]["drones"]["by"] == "ana"
    finally:
        deployment.stop()
        print_logs(tmp_path)


@pytest.mark.timeout(900)
async def test_a_thousand_approvals_wait_at_once_and_each_is_decided_once(
    kafka: Broker, tmp_path: Path
) -> None:
    deployment = Deployment(kafka, tmp_path)
    try:
        ids = await deployment.submit("gate", count=1000)
        open_ = await deployment.open_ids(1000, timeout=400)
        assert {f"{i}/drones" for i in ids} <= open_
        listed = deployment.cli("approvals", "list", "--json")
        assert len(json.loads(listed.stdout)["pending"]) == 1000
        await deployment.decide(*(decision(i, "ana" if n % 2 else "ben", "approve" if n % 3
                                           else "reject") for n, i in enumerate(ids)))  # fmt: skip
        done = await deployment.completions(set(ids), timeout=400)
        assert len(done) == 1000
        rejected = sum(1 for e in done.values() if not e.detail["report"]["drones"]["approved"])
        assert rejected == len(range(0, 1000, 3))
        assert await open_requests(deployment.settings, deployment.names) == []
    finally:
        deployment.stop()
        print_logs(tmp_path)
