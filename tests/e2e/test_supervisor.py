"""``expediter up`` and ``expediter watch`` as processes, on a real broker.

The supervisor scales the soil analyzer from 0 on real lag, the tasks get processed, it scales
back to 0 after a short cooldown, ``watch --once --json`` reads the same broker, and SIGINT
stops everything with no child left behind.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from expediter.dev import Broker
from expediter.supervising import read_state
from tests.e2e.supervising import start_up
from tests.polling import alive, until
from tests.support import cli, produce, read, task

pytestmark = pytest.mark.slow
TASKS = 40


async def test_up_scales_from_zero_on_lag_and_back_after_cooldown(
    kafka: Broker, tmp_path: Path
) -> None:
    up = start_up(kafka, tmp_path)
    names, env, state_dir, replicas = up.names, up.env, up.state_dir, up.replicas
    try:
        await until("the supervisor polls", lambda: replicas() == 0, 60)
        events = [task(n, f"wf-{n}", capability="soil-analysis", field_id=f"field-{n}")
                  for n in range(TASKS)]  # fmt: skip
        await produce(kafka.settings, names.tasks("soil-analysis"), events)
        await until("scaled up on lag", lambda: replicas() >= 1, 30)
        results = await read(kafka.settings, names.results, until=lambda r: len(r) >= TASKS,
                             timeout=90)  # fmt: skip
        assert len(results) == TASKS
        await until("scaled back to 0 after the cooldown", lambda: replicas() == 0, 60)

        watched = cli(["watch", "--once", "--json", "--agents", "soil_analyzer", "--interval",
                       "0.5", "--state-dir", str(state_dir)], env)  # fmt: skip
        assert watched.returncode == 0, watched.stderr
        (row,) = json.loads(watched.stdout)["capabilities"]
        assert row["capability"] == "soil-analysis"
        assert row["partitions"] == 6
        assert sum(row["latest"]) == TASKS
        assert row["committed"] == row["latest"]
        assert (row["lag"], row["metric"], row["active"]) == (0, 0, False)
        assert row["actual"]["source"] == "supervisor"
        assert row["actual"]["replicas"] == 0
    finally:
        code = up.stop()
    assert code == 0
    lines = up.events()
    scales = [(e["from"], e["to"]) for e in lines if e["event"] == "scale"]
    assert scales[0] == (0, 1), scales
    assert scales[-1][1] == 0, scales
    assert max(to for _, to in scales) >= 1
    pids = [e["pid"] for e in lines if e["event"] == "start" and "pid" in e]
    assert pids, "no replica was started"
    assert not [pid for pid in pids if alive(pid)], "a child outlived the supervisor"
    assert not [e for e in lines if e["event"] == "exit" and e["how"] == "crashed"]
    final = read_state(up.state_file)
    assert final is not None
    assert not final.running
    assert final.agents[0].pids == []
    assert lines[-1]["event"] == "summary"


def test_up_refuses_bad_arguments(kafka: Broker) -> None:
    env = {**os.environ, "EXPEDITER_BOOTSTRAP": kafka.bootstrap}
    unknown = cli(["up", "--agents", "nope"], env)
    assert unknown.returncode == 2
    assert "no agent named nope" in unknown.stderr
    zero = cli(["up", "--polling-interval", "0"], env)
    assert zero.returncode == 2
    missing = cli(["up", "--agents", "soil_analyzer", "--no-orchestrator"],
                  {**env, "EXPEDITER_TOPIC_PREFIX": f"missing{uuid.uuid4().hex[:6]}."})  # fmt: skip
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr
