"""Routing on a real broker without a model: a 10 % split to a candidate lands within its
binomial bounds and keeps each workflow on one engine, and every result says which engine
answered. The model-backed faults (a primary that stops, the breaker, a slow server, a shadow
comparison of two engines) are in test_routing_llm.py.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from expediter import load_agent
from expediter.dev import Broker
from expediter.events import TaskEvent
from expediter.messaging import TopicNames
from expediter.reasoning import ReasoningEngine, engine_from_settings
from expediter.settings import (
    EngineSettings,
    KafkaSettings,
    RouteSettings,
    SplitSettings,
)
from expediter.worker.working import Worker
from tests.binomial import binomial_bounds
from tests.support import TEST_PRODUCER, create_topics, produce, read
from tests.workers import running_worker

TRIAGE = Path(__file__).resolve().parents[1] / "agents" / "triage.py"
AGENT = load_agent(TRIAGE)


def routed_worker(
    settings: KafkaSettings, prefix: str, engine: ReasoningEngine, **overrides: Any
) -> AbstractAsyncContextManager[Worker]:
    """The triage agent in-process under ``prefix`` on ``engine``, until the block ends."""
    return running_worker(settings, AGENT, prefix, engine=engine, timeout=120, **overrides)


def triage_task(workflow: str, step: str, note: str = "dry for weeks") -> TaskEvent:
    return TaskEvent(
        producer=TEST_PRODUCER, workflow_id=workflow, step_id=step, capability="triage",
        input={"field_id": f"f-{step}", "note": note},
    )  # fmt: skip


async def results_by_task(
    settings: KafkaSettings, names: TopicNames, count: int, timeout: float = 120
) -> dict[str, dict[str, Any]]:
    """The first ``count`` distinct results by task id (a duplicate fails the test)."""
    found: dict[str, dict[str, Any]] = {}

    def done(records: list[Any]) -> bool:
        for record in records[len(found) :]:
            document = json.loads(record.value)
            assert document["task_id"] not in found, f"a second result for {document['task_id']}"
            found[document["task_id"]] = document
        return len(found) >= count

    await read(settings, names.results, until=done, timeout=timeout)
    return found


async def test_a_ten_percent_split_is_within_binomial_bounds_and_sticky(kafka: Broker) -> None:
    settings = kafka.settings
    names = TopicNames(prefix=f"rs{uuid.uuid4().hex[:8]}.")
    await create_topics(settings, names, "triage")
    engine = engine_from_settings(
        EngineSettings(
            routes=[
                RouteSettings(name="primary", kind="rules"),
                RouteSettings(name="candidate", kind="rules"),
            ],
            split=SplitSettings(route="candidate", share=0.1),
        ),
        rules=AGENT.rules,
    )
    workflows = [f"wf-{uuid.uuid4()}" for _ in range(1000)]
    tasks = [triage_task(workflow, step) for workflow in workflows for step in ("a", "b")]
    async with routed_worker(settings, names.prefix, engine) as worker:
        await produce(settings, names.tasks("triage"), tasks)
        results = await results_by_task(settings, names, len(tasks), timeout=240)
        meters = worker.engine.meters  # type: ignore[attr-defined]

    assert set(results) == {str(task.event_id) for task in tasks}, "a task was lost"
    engines: dict[str, set[str]] = defaultdict(set)
    for result in results.values():
        [call] = result["reasoning"]
        assert call["split"] in ("primary", "candidate")
        assert (call["engine"], call["fallback"]) == (call["split"], False)
        engines[result["workflow_id"]].add(call["engine"])
    assert all(len(seen) == 1 for seen in engines.values()), "a workflow saw both engines"
    on_candidate = sum(1 for seen in engines.values() if seen == {"candidate"})
    # Each workflow id is random and the split hashes it, so each workflow is an independent
    # draw with p = 0.1, and the count is Binomial(1000, 0.1). The bounds hold the middle
    # 1 - 1e-6 of it (about 53..147): a correct split fails this once in a million runs, while a
    # split at 5 % or 20 % (or one that ignores the share) falls outside almost surely.
    low, high = binomial_bounds(len(workflows), 0.1, 1e-6)
    assert low <= on_candidate <= high, (on_candidate, low, high)
    assert meters["candidate"].answered == 2 * on_candidate
    assert meters["primary"].answered == 2 * (len(workflows) - on_candidate)
