"""``expediter up`` and ``expediter watch`` on an agent scaled on pending work (issue 18).

A repository whose keda/ holds one ScaledObject with the work-based ``external`` trigger alone:
``up`` reads the scaler's answer in process (the same ``measure`` that answers KEDA's
GetMetrics) and runs as many workers as KEDA and the HPA would for the pending tokens, not for
the record count; ``watch --once --json`` shows the work metric beside the lag.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from expediter.dev import Broker
from expediter.events import to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.scaling.estimating import EXPECTED_TOKENS_HEADER
from expediter.supervising import read_state
from tests.polling import until
from tests.support import cli, create_topics, spawn, task, terminate

pytestmark = pytest.mark.slow

PROBE = Path(__file__).resolve().parents[1] / "agents" / "probe.py"
TARGET_DRAIN_SECONDS = 10
TOKENS_PER_SECOND = 100
"""One replica's unit is 1,000 tokens within the target."""
SCALED_OBJECT = f"""\
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: probe
  labels:
    expediter.io/capability: probe
spec:
  scaleTargetRef:
    name: probe
  minReplicaCount: 0
  maxReplicaCount: 4
  pollingInterval: 1
  cooldownPeriod: 300
  triggers:
    - type: external
      name: work
      metadata:
        scalerAddress: expediter-scaler.expediter.svc:9090
        capability: probe
        targetDrainSeconds: "{TARGET_DRAIN_SECONDS}"
        tokensPerSecond: "{TOKENS_PER_SECOND}"
"""


async def _produce(kafka: Broker, topic: str, costs: list[int], sleep: float) -> None:
    async with connected(AIOKafkaProducer(**client_options(kafka.settings)), kafka.settings) as p:
        for n, tokens in enumerate(costs):
            record = to_record(task(n, f"wf-{n}", sleep=sleep))
            headers = [*record.headers, (EXPECTED_TOKENS_HEADER, str(tokens).encode())]
            await p.send(topic, record.value, key=record.key, headers=headers)
        await p.flush()


async def test_up_scales_on_pending_tokens_and_watch_shows_the_work_metric(
    kafka: Broker, tmp_path: Path
) -> None:
    prefix = f"w{uuid.uuid4().hex[:8]}."
    names = TopicNames(prefix)
    await create_topics(kafka.settings, names, "probe", partitions=4)
    root = tmp_path / "repo"
    (root / "agents").mkdir(parents=True)
    (root / "keda").mkdir()
    shutil.copy(PROBE, root / "agents" / "probe.py")
    (root / "keda" / "probe.yaml").write_text(SCALED_OBJECT)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EXPEDITER_")},
           "EXPEDITER_BOOTSTRAP": kafka.bootstrap, "EXPEDITER_TOPIC_PREFIX": prefix,
           "EXPEDITER_DRAIN_SECONDS": "5"}  # fmt: skip
    state_dir = tmp_path / "state"
    up = spawn(["up", "--root", str(root), "--no-orchestrator", "--state-dir", str(state_dir),
                "--json"], env, tmp_path / "up.jsonl")  # fmt: skip

    def agent() -> Any:
        state = read_state(state_dir / "supervisor.json")
        return None if state is None else state.agents[0]

    try:
        await until("the supervisor polls", lambda: (a := agent()) and a.polled_at, 60)
        assert agent().desired == 0
        # Two tasks of 1,500 tokens that take a while: 30 s of one replica's work, capped at
        # one replica a task, so 2 replicas (lag 2 would be one replica at lagThreshold 2).
        await _produce(kafka, names.tasks("probe"), [1500, 1500], sleep=30)
        await until("scaled on the work", lambda: agent().desired == 2, 60)
        seen = agent()
        assert seen.work_tokens == 3000
        assert seen.work_metric == 2 * TARGET_DRAIN_SECONDS  # capped: one replica a task

        watched = cli(["watch", "--once", "--json", "--root", str(root), "--interval", "0.5",
                       "--state-dir", str(state_dir)], env)  # fmt: skip
        assert watched.returncode == 0, watched.stderr
        (row,) = json.loads(watched.stdout)["capabilities"]
        assert row["work"]["tokens"] == 3000
        assert row["work"]["seconds"] == 2 * TARGET_DRAIN_SECONDS
        assert row["actual"]["desired"] == 2
    finally:
        assert terminate(up) == 0, (tmp_path / "up.jsonl").read_text()[-3000:]
