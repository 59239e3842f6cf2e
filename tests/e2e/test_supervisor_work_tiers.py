"""``expediter up`` wakes an agent scaled on pending work alone for a task that waits in a retry
tier (issue 18).

``expediter scaler`` counts the task topic only, so with the work trigger alone a task moved to
``retry.<capability>.10s`` left the agent at zero and never ran. ``keda render`` now gives such
an agent a Kafka trigger per tier that only wakes and keeps it (``WAKE_LAG_THRESHOLD``). Here the
probe's ScaledObject is what the renderer writes for ``signal="work"`` (the tiers' triggers, then
the work one), a task sits in its 10 s tier only, and the supervisor starts a replica that runs
it, then goes back to zero after the cooldown.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from expediter.deploying.kedaobjects import WAKE_LAG_THRESHOLD
from expediter.dev import Broker
from expediter.events import ResultEvent, decode
from expediter.messaging import TopicNames, client_options, connected
from expediter.supervising import read_state
from expediter.worker.delaying import RetryTiers
from tests.e2e.test_supervisor_work import PROBE
from tests.polling import until
from tests.support import cli, create_topics, produce, read, spawn, task, terminate

pytestmark = pytest.mark.slow

PARTITIONS = 2


def _scaled_object() -> dict[str, Any]:
    tiers = RetryTiers(TopicNames(), "probe", [10, 60]).tiers
    kafka = [
        {"type": "kafka", "name": f"retry-{tier.seconds}s", "metadata": {
            "bootstrapServersFromEnv": "EXPEDITER_BOOTSTRAP", "consumerGroup": "agents.probe",
            "topic": tier.topic, "lagThreshold": str(WAKE_LAG_THRESHOLD),
            "activationLagThreshold": "0", "offsetResetPolicy": "earliest"}}
        for tier in tiers
    ]  # fmt: skip
    work = {"type": "external", "name": "work", "metadata": {
        "scalerAddress": "expediter-scaler.expediter.svc:9090", "capability": "probe",
        "targetDrainSeconds": "10", "tokensPerSecond": "100"}}  # fmt: skip
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "probe", "labels": {"expediter.io/capability": "probe",
                                                 "expediter.io/scaling-signal": "work"}},
        "spec": {"scaleTargetRef": {"name": "probe"}, "minReplicaCount": 0,
                 "maxReplicaCount": PARTITIONS, "pollingInterval": 1, "cooldownPeriod": 4,
                 "triggers": [*kafka, work]},
    }  # fmt: skip


async def test_up_wakes_a_work_alone_agent_for_a_task_in_its_retry_tier(
    kafka: Broker, tmp_path: Path
) -> None:
    prefix = f"v{uuid.uuid4().hex[:8]}."
    names = TopicNames(prefix)
    await create_topics(kafka.settings, names, "probe", partitions=PARTITIONS)
    tiers = RetryTiers(names, "probe", [10, 60]).tiers
    async with connected(AIOKafkaAdminClient(**client_options(kafka.settings)),
                         kafka.settings) as admin:  # fmt: skip
        await admin.create_topics([NewTopic(t.topic, PARTITIONS, 1) for t in tiers])
    root = tmp_path / "repo"
    (root / "agents").mkdir(parents=True)
    (root / "keda").mkdir()
    shutil.copy(PROBE, root / "agents" / "probe.py")
    (root / "keda" / "probe.yaml").write_text(yaml.safe_dump(_scaled_object()))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EXPEDITER_")},
           "EXPEDITER_BOOTSTRAP": kafka.bootstrap, "EXPEDITER_TOPIC_PREFIX": prefix,
           "EXPEDITER_DRAIN_SECONDS": "5"}  # fmt: skip
    state_dir = tmp_path / "state"
    output = tmp_path / "up.jsonl"
    up = spawn(["up", "--root", str(root), "--no-orchestrator", "--state-dir", str(state_dir),
                "--json"], env, output)  # fmt: skip

    def agent() -> Any:
        state = read_state(state_dir / "supervisor.json")
        return None if state is None else state.agents[0]

    waiting = task(0, "wf-tier")
    try:
        await until("the supervisor polls", lambda: (a := agent()) and a.polled_at, 60)
        assert agent().desired == 0
        await produce(kafka.settings, tiers[0].topic, [waiting])  # the task topic stays empty
        await until("woken by the tier's trigger", lambda: agent().replicas >= 1, 30)
        # No pending work on the task topic: the tier keeps one replica, no more.
        assert agent().desired == 1
        assert agent().work_tokens == 0
        watched = cli(["watch", "--once", "--json", "--root", str(root), "--interval", "0.5",
                       "--state-dir", str(state_dir)], env)  # fmt: skip
        assert watched.returncode == 0, watched.stderr
        results = await read(kafka.settings, names.results, until=lambda r: len(r) >= 1,
                             timeout=90)  # fmt: skip
        (result,) = [decode(r.value, ResultEvent) for r in results]
        assert result.task_id == waiting.event_id
        assert result.status == "succeeded"
        await until("back to 0 after the cooldown", lambda: agent().replicas == 0, 60)
    finally:
        assert terminate(up) == 0, output.read_text()[-3000:]
