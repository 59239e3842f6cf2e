"""``expediter keda simulate`` as a user runs it: a separate process, the committed scenario files
under tests/scenarios, exact JSON lines, and bad files refused with exit 2 naming file and key.

The expected lines were worked out by hand; each scenario's description says what it shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
SIMULATE = [sys.executable, "-m", "expediter.cli", "keda", "simulate"]


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIMULATE, *args], capture_output=True, text=True, timeout=60, check=False
    )


def lines(*rows: tuple[int, int, int, bool, int]) -> str:
    keys = ("t", "lag", "metric", "active", "replicas")
    return "".join(json.dumps(dict(zip(keys, row, strict=True))) + "\n" for row in rows)


def test_burst_without_behavior() -> None:
    result = simulate("--scenario", str(SCENARIOS / "burst_no_behavior.json"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == lines(
        (0, 3, 3, True, 1),  # no committed offsets: lag 1 per partition; KEDA 0 -> 1
        (15, 35, 35, True, 4),  # 35 // 10 = 3 is not > 3: uncapped, ceil(3.5) = 4 replicas
        (30, 60, 30, True, 4),  # capped to 30; proposes 3, the 300 s window holds 4
        (45, 0, 0, False, 4),  # cooling down until after 30 + 60
        (90, 0, 0, False, 4),  # 90 is not after 90
        (91, 0, 0, False, 0),  # KEDA 4 -> 0
        (105, 0, 0, False, 0),
        (120, 10, 10, True, 1),  # KEDA 0 -> 1
    )
    assert result.stderr == ""


def test_stuck_partition_with_behavior() -> None:
    result = simulate("--scenario", str(SCENARIOS / "stuck_partition_behavior.json"))
    assert result.returncode == 0, result.stderr
    assert result.stdout == lines(
        (0, 2, 2, False, 0),  # 2 is not > activationLagThreshold 2
        (15, 0, 0, True, 1),  # every partition stuck at its offset: active on persistent lag
        (30, 120, 20, True, 2),  # proposes 4; +1 pod per 60 s
        (45, 120, 20, True, 2),  # the +1 at t=30 is inside the 60 s period
        (90, 0, 0, True, 1),  # -50% per 30 s, p3 still stuck keeps it active
        (100, 0, 0, True, 1),
        (110, 0, 0, False, 1),  # cooling down until after 100 + 30
        (131, 0, 0, False, 0),
    )


def test_explain_goes_to_stderr_and_leaves_stdout_alone() -> None:
    plain = simulate("--scenario", str(SCENARIOS / "burst_no_behavior.json"))
    explained = simulate("--scenario", str(SCENARIOS / "burst_no_behavior.json"), "--explain")
    assert explained.returncode == 0
    assert explained.stdout == plain.stdout
    reasons = explained.stderr.splitlines()
    assert len(reasons) == 8
    assert "KEDA 0 -> 1" in reasons[0]
    assert "HPA does not act" in reasons[0]
    assert "cooling down" in reasons[3]


def test_a_bad_scenario_exits_2_naming_the_file_the_key_and_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    trigger = {"lagThreshold": "0", "allowIdleConsumers": "true",
               "limitToPartitionsWithLag": "true", "topic": "t"}  # fmt: skip
    steps = [{"t": 0, "latest": [1], "committed": [0]}]
    bad.write_text(json.dumps({"trigger": trigger, "steps": steps}))
    result = simulate("--scenario", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert f"{bad}: trigger.lagThreshold must be > 0" in message
    assert '"10"' in message
    assert "allowIdleConsumers and trigger.limitToPartitionsWithLag" in message


def test_a_missing_or_malformed_file_exits_2(tmp_path: Path) -> None:
    missing = simulate("--scenario", str(tmp_path / "nope.json"))
    assert missing.returncode == 2
    assert "nope.json" in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"steps": [}')
    result = simulate("--scenario", str(broken))
    assert result.returncode == 2
    assert "not valid JSON" in " ".join(result.stderr.split())
