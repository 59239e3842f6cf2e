"""``expediter dlq list|show|redrive`` on real topics: dead letters a worker wrote, redriven to
their source with the attempt reset and a redrive header, once each, the DLQ left untouched."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition

from expediter.dev import Broker
from expediter.events import TaskEvent, decode
from expediter.messaging import TopicNames, client_options, connected
from expediter.replaying import REDRIVE_HEADER, HistoryReader, Selection
from expediter.settings import KafkaSettings
from tests.integration.test_replay import cli, last_json
from tests.integration.test_trace import PROBE
from tests.support import TEST_PRODUCER, create_topics, produce, read
from tests.workers import running_worker


async def everything(settings: KafkaSettings, topic: str) -> list[Any]:
    async with HistoryReader(settings) as reader:
        return await reader.fetch(Selection(topic=topic, allow_empty=True))


async def ends(settings: KafkaSettings, topic: str, partitions: int) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    async with connected(consumer, settings):
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        found: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        return found


@pytest_asyncio.fixture
async def dead(kafka: Broker) -> tuple[TopicNames, list[TaskEvent]]:
    """A DLQ with three letters: two permanent failures (one of a task on attempt 3) and one
    undecodable record; the worker is stopped afterwards, so redriven tasks stay put."""
    names = TopicNames(prefix=f"dl{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe")
    failing = [
        TaskEvent(
            producer=TEST_PRODUCER,
            workflow_id=f"wf-{n}",
            step_id=f"step-{n}",
            capability="probe",
            attempt=attempt,
            input={"n": n, "mode": "permanent"},
        )
        for n, attempt in ((1, 1), (2, 3))
    ]
    async with running_worker(kafka.settings, PROBE, names.prefix):
        await produce(kafka.settings, names.tasks("probe"), failing[:1])
        await read(kafka.settings, names.dlq("probe"), until=lambda r: len(r) >= 1)
        await produce(kafka.settings, names.tasks("probe"), failing[1:], raw=[(b"wf-x", b"{oops")])
        await read(kafka.settings, names.dlq("probe"), until=lambda r: len(r) >= 3)
    return names, failing


async def offsets_of(kafka: Broker, names: TopicNames) -> dict[str, int]:
    """The DLQ offset of each letter, by its workflow ("wf-x" for the poison record). Offsets
    are not 0, 1, 2: each transaction's commit marker takes an offset too."""
    listed = cli(kafka, "dlq", "list", "probe", "--prefix", names.prefix, "--json")
    assert listed.returncode == 0, listed.stderr
    return {
        letter["workflow_id"] or "wf-x": letter["offset"] for letter in last_json(listed)["letters"]
    }


async def test_list_and_show(kafka: Broker, dead: tuple[TopicNames, list[TaskEvent]]) -> None:
    names, failing = dead
    listed = cli(kafka, "dlq", "list", "probe", "--prefix", names.prefix, "--json")
    assert listed.returncode == 0, listed.stderr
    letters = last_json(listed)["letters"]
    assert letters[0]["workflow_id"] == "wf-1"
    assert sorted((x["reason"], x["workflow_id"] or "") for x in letters) == [
        ("permanent", "wf-1"),
        ("permanent", "wf-2"),
        ("undecodable", ""),
    ]
    by_workflow = {x["workflow_id"]: x for x in letters}
    assert by_workflow["wf-2"]["attempt"] == 3
    assert all(x["source_topic"] == names.tasks("probe") for x in letters)

    table = cli(kafka, "dlq", "list", names.dlq("probe"), "--reason", "undecodable")
    assert table.returncode == 0, table.stderr
    assert "undecodable" in table.stdout
    assert "1 dead letter(s)" in table.stdout

    at = await offsets_of(kafka, names)
    shown = cli(kafka, "dlq", "show", "probe", str(at["wf-2"]), f"0:{at['wf-x']}",
                "--prefix", names.prefix, "--json")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    task_letter, poison = last_json(shown)["letters"]
    assert task_letter["original"]["value"]["event_id"] == str(failing[1].event_id)
    assert task_letter["original"]["key"] == "wf-2"
    assert "traceparent" in task_letter["original"]["headers"]
    assert poison["original"]["value"] is None
    assert poison["original"]["value_base64"] == "e29vcHM="

    # --offset as in redrive, and the prefix from the environment as status and submit read it.
    text = cli(kafka, "dlq", "show", "probe", "--offset", str(at["wf-1"]),
               extra_env={"EXPEDITER_TOPIC_PREFIX": names.prefix})  # fmt: skip
    assert text.returncode == 0, text.stderr
    assert "bad-field" in text.stdout

    nothing = cli(kafka, "dlq", "show", "probe", "--prefix", names.prefix)
    assert nothing.returncode == 1
    assert "needs at least one OFFSET" in nothing.stderr


