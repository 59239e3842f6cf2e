"""Every bench runs and ends with one JSON line that carries its ratio to the baseline.

This checks the shape only (a very short run); the figures come from `make bench`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
QUICK = {"bench_events.py": ["--seconds", "0.05", "--rounds", "1"]}


@pytest.mark.parametrize("name", sorted(QUICK))
def test_bench_prints_its_ratio_last(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / name), *QUICK[name]],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last["ratio"] > 0


def test_every_bench_is_exercised() -> None:
    assert sorted(p.name for p in BENCH.glob("bench_*.py")) == sorted(QUICK)
