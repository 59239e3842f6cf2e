"""``expediter up`` and ``expediter watch`` as processes, on a real broker.

The supervisor scales the soil analyzer from 0 on real lag, the tasks get processed, it scales
back to 0 after a short cooldown, ``watch --once --json`` reads the same broker, and SIGINT
stops everything with no child left behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from expediter.dev import Broker
from expediter.messaging import TopicNames
from expediter.supervising import read_state
from tests.support import cli, produce, read, spawn, task

pytestmark = pytest.mark.slow
TASKS = 40


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def until(what: str, condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        await asyncio.sleep(0.2)


async def test_up_scales_from_zero_on_lag_and_back_after_cooldown(
    kafka: Broker, tmp_path: Path
) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}."
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
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=60)
        print(output.read_text()[-4000:])
    assert code == 0
    lines = [json.loads(line) for line in output.read_text().splitlines() if line.startswith("{")]
    scales = [(e["from"], e["to"]) for e in lines if e["event"] == "scale"]
    assert scales[0] == (0, 1), scales
    assert scales[-1][1] == 0, scales
    assert max(to for _, to in scales) >= 1
    pids = [e["pid"] for e in lines if e["event"] == "start" and "pid" in e]
    assert pids, "no replica was started"
    assert not [pid for pid in pids if alive(pid)], "a child outlived the supervisor"
    assert not [e for e in lines if e["event"] == "exit" and e["how"] == "crashed"]
    final = read_state(state_file)
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
