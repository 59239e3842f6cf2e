"""``expediter replay`` on real topics: ranges by partition and offsets, time, key and workflow;
JSON lines, a timeline and a file; no consumer group ever moves; bad input writes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete

from expediter.dev import Broker
from expediter.errors import ConfigurationError
from expediter.events import TaskEvent
from expediter.messaging import client_options, connected
from expediter.messaging.topology import partition_for_key
from expediter.replaying import HistoryReader, Selection, json_line
from expediter.settings import KafkaSettings
from tests.support import produce, task

EXPEDITER = [sys.executable, "-m", "expediter.cli"]


def cli(
    kafka: Broker, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it: a separate process against the session's broker."""
    env = {**os.environ, "EXPEDITER_BOOTSTRAP": kafka.bootstrap, **(extra_env or {})}
    return subprocess.run(
        [*EXPEDITER, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def last_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout.strip(), result.stderr
    document: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return document


async def create(
    settings: KafkaSettings, name: str, partitions: int = 3, configs: dict[str, str] | None = None
) -> str:
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    return name


async def groups(settings: KafkaSettings) -> set[str]:
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        return {group[0] for group in await admin.list_consumer_groups()}


@pytest_asyncio.fixture
async def filled(kafka: Broker, topic_name: str) -> tuple[str, list[TaskEvent]]:
    """A 3-partition topic with 30 tasks of 5 workflows."""
    await create(kafka.settings, topic_name)
    events = [task(n, f"wf-{n % 5}") for n in range(30)]
    await produce(kafka.settings, topic_name, events)
    return topic_name, events


async def read(settings: KafkaSettings, selection: Selection) -> list[Any]:
    async with HistoryReader(settings) as reader:
        return await reader.fetch(selection)


async def test_partition_and_offset_range(
    kafka: Broker, filled: tuple[str, list[TaskEvent]]
) -> None:
    topic, _ = filled
    records = await read(
        kafka.settings, Selection(topic=topic, partitions=(1,), from_offset=1, to_offset=3)
    )
    assert [(r.partition, r.offset) for r in records] == [(1, 1), (1, 2), (1, 3)]
    every = await read(kafka.settings, Selection(topic=topic))
    assert len(every) == 30
    for partition in range(3):
        offsets = [r.offset for r in every if r.partition == partition]
        assert offsets == sorted(offsets), "each partition comes in offset order"


async def test_key_and_workflow_read_only_the_keys_partition(
    kafka: Broker, filled: tuple[str, list[TaskEvent]]
) -> None:
    topic, events = filled
    wanted = [e.event_id for e in events if e.workflow_id == "wf-3"]
    async with HistoryReader(kafka.settings) as reader:
        plan = await reader.plan(Selection(topic=topic, workflow_id="wf-3"))
        assert [r.partition for r in plan.ranges] == [partition_for_key(b"wf-3", 3)]
        by_workflow = await reader.records(plan)
        by_key = await reader.fetch(Selection(topic=topic, key="wf-3", all_partitions=True))
    for records in (by_workflow, by_key):
        assert [TaskEvent.model_validate_json(r.value).event_id for r in records] == wanted


async def test_time_range_through_offsets_for_times(kafka: Broker, topic_name: str) -> None:
    await create(kafka.settings, topic_name)
    early = [task(n, f"wf-{n}") for n in range(6)]
    await produce(kafka.settings, topic_name, early)
    await asyncio.sleep(0.3)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.3)
    late = [task(n, f"wf-{n}") for n in range(6, 12)]
    await produce(kafka.settings, topic_name, late)

    def ids(records: list[Any]) -> set[uuid.UUID]:
        return {TaskEvent.model_validate_json(r.value).event_id for r in records}

    since = await read(kafka.settings, Selection(topic=topic_name, since=middle))
    until = await read(kafka.settings, Selection(topic=topic_name, until=middle))
    assert ids(since) == {e.event_id for e in late}
    assert ids(until) == {e.event_id for e in early}


async def test_cli_json_lines_timeline_and_file(
    kafka: Broker, filled: tuple[str, list[TaskEvent]], tmp_path: Path
) -> None:
    topic, events = filled
    result = cli(kafka, "replay", topic, "--json")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 30
    assert {line["value"]["event_id"] for line in lines} == {str(e.event_id) for e in events}
    assert all(line["type"] == "task" and line["topic"] == topic for line in lines)
    assert all("traceparent" in line["headers"] for line in lines)

    timeline = cli(kafka, "replay", topic, "--workflow", "wf-2", "--partition", "0", "-p", "1",
                   "-p", "2")  # fmt: skip
    assert timeline.returncode == 0, timeline.stderr
    assert timeline.stdout.count("wf-2") == 6
    assert "replayed 6 record(s)" in timeline.stderr

    out = tmp_path / "range.jsonl"
    written = cli(kafka, "replay", topic, "--partition", "2", "--output", str(out))
    assert written.returncode == 0, written.stderr
    assert written.stdout == ""
    saved = [json.loads(line) for line in out.read_text().splitlines()]
    assert saved
    assert {line["partition"] for line in saved} == {2}
    assert files(tmp_path) == ["range.jsonl"]


async def test_replay_never_moves_a_group(
    kafka: Broker, filled: tuple[str, list[TaskEvent]]
) -> None:
    topic, _ = filled
    group = f"real-{uuid.uuid4().hex[:6]}"
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        **client_options(kafka.settings), group_id=group, enable_auto_commit=False
    )
    async with connected(consumer, kafka.settings):
        consumer.assign([tp])
        await consumer.commit({tp: 2})
    before = await groups(kafka.settings)
    result = cli(kafka, "replay", topic, "--json")
    assert result.returncode == 0, result.stderr
    assert await groups(kafka.settings) == before, "replay created a consumer group"
    consumer = AIOKafkaConsumer(
        **client_options(kafka.settings), group_id=group, enable_auto_commit=False
    )
    async with connected(consumer, kafka.settings):
        assert await consumer.committed(tp) == 2


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def refused(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


async def test_bad_input_exits_non_zero_and_writes_nothing(
    kafka: Broker, filled: tuple[str, list[TaskEvent]], tmp_path: Path
) -> None:
    topic, _ = filled
    out = tmp_path / "out.jsonl"
    refused(cli(kafka, "replay", f"{topic}x", "-o", str(out)), "does not exist", "did you mean")
    refused(cli(kafka, "replay", topic, "--from-offset", "50", "-o", str(out)), "empty range")
    refused(cli(kafka, "replay", topic, "--key", "no-such-key", "-o", str(out)), "empty range")
    refused(
        cli(kafka, "replay", topic, "--from-offset", "5", "--to-offset", "2", "-o", str(out)),
        "empty range",
    )
    refused(cli(kafka, "replay", topic, "--partition", "7", "-o", str(out)), "no partition 7")
    refused(cli(kafka, "replay", topic, "--since", "yesterday-ish"), "is not a time")
    assert files(tmp_path) == [], "a refused replay wrote a file"

    # A file that was there stays as it was.
    out.write_text("keep\n")
    refused(cli(kafka, "replay", topic, "--from-offset", "50", "-o", str(out)), "empty range")
    assert out.read_text() == "keep\n"


async def test_since_before_retention_start_is_refused(
    kafka: Broker, topic_name: str, tmp_path: Path
) -> None:
    await create(kafka.settings, topic_name, 1, {"retention.ms": str(3_600_000)})
    await produce(kafka.settings, topic_name, [task(n, "wf-r") for n in range(10)])
    out = tmp_path / "out.jsonl"
    refused(
        cli(kafka, "replay", topic_name, "--since", "2h", "-o", str(out)),
        "before the retention start",
        "keeps records for 1h",
    )
    ok = cli(kafka, "replay", topic_name, "--since", "30m", "--json")
    assert ok.returncode == 0, ok.stderr
    assert len(ok.stdout.splitlines()) == 10

    # Records deleted from the front: a time before the first one still held is refused too.
    async with connected(
        AIOKafkaAdminClient(**client_options(kafka.settings)), kafka.settings
    ) as admin:
        await admin.delete_records({TopicPartition(topic_name, 0): RecordsToDelete(4)})
    refused(
        cli(kafka, "replay", topic_name, "--since", "20m", "-o", str(out)),
        "now starts at offset 4",
    )
    refused(cli(kafka, "replay", topic_name, "--from-offset", "1"), "starts at offset 4")
    assert not out.exists()
    async with HistoryReader(kafka.settings) as reader:
        kept = await reader.fetch(Selection(topic=topic_name, from_offset=4))
        with pytest.raises(ConfigurationError, match="retention"):
            await reader.plan(
                Selection(topic=topic_name, since=datetime.now(UTC) - timedelta(minutes=20))
            )
    assert [r.offset for r in kept] == list(range(4, 10))


async def test_poison_values_come_as_base64(kafka: Broker, topic_name: str) -> None:
    await create(kafka.settings, topic_name, 1)
    await produce(kafka.settings, topic_name, [], raw=[(b"k", b"\x00\xffnot json"), (None, b"[1]")])
    records = await read(kafka.settings, Selection(topic=topic_name))
    poison, array = (json.loads(json_line(r)) for r in records)
    assert poison["value"] is None
    assert poison["value_base64"] == "AP9ub3QganNvbg=="
    assert poison["type"] == "record"
    assert array["value"] == [1]
    assert array["key"] is None
