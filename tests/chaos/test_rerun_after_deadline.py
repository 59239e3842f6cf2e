"""Issue 11, item 5: a shadow re-run or a redrive after the step deadline came back ``expired``.

Both copied the original ``deadline``, already passed, so the worker answered ``expired``
without running the task. Now a re-run clears it and a redrive gives it a fresh deadline of the
original length (expediter.replaying.deadlines); ``--keep-deadline`` keeps the original.
Each test counts the outcomes by task id: a real result for every one, none expired.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from expediter.dev import Broker
from expediter.events import ResultEvent, TaskEvent, decode
from expediter.messaging import TopicNames
from expediter.replaying import ORIGINAL_DEADLINE_HEADER
from tests.integration.test_replay import cli, last_json
from tests.support import TEST_PRODUCER, create_topics, produce, read
from tests.workers import running_worker

pytestmark = pytest.mark.slow

BUDGET = timedelta(seconds=5)
"""Each task's deadline, from its creation: the first run is within it, the copies after it."""

AGENT = '''
"""Fails every task while FLAG exists (a broken release), serves them once it is gone."""
from pathlib import Path

from pydantic import BaseModel

from expediter import Agent, PermanentError, TaskContext

FLAG = Path(__FLAG__)


class In(BaseModel):
    n: int


class Out(BaseModel):
    n: int
    doubled: int


async def handle(task: In, ctx: TaskContext) -> Out:
    if FLAG.exists():
        raise PermanentError("the broken release", code="broken")
    return Out(n=task.n, doubled=2 * task.n)


agent = Agent(name="mender", capability="probe", version="1.0.0", input_model=In,
              output_model=Out, handler=handle)
'''


def agent_file(folder: Path) -> tuple[Path, Path]:
    """(the agent file, its flag file: broken while it exists)."""
    flag = folder / "broken"
    path = folder / "mender.py"
    path.write_text(AGENT.replace("__FLAG__", repr(str(flag))))
    return path, flag


def utcnow() -> datetime:
    return datetime.now(UTC)


def due_tasks(count: int) -> list[TaskEvent]:
    now = utcnow()
    return [
        TaskEvent(
            producer=TEST_PRODUCER, workflow_id=f"wf-{n}", step_id="mend", capability="probe",
            input={"n": n}, created_at=now, deadline=now + BUDGET,
        )
        for n in range(count)
    ]  # fmt: skip


async def past(deadline: datetime | None) -> None:
    assert deadline is not None
    await asyncio.sleep(max(0.0, (deadline - utcnow()).total_seconds()) + 0.5)


def outcomes(records: Sequence[object]) -> dict[uuid.UUID, list[tuple[str, str | None]]]:
    """(status, error code) of each result, by task id, in order."""
    found: dict[uuid.UUID, list[tuple[str, str | None]]] = {}
    for record in records:
        result = decode(record.value, ResultEvent)  # type: ignore[attr-defined]
        code = result.error.code if result.error is not None else None
        found.setdefault(result.task_id, []).append((result.status, code))
    return found


async def test_a_rerun_after_the_deadline_runs_every_task(kafka: Broker, tmp_path: Path) -> None:
    names = TopicNames(prefix=f"rr{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe")
    agent, _ = agent_file(tmp_path)
    async with running_worker(kafka.settings, agent, names.prefix):
        tasks = due_tasks(3)  # created once the worker is up: the first run is in time
        await produce(kafka.settings, names.tasks("probe"), tasks)
        first = await read(kafka.settings, names.results, until=lambda r: len(r) >= 3)
    assert outcomes(first) == {t.event_id: [("succeeded", None)] for t in tasks}
    await past(tasks[0].deadline)

    shadow = f"{names.prefix}shadow."
    rerun = cli(kafka, "replay", names.tasks("probe"), "--rerun", "--into", shadow,
                "--run", str(agent), "--json")  # fmt: skip

    assert rerun.returncode == 0, rerun.stderr
    report = last_json(rerun)
    assert (report["published"], report["succeeded"], report["failed"]) == (3, 3, 0), report
    assert report["deadlines_cleared"] == 3
    copies = await read(kafka.settings, f"{shadow}tasks.probe", until=lambda r: len(r) >= 3)
    assert all(decode(r.value, TaskEvent).deadline is None for r in copies)
    assert sorted(dict(r.headers)[ORIGINAL_DEADLINE_HEADER].decode() for r in copies) == sorted(
        [tasks[0].deadline.isoformat().replace("+00:00", "Z")] * 3  # type: ignore[union-attr]
    )
    results = await read(kafka.settings, f"{shadow}results", until=lambda r: len(r) >= 3)
    assert outcomes(results) == {t.event_id: [("succeeded", None)] for t in tasks}


async def test_a_redrive_after_the_deadline_gets_a_fresh_one_and_runs(
    kafka: Broker, tmp_path: Path
) -> None:
    names = TopicNames(prefix=f"rd{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe")
    agent, broken = agent_file(tmp_path)
    broken.touch()
    async with running_worker(kafka.settings, agent, names.prefix):
        tasks = due_tasks(3)
        ids = {t.event_id for t in tasks}
        await produce(kafka.settings, names.tasks("probe"), tasks)
        await read(kafka.settings, names.dlq("probe"), until=lambda r: len(r) >= 3)
        await past(tasks[0].deadline)
        broken.unlink()  # the fix is released; the same worker now serves

        kept = cli(kafka, "dlq", "redrive", "probe", "--prefix", names.prefix, "--all",
                   "--dry-run", "--keep-deadline", "--json")  # fmt: skip
        assert kept.returncode == 0, kept.stderr
        original = tasks[0].deadline.isoformat().replace("+00:00", "Z")  # type: ignore[union-attr]
        assert {r["deadline"] for r in last_json(kept)["redriven"]} == {original}
        before = utcnow()
        redriven = cli(kafka, "dlq", "redrive", "probe", "--prefix", names.prefix, "--all",
                       "--json")  # fmt: skip
        assert redriven.returncode == 0, redriven.stderr
        report = last_json(redriven)
        assert len(report["redriven"]) == 3
        for entry in report["redriven"]:
            fresh = datetime.fromisoformat(entry["deadline"])
            assert before + BUDGET <= fresh <= utcnow() + BUDGET, "not the original budget"
        results = await read(
            kafka.settings, names.results,
            until=lambda r: all(("succeeded", None) in o for o in outcomes(r).values())
            and set(outcomes(r)) == ids,
        )  # fmt: skip
    found = outcomes(results)
    assert set(found) == ids
    for task_id, seen in found.items():
        assert seen[-1] == ("succeeded", None), (task_id, seen)
        assert ("failed", "expired") not in seen, "a redriven task came back expired"
