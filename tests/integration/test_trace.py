"""``expediter trace`` on real topics: one workflow's history across task, result, DLQ and state
topics, in time order, each hop with its latency; a worker in-process makes the results."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from expediter.dev import Broker
from expediter.events import WorkflowEvent, WorkflowStatus
from expediter.messaging import TopicNames, client_options, connected
from expediter.replaying import HistoryReader, trace_workflow
from expediter.settings import KafkaSettings
from tests.integration.test_replay import cli, last_json
from tests.support import TEST_PRODUCER, create_topics, produce, read, task
from tests.workers import running_worker

PROBE = Path(__file__).resolve().parents[1] / "agents" / "probe.py"


async def publish_workflow_event(
    settings: KafkaSettings, names: TopicNames, workflow_id: str, status: WorkflowStatus,
    step_id: str | None = None,
) -> None:  # fmt: skip
    event = WorkflowEvent(
        producer=TEST_PRODUCER, workflow_id=workflow_id, workflow="field-analysis",
        status=status, step_id=step_id,
    )  # fmt: skip
    await produce(settings, names.workflow_events, [event])  # type: ignore[list-item]


async def make_history(kafka: Broker) -> tuple[TopicNames, str]:
    """A two-step workflow: step-1 succeeds after ~50 ms, step-2 fails for good (result plus
    dead letter); workflow events around them; another workflow's records beside it."""
    names = TopicNames(prefix=f"tr{uuid.uuid4().hex[:8]}.")
    settings = kafka.settings
    await create_topics(settings, names, "probe")
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        await admin.create_topics([NewTopic(names.workflow_events, 3, 1)])
    workflow = "wf-traced"
    async with running_worker(settings, PROBE, names.prefix):
        await publish_workflow_event(settings, names, workflow, "started")
        await publish_workflow_event(settings, names, workflow, "step-started", "step-1")
        await produce(settings, names.tasks("probe"), [task(1, workflow, sleep=0.05)])
        await produce(settings, names.tasks("probe"), [task(9, "wf-other")])
        await read(settings, names.results, until=lambda r: len(r) >= 2)
        await publish_workflow_event(settings, names, workflow, "step-completed", "step-1")
        await publish_workflow_event(settings, names, workflow, "step-started", "step-2")
        await produce(settings, names.tasks("probe"), [task(2, workflow, mode="permanent")])
        await read(settings, names.dlq("probe"), until=lambda r: len(r) >= 1)
        await publish_workflow_event(settings, names, workflow, "failed")
    return names, workflow


async def test_trace_links_every_hop_in_time_order(kafka: Broker) -> None:
    names, workflow = await make_history(kafka)
    async with HistoryReader(kafka.settings) as reader:
        trace = await trace_workflow(reader, workflow, prefix=names.prefix)
    assert set(trace.topics) == {
        names.tasks("probe"),
        names.results,
        names.dlq("probe"),
        names.workflow_events,
    }
    kinds = [(e.type, e.step_id, (e.value or {}).get("status")) for e in trace.entries]
    assert kinds == [
        ("workflow", None, "started"),
        ("workflow", "step-1", "step-started"),
        ("task", "step-1", None),
        ("result", "step-1", "succeeded"),
        ("workflow", "step-1", "step-completed"),
        ("workflow", "step-2", "step-started"),
        ("task", "step-2", None),
        ("result", "step-2", "failed"),
        ("dead-letter", "step-2", None),
        ("workflow", None, "failed"),
    ]
    assert [e.at for e in trace.entries] == sorted(e.at for e in trace.entries)
    by = {(e.type, e.step_id, (e.value or {}).get("status")): e for e in trace.entries}
    task1, result1 = by[("task", "step-1", None)], by[("result", "step-1", "succeeded")]
    assert by[("task", "step-1", None)].after == by[("workflow", "step-1", "step-started")].ref
    assert result1.after == task1.ref
    assert result1.latency_ms is not None
    assert result1.latency_ms >= 50
    assert by[("workflow", "step-1", "step-completed")].after == result1.ref
    task2 = by[("task", "step-2", None)]
    assert by[("dead-letter", "step-2", None)].after == task2.ref
    assert by[("result", "step-2", "failed")].after == task2.ref
    assert by[("workflow", None, "failed")].after_type == "result"
    assert trace.duration_ms >= result1.latency_ms
    assert all(e.value.get("workflow_id") == workflow for e in trace.entries)


async def test_trace_cli_json_timeline_and_unknown_workflow(kafka: Broker) -> None:
    names, workflow = await make_history(kafka)
    result = cli(kafka, "trace", workflow, "--prefix", names.prefix, "--json")
    assert result.returncode == 0, result.stderr
    document = last_json(result)
    assert document["ok"] is True
    assert document["records"] == 10
    hops = [e for e in document["entries"] if e["type"] == "result"]
    assert all(e["after_type"] == "task" and e["latency_ms"] >= 0 for e in hops)
    json.dumps(document)  # round-trips

    # The prefix from the environment, as status and submit read it.
    timeline = cli(kafka, "trace", workflow, extra_env={"EXPEDITER_TOPIC_PREFIX": names.prefix})
    assert timeline.returncode == 0, timeline.stderr
    assert "task → result" in timeline.stdout
    holding = len({e["topic"] for e in document["entries"]})
    assert f"10 record(s) in {holding} topic(s) ({len(document['topics'])} searched)" in (
        timeline.stdout
    )

    missing = cli(kafka, "trace", "wf-nobody", "--prefix", names.prefix, "--json")
    assert missing.returncode == 2
    assert "no records in 4 topics" in missing.stderr
    assert last_json(missing)["ok"] is False
    nowhere = cli(kafka, "trace", workflow, "--prefix", "no-such-prefix.")
    assert nowhere.returncode == 2
    assert "no workflow topics" in nowhere.stderr
