"""Tools against a real broker: the allowlist, argument validation, and the ledger that makes a
redelivered task reuse recorded results instead of repeating side effects."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pydantic import BaseModel, Field

from expediter import TaskContext, Tool, load_agent, tool
from expediter.dev import Broker
from expediter.errors import ConfigurationError, PermanentError, ToolError
from expediter.messaging import client_options, connected
from expediter.reasoning import RuleEngine
from expediter.tools import ToolBox, ToolLedger

ACTION_AGENT = Path(__file__).resolve().parents[2] / "agents" / "action.py"


class TicketArgs(BaseModel):
    subject: str = Field(min_length=1, max_length=40)
    count: int = Field(ge=1, le=10)


class Ticket(BaseModel):
    ticket_id: str
    subject: str


class Effects:
    """A tool with an observable side effect: each run appends to ``runs``."""

    def __init__(self) -> None:
        self.runs: list[TicketArgs] = []

        @tool(name="open_ticket", description="Open a ticket.")
        async def open_ticket(args: TicketArgs) -> Ticket:
            self.runs.append(args)
            # A fresh id per run: a replayed result is recognisable as the recorded one.
            return Ticket(ticket_id=uuid.uuid4().hex, subject=args.subject)

        @tool(name="close_ticket")
        async def close_ticket(args: TicketArgs) -> Ticket:
            self.runs.append(args)
            return Ticket(ticket_id="closed", subject=args.subject)

        self.open_ticket: Tool[TicketArgs, Ticket] = open_ticket
        self.close_ticket: Tool[TicketArgs, Ticket] = close_ticket


@pytest_asyncio.fixture
async def ledger_topic(kafka: Broker, topic_name: str) -> str:
    created = await ToolLedger(kafka.settings, topic=topic_name).ensure_topic(partitions=2)
    assert created
    return topic_name


@pytest_asyncio.fixture
async def ledger(kafka: Broker, ledger_topic: str) -> AsyncIterator[ToolLedger]:
    async with ToolLedger(kafka.settings, topic=ledger_topic) as started:
        yield started


async def test_ensure_topic_creates_a_compacted_topic_once(kafka: Broker, topic_name: str) -> None:
    ledger = ToolLedger(kafka.settings, topic=topic_name)
    with pytest.raises(ConfigurationError, match=r"does not exist.*ensure_topic"):
        await ledger.start()
    assert await ToolLedger(kafka.settings, topic=topic_name).ensure_topic() is True
    assert await ToolLedger(kafka.settings, topic=topic_name).ensure_topic() is False
    async with connected(
        AIOKafkaAdminClient(**client_options(kafka.settings)), kafka.settings
    ) as admin:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic_name)]
        )
        configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
    assert configs["cleanup.policy"] == "compact"


async def test_ensure_topic_refuses_a_topic_whose_records_expire(
    kafka: Broker, topic_name: str
) -> None:
    async with connected(
        AIOKafkaAdminClient(**client_options(kafka.settings)), kafka.settings
    ) as admin:
        await admin.create_topics([NewTopic(topic_name, 1, 1)])
    with pytest.raises(ConfigurationError, match=r"cleanup.policy=.delete.*compact"):
        await ToolLedger(kafka.settings, topic=topic_name).ensure_topic()


async def test_a_tool_outside_the_allowlist_is_refused(ledger: ToolLedger) -> None:
    effects = Effects()
    box = ToolBox([effects.open_ticket], ledger, task_id=uuid.uuid4(), step_id="s1")
    with pytest.raises(ToolError, match="'close_ticket' is not allowlisted") as refused:
        await box.call("close_ticket", {"subject": "x", "count": 1})
    assert "allowed: open_ticket" in str(refused.value)
    assert refused.value.code == "tool-not-allowed"
    assert not refused.value.retriable
    assert effects.runs == []
    assert await ledger.lookup(box.task_id, "s1", 0) is None


async def test_invalid_arguments_are_refused_with_the_field_errors(ledger: ToolLedger) -> None:
    effects = Effects()
    box = ToolBox([effects.open_ticket], ledger, task_id=uuid.uuid4(), step_id="s1")
    with pytest.raises(ToolError) as refused:
        await box.call("open_ticket", {"subject": "", "count": 99})
    message = str(refused.value)
    assert "subject: String should have at least 1 character" in message
    assert "count: Input should be less than or equal to 10" in message
    assert refused.value.code == "invalid-tool-arguments"
    with pytest.raises(ToolError, match="count: Field required"):
        await box.call("open_ticket", {"subject": "x"})
    assert effects.runs == []
    assert await ledger.lookup(box.task_id, "s1", 0) is None
    # Refused calls take no position: the first call that runs is call 0.
    await box.call("open_ticket", {"subject": "x", "count": "2"})
    assert (await ledger.lookup(box.task_id, "s1", 0)) is not None


async def test_a_call_runs_once_and_is_recorded(kafka: Broker, ledger: ToolLedger) -> None:
    effects = Effects()
    task_id = uuid.uuid4()
    box = ToolBox([effects.open_ticket], ledger, task_id=task_id, step_id="s1")
    result = await box.call("open_ticket", {"subject": "fence", "count": "3"})
    assert result["subject"] == "fence"
    assert len(effects.runs) == 1
    entry = await ledger.lookup(task_id, "s1", 0)
    assert entry is not None
    assert entry.tool == "open_ticket"
    assert entry.arguments == {"subject": "fence", "count": 3}  # validated, not as sent
    assert entry.result == result
    # The record is in Kafka under <task_id>/<step_id>/<n>, as JSON.
    consumer = AIOKafkaConsumer(
        ledger.topic, **client_options(kafka.settings), auto_offset_reset="earliest"
    )
    async with connected(consumer, kafka.settings), asyncio.timeout(30):
        record = await consumer.getone()
    assert record.key == f"{task_id}/s1/0".encode()
    value = json.loads(record.value)
    assert set(value) == {"tool", "arguments", "result", "recorded_at"}
    assert value["result"] == result
    # A second call of the same task is another call (n=1): it runs.
    again = await box.call("open_ticket", {"subject": "fence", "count": 3})
    assert again["ticket_id"] != result["ticket_id"]
    assert len(effects.runs) == 2


async def test_a_redelivered_task_on_another_replica_reuses_the_record(
    kafka: Broker, ledger_topic: str
) -> None:
    effects = Effects()
    task_id = uuid.uuid4()
    calls = [("open_ticket", {"subject": "a", "count": 1}), ("close_ticket", {"subject": "a",
             "count": 1})]  # fmt: skip
    allowlist = [effects.open_ticket, effects.close_ticket]
    # Replica B is up before replica A records: its lookup must read what came after.
    async with (
        ToolLedger(kafka.settings, topic=ledger_topic) as replica_a,
        ToolLedger(kafka.settings, topic=ledger_topic) as replica_b,
    ):
        await replica_b.lookup(task_id, "s1", 0)  # B has read the topic as it was
        first = ToolBox(allowlist, replica_a, task_id=task_id, step_id="s1")
        results = [await first.call(name, args) for name, args in calls]
        assert len(effects.runs) == 2
        redelivered = ToolBox(allowlist, replica_b, task_id=task_id, step_id="s1")
        assert [await redelivered.call(name, args) for name, args in calls] == results
        assert len(effects.runs) == 2
    # A replica started after the fact reads it from the beginning of the topic.
    async with ToolLedger(kafka.settings, topic=ledger_topic) as replica_c:
        late = ToolBox(allowlist, replica_c, task_id=task_id, step_id="s1")
        assert [await late.call(name, args) for name, args in calls] == results
        # The same task's other step is not the same call.
        other = ToolBox(allowlist, replica_c, task_id=task_id, step_id="s2")
        assert await other.call(*calls[0]) != results[0]
    assert len(effects.runs) == 3


async def test_a_diverging_replay_is_a_permanent_error(
    kafka: Broker, ledger_topic: str, ledger: ToolLedger
) -> None:
    effects = Effects()
    task_id = uuid.uuid4()
    allowlist = [effects.open_ticket, effects.close_ticket]
    first = ToolBox(allowlist, ledger, task_id=task_id, step_id="s1")
    await first.call("open_ticket", {"subject": "a", "count": 1})
    async with ToolLedger(kafka.settings, topic=ledger_topic) as other:
        replay = ToolBox(allowlist, other, task_id=task_id, step_id="s1")
        with pytest.raises(PermanentError, match="replay diverged") as diverged:
            await replay.call("open_ticket", {"subject": "a", "count": 2})
        assert diverged.value.code == "replay-diverged"
        assert "'count': 1" in str(diverged.value)
        assert "'count': 2" in str(diverged.value)
        renamed = ToolBox(allowlist, other, task_id=task_id, step_id="s1")
        with pytest.raises(PermanentError, match=r"recorded open_ticket.*asks close_ticket"):
            await renamed.call("close_ticket", {"subject": "a", "count": 1})
    assert len(effects.runs) == 1


async def test_an_unreadable_record_is_not_rerun_until_cleared(
    kafka: Broker, ledger: ToolLedger
) -> None:
    effects = Effects()
    task_id = uuid.uuid4()
    key = f"{task_id}/s1/0".encode()
    options = client_options(kafka.settings)
    async with connected(AIOKafkaProducer(**options, acks="all"), kafka.settings) as producer:
        await producer.send_and_wait(ledger.topic, b"{not json", key=key)
        box = ToolBox([effects.open_ticket], ledger, task_id=task_id, step_id="s1")
        with pytest.raises(PermanentError, match=r"unreadable.*tombstone"):
            await box.call("open_ticket", {"subject": "a", "count": 1})
        assert effects.runs == []
        await producer.send_and_wait(ledger.topic, None, key=key)  # an operator clears it
    box = ToolBox([effects.open_ticket], ledger, task_id=task_id, step_id="s1")
    await box.call("open_ticket", {"subject": "a", "count": 1})
    assert len(effects.runs) == 1


def _outbox_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_the_action_agent_twice_for_one_task_writes_its_outbox_once(
    kafka: Broker,
    ledger_topic: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outbox = tmp_path / "outbox.jsonl"
    monkeypatch.setenv("EXPEDITER_ACTION_OUTBOX", str(outbox))
    agent = load_agent(ACTION_AGENT)
    task = agent.input_model.model_validate(
        {
            "calls": [
                {"tool": "create_work_order", "arguments": {"field_id": "field-7",
                 "task": "treat north-east corner", "priority": "high"}},
                {"tool": "schedule_irrigation", "arguments": {"field_id": "field-7",
                 "minutes": "45"}},
                {"tool": "notify_agronomist", "arguments": {"field_id": "field-7",
                 "message": "treatment and irrigation scheduled", "severity": "warning"}},
            ]
        }
    )  # fmt: skip

    async def deliver(task_id: uuid.UUID, attempt: int) -> Any:
        # Each delivery gets a ledger of its own, as a fresh replica would.
        async with ToolLedger(kafka.settings, topic=ledger_topic) as ledger:
            ctx = TaskContext(
                task_id=task_id,
                workflow_id="wf-field-7",
                step_id="act",
                attempt=attempt,
                engine=RuleEngine(),
                tools=ToolBox(agent.tools, ledger, task_id=task_id, step_id="act"),
                log=logging.getLogger("tests.action"),
            )
            return await agent.handler(task, ctx)

    task_id = uuid.uuid4()
    first = await deliver(task_id, 1)
    lines = _outbox_lines(outbox)
    assert [line["kind"] for line in lines] == ["work-order", "irrigation", "notification"]
    assert first.results[0].result["work_order_id"] == lines[0]["id"]
    assert first.results[1].result["irrigation_id"] == lines[1]["id"]
    again = await deliver(task_id, 2)
    assert again == first
    assert _outbox_lines(outbox) == lines
    # Another task is other work: its effects happen.
    await deliver(uuid.uuid4(), 1)
    assert len(_outbox_lines(outbox)) == 6


async def test_the_action_agent_refuses_a_tool_it_does_not_list(
    ledger: ToolLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "outbox.jsonl"
    monkeypatch.setenv("EXPEDITER_ACTION_OUTBOX", str(outbox))
    agent = load_agent(ACTION_AGENT)
    task_id = uuid.uuid4()
    ctx = TaskContext(
        task_id=task_id,
        workflow_id="wf",
        step_id="act",
        attempt=1,
        engine=RuleEngine(),
        tools=ToolBox(agent.tools, ledger, task_id=task_id, step_id="act"),
        log=logging.getLogger("tests.action"),
    )
    task = agent.input_model.model_validate({"calls": [{"tool": "drop_database", "arguments": {}}]})
    with pytest.raises(ToolError, match="'drop_database' is not allowlisted"):
        await agent.handler(task, ctx)
    assert not outbox.exists()
