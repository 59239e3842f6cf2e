"""Every bench runs and ends with one JSON line that carries its ratio to the baseline.

This checks the shape only (very short runs, against the session's broker where one is needed);
the figures come from `make bench`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from expediter.dev import Broker

BENCH = Path(__file__).resolve().parents[2] / "bench"
QUICK = {
    "bench_events.py": ["--seconds", "0.05", "--rounds", "1"],
    "bench_approvals.py": ["--pending", "20,50", "--finished", "50", "--scans", "2"],
    "bench_worker.py": [
        *("--tasks", "200", "--rounds", "1", "--rate", "20", "--seconds", "1", "--no-model"),
    ],
    "bench_replay.py": ["--records", "300", "--rounds", "1"],
    "bench_orchestrator.py": [
        *("--workflows", "20", "--rate", "10", "--latency-count", "10"),
        *("--warmup", "4"),
    ],
    "bench_scaleup.py": ["--tasks", "20", "--polling-interval", "1", "--rounds", "1"],
    "bench_retry.py": ["--others", "10", "--rate", "20", "--rounds", "1"],
    "bench_workscaling.py": ["--long-tasks", "2", "--short-tasks", "100"],
    "bench_curves.py": ["--tasks", "200", "--partitions", "2", "--rounds", "1"],
    "bench_orchestrator_table.py": ["--sizes", "50", "--timeout", "120"],
    "bench_llm.py": ["--tasks", "1", "--rounds", "1"],
}
NEEDS_BROKER = {
    "bench_worker.py", "bench_replay.py", "bench_orchestrator.py", "bench_scaleup.py",
    "bench_orchestrator_table.py",
    "bench_retry.py", "bench_curves.py", "bench_llm.py",
}  # fmt: skip


def _last_line(name: str, env: dict[str, str]) -> dict[str, float]:
    # Generous: bench_llm's quick run generates two plans on 2 threads, 1-2 min on an idle
    # 2-core machine and over 5 min with other work on it.
    result = subprocess.run(
        [sys.executable, str(BENCH / name), *QUICK[name]],
        capture_output=True, text=True, timeout=540, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    last: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return last


@pytest.mark.parametrize("name", sorted(set(QUICK) - NEEDS_BROKER))
def test_bench_prints_its_ratio_last(name: str) -> None:
    assert _last_line(name, dict(os.environ))["ratio"] > 0


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", sorted(NEEDS_BROKER))
def test_broker_bench_prints_its_ratio_last(name: str, kafka: Broker) -> None:
    last = _last_line(name, {**os.environ, "EXPEDITER_BOOTSTRAP": kafka.bootstrap})
    assert last["ratio"] > 0


def test_every_bench_is_exercised() -> None:
    assert sorted(p.name for p in BENCH.glob("bench_*.py")) == sorted(QUICK)
