"""Shadow re-runs and ``expediter diff`` on real topics: the action agent's tasks re-run under a
prefix replay their recorded tool results (the outbox gets nothing new) and diff finds them
identical; a changed agent shows up field by field; bad input publishes nothing."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from expediter import load_agent
from expediter.dev import Broker
from expediter.events import ResultEvent, TaskEvent, decode
from expediter.messaging import TopicNames, client_options, connected
from expediter.replaying import (
    SHADOW_HEADER,
    HistoryReader,
    Selection,
    publish_shadow,
    run_shadow,
    shadow_target,
)
from expediter.settings import KafkaSettings
from tests.integration.test_dlq import everything
from tests.integration.test_replay import cli, last_json
from tests.support import TEST_PRODUCER, create_topics, produce, read
from tests.workers import running_worker

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "agents" / "action.py"
TUNABLE = ROOT / "tests" / "agents" / "tunable.py"


def action_task(n: int) -> TaskEvent:
    calls = [
        {"tool": "create_work_order", "arguments": {"field_id": f"f-{n}", "task": "scout"}},
        {"tool": "notify_agronomist", "arguments": {"field_id": f"f-{n}", "message": "look"}},
    ]
    return TaskEvent(
        producer=TEST_PRODUCER, workflow_id=f"wf-{n}", step_id="act", capability="action",
        input={"calls": calls},
    )  # fmt: skip


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def topics(settings: KafkaSettings) -> set[str]:
    async with HistoryReader(settings) as reader:
        return set(await reader.topics())


async def ends(settings: KafkaSettings, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    async with connected(consumer, settings):
        partitions = consumer.partitions_for_topic(topic) or {0}
        found: dict[TopicPartition, int] = await consumer.end_offsets(
            [TopicPartition(topic, p) for p in partitions]
        )
        return found


async def committed(settings: KafkaSettings, group: str, topic: str) -> dict[int, Any]:
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=group)
    async with connected(consumer, settings):
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(3)}


async def test_action_rerun_replays_recorded_tools_and_diff_is_identical(
    kafka: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = kafka.settings
    names = TopicNames(prefix=f"ra{uuid.uuid4().hex[:8]}.")
    await create_topics(settings, names, "action")
    outbox = tmp_path / "outbox.jsonl"
    monkeypatch.setenv("EXPEDITER_ACTION_OUTBOX", str(outbox))
    tasks = [action_task(n) for n in range(3)]
    async with running_worker(settings, ACTION, names.prefix):
        await produce(settings, names.tasks("action"), tasks)
        await read(settings, names.results, until=lambda r: len(r) >= 3)
    assert len(lines(outbox)) == 6
    outbox_before = outbox.read_text()
    ledger_before = await ends(settings, names.ledger)
    group_before = await committed(settings, names.group("action"), names.tasks("action"))

    shadow = f"{names.prefix}shadow."
    result = cli(kafka, "replay", names.tasks("action"), "--rerun", "--into", shadow,
                 "--run", str(ACTION), "--json",
                 extra_env={"EXPEDITER_ACTION_OUTBOX": str(outbox)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = last_json(result)
    assert report["published"] == 3
    assert (report["succeeded"], report["failed"], report["unrecorded"]) == (3, 0, 0)
    assert report["shadow_topic"] == f"{shadow}tasks.action"
    assert report["ledger_topic"] == names.ledger

    assert outbox.read_text() == outbox_before, "the shadow run repeated a side effect"
    assert await ends(settings, names.ledger) == ledger_before, "the shadow wrote the ledger"
    assert await committed(settings, names.group("action"), names.tasks("action")) == group_before

    originals = await everything(settings, names.tasks("action"))
    copies = await everything(settings, f"{shadow}tasks.action")
    assert sorted((r.partition, r.key, r.value) for r in copies) == sorted(
        (r.partition, r.key, r.value) for r in originals
    )
    assert sorted(dict(r.headers)[SHADOW_HEADER].decode() for r in copies) == sorted(
        f"{r.topic}/{r.partition}/{r.offset}" for r in originals
    )

    diff = cli(kafka, "diff", shadow, "--json", "--exit-code")
    assert diff.returncode == 0, diff.stderr
    document = last_json(diff)
    assert (document["compared"], document["identical"], document["changed"]) == (3, 3, 0)
    assert document["original_results"] == names.results
    text = cli(kafka, "diff", shadow)
    assert text.returncode == 0, text.stderr
    assert "3 identical, 0 changed" in text.stdout


async def test_a_changed_agent_shows_up_field_by_field(
    kafka: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = kafka.settings
    names = TopicNames(prefix=f"rt{uuid.uuid4().hex[:8]}.")
    await create_topics(settings, names, "tunable")
    monkeypatch.setenv("EXPEDITER_TEST_TUNING", "v1")
    tasks = [
        TaskEvent(
            producer=TEST_PRODUCER,
            workflow_id=f"wf-{n}",
            step_id="tune",
            capability="tunable",
            input={"n": n},
        )
        for n in range(4)
    ]
    async with running_worker(settings, TUNABLE, names.prefix):
        await produce(settings, names.tasks("tunable"), tasks)
        await read(settings, names.results, until=lambda r: len(r) >= 4)

    shadow = f"{names.prefix}v2."
    rerun = cli(kafka, "replay", names.tasks("tunable"), "--rerun", "--into", shadow,
                "--run", str(TUNABLE), extra_env={"EXPEDITER_TEST_TUNING": "v2"})  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert "4 succeeded" in rerun.stdout
    assert f"expediter diff {shadow}" in rerun.stdout

    diff = cli(kafka, "diff", shadow, "--json", "--exit-code")
    assert diff.returncode == 1, diff.stderr
    document = last_json(diff)
    assert (document["identical"], document["changed"]) == (0, 4)
    by_n: dict[int, list[dict[str, Any]]] = {}
    ids = {str(t.event_id): t.input["n"] for t in tasks}
    for entry in document["tasks"]:
        by_n[ids[entry["task_id"]]] = entry["changes"]
    for n, changes in by_n.items():
        label = {"path": "output.label", "kind": "changed", "old": f"v1-{n}", "new": f"v2-{n}"}
        assert label in changes
        scores = [c for c in changes if c["path"] == "output.score"]
        assert scores == ([{"path": "output.score", "kind": "changed", "old": n * 1.0,
                            "new": n * 1.5}] if n % 2 else [])  # fmt: skip
    table = cli(kafka, "diff", shadow)
    assert table.returncode == 0
    assert '"v1-1" → "v2-1"' in table.stdout


async def test_unrecorded_tool_calls_fail_instead_of_running(
    kafka: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = kafka.settings
    names = TopicNames(prefix=f"ru{uuid.uuid4().hex[:8]}.")
    await create_topics(settings, names, "action")
    outbox = tmp_path / "outbox.jsonl"
    monkeypatch.setenv("EXPEDITER_ACTION_OUTBOX", str(outbox))
    # Never run the first time, so the ledger has no record of its calls.
    await produce(settings, names.tasks("action"), [action_task(7)])
    target = shadow_target(names.tasks("action"), f"{names.prefix}s.")

    waiting = cli(kafka, "replay", names.tasks("action"), "--rerun", "--into", target.into)
    assert waiting.returncode == 0, waiting.stderr
    assert f"EXPEDITER_LEDGER_TOPIC={names.ledger}" in waiting.stdout
    pending = last_json(cli(kafka, "diff", target.into, "--json"))
    assert pending["pending"] == 1

    async with HistoryReader(settings) as reader:
        records = await reader.fetch(Selection(topic=names.tasks("action")))
        report, marks = await publish_shadow(settings, reader, records, target)
    report = await run_shadow(settings, report, load_agent(ACTION), marks, timeout=60)
    assert (report.failed, report.unrecorded, report.succeeded) == (1, 1, 0)
    assert lines(outbox) == []
    # Two shadow copies of the task by now (the CLI's, still unrun, and this one): both fail.
    results = [
        decode(r.value, ResultEvent) for r in await everything(settings, target.names.results)
    ]
    assert results
    assert {(r.status, r.error.code if r.error else None) for r in results} == {
        ("failed", "shadow-unrecorded")
    }


async def test_bad_rerun_input_publishes_nothing(kafka: Broker) -> None:
    settings = kafka.settings
    names = TopicNames(prefix=f"rb{uuid.uuid4().hex[:8]}.")
    await create_topics(settings, names, "action")
    await produce(settings, names.tasks("action"), [action_task(1)])
    shadow = f"{names.prefix}x."

    def refused(*args: str, phrase: str) -> None:
        result = cli(kafka, "replay", *args)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert phrase in result.stderr, result.stderr
        assert "Traceback" not in result.stderr

    refused(names.results, "--rerun", "--into", shadow, phrase="not a task topic")
    refused(names.tasks("action"), "--rerun", "--into", names.prefix, phrase="original prefix")
    refused(names.tasks("action"), "--rerun", "--into", shadow, "--from-offset", "99",
            phrase="empty range")  # fmt: skip
    probe = str(ROOT / "tests" / "agents" / "probe.py")
    refused(names.tasks("action"), "--rerun", "--into", shadow, "--run", probe,
            phrase="capability is 'probe'")  # fmt: skip
    refused(names.tasks("action"), "--into", shadow, phrase="--into goes with --rerun")
    refused(names.tasks("action"), "--rerun", phrase="needs --into")
    refused("nope.tasks.action", "--rerun", "--into", shadow, phrase="does not exist")
    assert not [t for t in await topics(settings) if t.startswith(shadow)]
    missing = cli(kafka, "diff", shadow)
    assert missing.returncode == 2
    assert "no shadow re-run" in missing.stderr
