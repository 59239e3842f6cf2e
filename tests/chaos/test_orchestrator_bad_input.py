"""Bad workflow input and poison commands next to good ones: the orchestrator keeps serving.

Before, one ``{}`` input made a step's input builder raise inside the Faust agent, which then
crash-looped: no later workflow started, and a restart read the same command again. Here, on a
real broker with the fleet's workers, good workflows are interleaved with:

- input the workflow's input model refuses (sent by a producer other than ``submit``);
- input that passes the model but makes the workflow's own code raise (an input builder, a
  ``when=`` condition);
- commands that do not decode, name an unknown workflow, and an undecodable result.

Counted by id: every good workflow completes once, every bad one fails once (its error in
``status``), every poison record is dead-lettered once in ``dlq.orchestrator``, and a workflow
submitted afterwards still completes. ``submit`` itself refuses bad input, naming the field.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from expediter.dev import Broker
from expediter.events import DeadLetter, WorkflowCommand, WorkflowEvent, decode, to_record
from expediter.messaging import TopicNames
from tests.e2e.test_orchestrator import env, fleet, logs  # noqa: F401
from tests.support import ROOT, TEST_PRODUCER, cli, produce, read, spawn, terminate

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

BRITTLE = """
from pydantic import BaseModel
from expediter import Step, Workflow

class Input(BaseModel):
    field_id: str
    divisor: int = 1

def soil_input(state):
    return {"field_id": state.input["field_id"], "depth_cm": 100 // state.input["divisor"]}

def mapped(state):
    return state.output("soil")["no-such-output"] > 0

workflow = Workflow(
    name="brittle",
    input_model=Input,
    stages=[
        Step("soil", "soil-analysis", soil_input),
        Step("map", "crop-mapping", lambda s: {"field_id": s.input["field_id"]}, when=mapped),
    ],
    report=lambda s: {},
)
"""


def command(workflow_id: str, workflow: str, given: dict[str, object]) -> tuple[bytes, bytes]:
    """A start command as any producer may send it: nothing checked the input."""
    event = WorkflowCommand(
        producer=TEST_PRODUCER, action="start", workflow_id=workflow_id, workflow=workflow,
        input=given,
    )  # fmt: skip
    return workflow_id.encode(), to_record(event).value


async def test_bad_input_and_poison_commands_fail_alone_and_the_orchestrator_keeps_serving(
    kafka: Broker,
    env: dict[str, str],  # noqa: F811
    fleet: list[subprocess.Popen[bytes]],  # noqa: F811
    logs: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    names = TopicNames(env["EXPEDITER_TOPIC_PREFIX"])
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(ROOT / "workflows" / "field_analysis.py", flows / "field_analysis.py")
    (flows / "brittle.py").write_text(BRITTLE)

    refused = cli(["submit", "field-analysis", "--input", '{"field": "f"}'], env, 60)
    assert refused.returncode == 2, refused.stderr
    assert "field_id: Field required" in refused.stderr
    assert "field: Extra inputs are not permitted" in refused.stderr

    good = {f"wf-good-{n}": command(f"wf-good-{n}", "field-analysis", {"field_id": f"field-{n}"})
            for n in range(8)}  # fmt: skip
    failing = {
        "wf-empty": (command("wf-empty", "field-analysis", {}), "field_id: Field required"),
        "wf-wrong-type": (command("wf-wrong-type", "field-analysis", {"field_id": 5}),
                          "field_id: Input should be a valid string"),
        "wf-builder": (command("wf-builder", "brittle", {"field_id": "f", "divisor": 0}),
                       "step soil: its input-builder raised ZeroDivisionError"),
        "wf-condition": (command("wf-condition", "brittle", {"field_id": "f"}),
                         "step map: its condition raised KeyError('no-such-output')"),
    }  # fmt: skip
    poison = {
        "wf-not-json": (b"wf-not-json", b"{not json"),
        "wf-not-a-command": (b"wf-not-a-command", json.dumps({"hello": 1}).encode()),
        "wf-unknown": command("wf-unknown", "no-such-workflow", {"field_id": "f"}),
    }
    bad = [*(record for record, _ in failing.values()), *poison.values()]
    mixed = [r for pair in zip(good.values(), [*bad, *[None] * 8], strict=False) for r in pair if r]

    orch = spawn(["orchestrator", "--workflows", str(flows)], env, logs / "orchestrator.log")
    try:
        await produce(kafka.settings, names.commands, [], raw=mixed)
        await produce(kafka.settings, names.results, [], raw=[(b"wf-bad-result", b"\x00\x01")])
        expected = len(good) + len(failing)
        await read(kafka.settings, names.completed, until=lambda r: len(r) >= expected,
                   timeout=180)  # fmt: skip
        letters = await read(kafka.settings, names.orchestrator_dlq,
                             until=lambda r: len(r) >= len(poison) + 1, timeout=60)  # fmt: skip
        # Still serving: a workflow submitted now completes.
        after = await asyncio.to_thread(
            cli, ["submit", "field-analysis", "--workflows", str(flows), "--input",
                  '{"field_id": "field-z"}', "--wait", "--timeout", "90", "--json"], env, 150,
        )  # fmt: skip
        assert after.returncode == 0, after.stderr
        assert json.loads(after.stdout)["outcome"]["status"] == "completed"
        await asyncio.sleep(3)  # anything applied twice would show up now
        completed = await read(kafka.settings, names.completed,
                               until=lambda r: len(r) >= expected + 1)  # fmt: skip
        letters = await read(kafka.settings, names.orchestrator_dlq,
                             until=lambda r: len(r) >= len(poison) + 1)  # fmt: skip
        status = cli(["status", "wf-empty", "--json"], env)
        assert orch.poll() is None, "the orchestrator stopped"
    finally:
        terminate(orch)

    events = [decode(r.value, WorkflowEvent) for r in completed]
    outcomes = Counter((e.workflow_id, e.status) for e in events)
    assert max(outcomes.values()) == 1, f"a workflow completed twice: {outcomes}"
    by_id = {e.workflow_id: e for e in events}
    assert {i for i in good if by_id.get(i) and by_id[i].status == "completed"} == set(good)
    for workflow_id, (_, words) in failing.items():
        assert workflow_id in by_id, f"{workflow_id} never finished"
        assert by_id[workflow_id].status == "failed"
        assert words in by_id[workflow_id].detail["reason"]
    assert not set(by_id) & set(poison), "a poison command started a workflow"

    dead = [decode(r.value, DeadLetter) for r in letters]
    keys = Counter(base64.b64decode(d.original_key or "").decode() for d in dead)
    assert keys == Counter([*poison, "wf-bad-result"]), "each poison record dead-lettered once"
    reasons = {base64.b64decode(d.original_key or "").decode(): d for d in dead}
    assert reasons["wf-unknown"].reason == "unknown-workflow"
    assert "no-such-workflow" in reasons["wf-unknown"].detail
    assert reasons["wf-bad-result"].source_topic == names.results
    assert {d.source_topic for d in dead} == {names.commands, names.results}

    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)["state"]
    assert state["status"] == "failed"
    assert "field_id: Field required" in state["reason"]
