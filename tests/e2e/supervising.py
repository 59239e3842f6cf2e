"""``expediter up`` as a process for the e2e tests: the soil analyzer under a fresh prefix on
the session broker, its replicas read from the supervisor's state file, stopped with SIGINT as
a person would. Used by test_supervisor.py and test_supervisor_tiers.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expediter.dev import Broker
from expediter.messaging import TopicNames
from expediter.supervising import read_state
from tests.support import cli, spawn

__all__ = ["Up", "start_up"]


@dataclass
class Up:
    names: TopicNames
    env: dict[str, str]
    state_dir: Path
    output: Path
    process: subprocess.Popen[bytes]

    @property
    def state_file(self) -> Path:
        return self.state_dir / "supervisor.json"

    def replicas(self) -> int:
        """The soil analyzer's replicas, or -1 before the supervisor wrote its state."""
        state = read_state(self.state_file)
        return -1 if state is None else state.agents[0].replicas

    def stop(self) -> int:
        """SIGINT, as Ctrl-C; the exit code (its output is printed for a failing test)."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=60)
        print(self.output.read_text()[-4000:])
        return code

    def events(self) -> list[dict[str, Any]]:
        lines = self.output.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


def start_up(kafka: Broker, tmp_path: Path) -> Up:
    """The catalog applied under a fresh prefix, and ``up`` for the soil analyzer on it (polling
    every second, a 4 s cooldown, no orchestrator), writing JSON lines."""
    names = TopicNames(f"s{uuid.uuid4().hex[:8]}.")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("EXPEDITER_")},
           "EXPEDITER_BOOTSTRAP": kafka.bootstrap, "EXPEDITER_TOPIC_PREFIX": names.prefix,
           "EXPEDITER_DRAIN_SECONDS": "10"}  # fmt: skip
    applied = cli(["topics", "apply", "--prefix", names.prefix, "--json"], env)
    assert applied.returncode == 0, applied.stderr
    state_dir = tmp_path / "state"
    output = tmp_path / "up.jsonl"
    args = ["up", "--agents", "soil_analyzer", "--polling-interval", "1", "--cooldown", "4",
            "--no-orchestrator", "--state-dir", str(state_dir), "--json"]  # fmt: skip
    return Up(names, env, state_dir, output, spawn(args, env, output))
