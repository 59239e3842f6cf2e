"""``expediter up`` wakes an agent at zero for a task that waits in a retry tier alone.

A worker moves a task whose in-place tries are used up to ``retry.<capability>.10s``; the task
topic is then empty. With a trigger on the task topic only, KEDA (and the supervisor, which runs
the same engine on the same keda/ files) left such an agent at zero and the task never ran.
Here a task sits in the tier only: the supervisor starts a replica, the task runs from the tier,
and the agent goes back to zero after the cooldown.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from expediter.dev import Broker
from expediter.events import ResultEvent, TaskEvent, decode
from expediter.worker.delaying import RetryTiers
from tests.e2e.supervising import start_up
from tests.polling import until
from tests.support import TEST_PRODUCER, produce, read

pytestmark = pytest.mark.slow


async def test_up_wakes_an_agent_for_a_task_waiting_in_a_retry_tier(
    kafka: Broker, tmp_path: Path
) -> None:
    up = start_up(kafka, tmp_path)
    names, replicas = up.names, up.replicas
    tier = RetryTiers(names, "soil-analysis", [10, 60]).tiers[0].topic
    waiting = TaskEvent(producer=TEST_PRODUCER, workflow_id="wf-tier", step_id="soil",
                        capability="soil-analysis", input={"field_id": "field-1"})  # fmt: skip
    try:
        await until("the supervisor polls", lambda: replicas() == 0, 60)
        await produce(kafka.settings, tier, [waiting])  # the task topic stays empty
        await until("woken by the tier's trigger", lambda: replicas() >= 1, 30)
        results = await read(kafka.settings, names.results, until=lambda r: len(r) >= 1,
                             timeout=90)  # fmt: skip
        (result,) = [decode(r.value, ResultEvent) for r in results]
        assert result.task_id == waiting.event_id
        assert result.status == "succeeded"
        await until("back to 0 after the cooldown", lambda: replicas() == 0, 60)
    finally:
        code = up.stop()
    assert code == 0
    lines = up.events()
    scales = [(e["from"], e["to"]) for e in lines if e["event"] == "scale"]
    assert scales[0] == (0, 1), scales
    assert scales[-1] == (1, 0), scales