async def test_redrive_resets_attempt_marks_origin_and_is_idempotent(
    kafka: Broker, dead: tuple[TopicNames, list[TaskEvent]]
) -> None:
    names, failing = dead
    dlq, source = names.dlq("probe"), names.tasks("probe")
    dlq_before = [(r.offset, r.value, r.headers) for r in await everything(kafka.settings, dlq)]
    source_before = len(await everything(kafka.settings, source))

    at = await offsets_of(kafka, names)
    # Offsets as arguments, as in show (the second redrive below uses --offset).
    first = cli(kafka, "dlq", "redrive", "probe", str(at["wf-2"]), "--prefix", names.prefix,
                "--json")  # fmt: skip
    assert first.returncode == 0, first.stderr
    report = last_json(first)
    assert [r["letter"] for r in report["redriven"]] == [f"{dlq}/0/{at['wf-2']}"]
    assert report["redriven"][0]["attempt_reset"] is True
    assert report["skipped"] == []

    records = await everything(kafka.settings, source)
    assert len(records) == source_before + 1
    redriven = next(r for r in records if dict(r.headers).get(REDRIVE_HEADER))
    assert dict(redriven.headers)[REDRIVE_HEADER] == f"{dlq}/0/{at['wf-2']}".encode()
    assert "traceparent" in dict(redriven.headers)
    assert redriven.key == b"wf-2"
    event = decode(redriven.value, TaskEvent)
    assert (event.event_id, event.attempt, event.input) == (
        failing[1].event_id,
        1,
        failing[1].input,
    )
    original = json.loads(failing[1].model_dump_json())
    assert {k: v for k, v in json.loads(redriven.value).items() if k != "attempt"} == {
        k: v for k, v in original.items() if k != "attempt"
    }

    # Again, and with --all: the redriven letter is skipped and says where its redrive is.
    again = cli(kafka, "dlq", "redrive", "probe", "--prefix", names.prefix,
                "--offset", str(at["wf-2"]))  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert f"already redriven as {source}/" in again.stdout
    everything_else = cli(kafka, "dlq", "redrive", "probe", "--prefix", names.prefix,
                          "--all", "--json")  # fmt: skip
    assert everything_else.returncode == 0, everything_else.stderr
    report = last_json(everything_else)
    assert sorted(r["letter"] for r in report["redriven"]) == sorted(
        [f"{dlq}/0/{at['wf-1']}", f"{dlq}/0/{at['wf-x']}"]
    )
    assert [s["letter"] for s in report["skipped"]] == [f"{dlq}/0/{at['wf-2']}"]
    poison = next(r for r in report["redriven"] if r["letter"] == f"{dlq}/0/{at['wf-x']}")
    assert poison["attempt_reset"] is False
    records = await everything(kafka.settings, source)
    assert len(records) == source_before + 3
    assert b"{oops" in [r.value for r in records]

    # The DLQ is never changed.
    assert [(r.offset, r.value, r.headers) for r in await everything(kafka.settings, dlq)] == (
        dlq_before
    )


async def test_redrive_bad_input_writes_nothing(
    kafka: Broker, dead: tuple[TopicNames, list[TaskEvent]]
) -> None:
    names, _ = dead
    source = names.tasks("probe")
    before = await ends(kafka.settings, source, 3)

    def refused(*args: str, phrase: str) -> None:
        result = cli(kafka, "dlq", *args)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert phrase in result.stderr, result.stderr
        assert "Traceback" not in result.stderr

    prefix = ("--prefix", names.prefix)
    refused("redrive", "probe", *prefix, phrase="say which dead letters")
    refused("redrive", "probe", *prefix, "--offset", "0", "--offset", "99", phrase="no dead letter")
    refused("redrive", "probe", *prefix, "--reason", "nope", phrase="reasons there")
    refused("redrive", "probe", *prefix, "--offset", "x", phrase="PARTITION:OFFSET")
    refused("redrive", "nosuch", *prefix, "--all", phrase="does not exist")
    refused("list", "nosuch", *prefix, phrase="does not exist")
    refused("show", "probe", "77", *prefix, phrase="no dead letter at 0:77")
    assert await ends(kafka.settings, source, 3) == before

    dry = cli(kafka, "dlq", "redrive", "probe", *prefix, "--all", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert len(last_json(dry)["redriven"]) == 3
    assert await ends(kafka.settings, source, 3) == before


async def test_an_empty_dlq_lists_nothing_and_redrives_nothing(kafka: Broker) -> None:
    names = TopicNames(prefix=f"de{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka.settings, names, "probe")
    listed = cli(kafka, "dlq", "list", "probe", "--prefix", names.prefix, "--json")
    assert listed.returncode == 0, listed.stderr
    assert last_json(listed)["letters"] == []
    emptied = cli(kafka, "dlq", "redrive", "probe", "--prefix", names.prefix, "--all")
    assert emptied.returncode == 2
    assert "is empty" in emptied.stderr
