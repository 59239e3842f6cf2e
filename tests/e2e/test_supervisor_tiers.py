"""``expediter up`` wakes an agent at zero for a task that waits in a retry tier alone.

A worker moves a task whose in-place tries are used up to ``retry.<capability>.10s``; the task
topic is then empty. With a trigger on the task topic only, KEDA (and the supervisor, which runs
the same engine on the same keda/ files) left such an agent at zero and the task never ran.
Here a task sits in the tier only: the supervisor starts a replica, the task runs from the tier,
and the agent goes back to zero after the cooldown.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest

from expediter.dev import Broker
from expediter.events import ResultEvent, TaskEvent, decode
from expediter.messaging import TopicNames
from expediter.supervising import read_state
from expediter.worker.delaying import RetryTiers
from tests.e2e.test_supervisor import until
from tests.support import TEST_PRODUCER, cli, produce, read, spawn

pytestmark = pytest.mark.slow


async def test_up_wakes_an_agent_for_a_task_waiting_in_a_retry_tier(
    kafka: Broker, tmp_path: Path
) -> None:
    prefix = f"r{uuid.uuid4().hex[:8]}."
    names = TopicNames(prefix)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EXPEDITER_")},
           "EXPEDITER_BOOTSTRAP": kafka.bootstrap, "EXPEDITER_TOPIC_PREFIX": prefix,
           "EXPEDITER_DRAIN_SECONDS": "10"}  # fmt: skip
    applied = cli(["topics", "apply", "--prefix", prefix, "--json"], env)
    assert applied.returncode == 0, applied.stderr
    state_dir = tmp_path / "state"
    output = tmp_path / "up.jsonl"
    args = ["up", "--agents", "soil_analyzer", "--polling-interval", "1", "--cooldown", "4",
            "--no-orchestrator", "--state-dir", str(state_dir), "--json"]  # fmt: skip
    up = spawn(args, env, output)
    state_file = state_dir / "supervisor.json"

    def replicas() -> int:
        state = read_state(state_file)
        return -1 if state is None else state.agents[0].replicas

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
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
        print(output.read_text()[-4000:])
    assert code == 0
    lines = [json.loads(line) for line in output.read_text().splitlines() if line.startswith("{")]
    scales = [(e["from"], e["to"]) for e in lines if e["event"] == "scale"]
    assert scales[0] == (0, 1), scales
    assert scales[-1] == (1, 0), scales
