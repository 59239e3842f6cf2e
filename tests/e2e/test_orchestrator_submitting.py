"""What `submit` reports about a workflow that failed, and the orchestrator's session timeout.

`submit --wait` exits 1 when a workflow did not complete, with --json as without it (a script
reads the code). The session timeout is a setting (EXPEDITER_SESSION_TIMEOUT_SECONDS) that
reaches Faust, with the request timeout above it as Faust requires.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from expediter.orchestrator.running import build_app
from expediter.settings import KafkaSettings, OrchestratorSettings
from tests.e2e.test_orchestrator import env, logs  # noqa: F401
from tests.support import cli, spawn, terminate

BROKEN = """
from expediter import Step, Workflow

def soil_input(state):
    return {"field_id": state.input["field_id"]}

workflow = Workflow(name="broken", stages=[Step("soil", "soil-analysis", soil_input)],
                    report=lambda s: {})
"""


@pytest.mark.slow
def test_submit_wait_exits_1_for_a_failed_workflow_with_or_without_json(
    env: dict[str, str],  # noqa: F811
    logs: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    applied = cli(["topics", "apply", "--prefix", env["EXPEDITER_TOPIC_PREFIX"], "--json"], env)
    assert applied.returncode == 0, applied.stderr
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "broken.py").write_text(BROKEN)
    orch: subprocess.Popen[bytes] = spawn(
        ["orchestrator", "--workflows", str(flows)], env, logs / "orchestrator.log"
    )
    try:
        # No input model: the input builder meets {} and raises, which fails the workflow.
        args = ["submit", "broken", "--workflows", str(flows), "--wait", "--timeout", "90"]
        as_json = cli([*args, "--json"], env, 150)
        plain = cli(args, env, 150)
    finally:
        terminate(orch)
    assert as_json.returncode == 1, as_json.stderr
    outcome = json.loads(as_json.stdout)["outcome"]
    assert outcome["status"] == "failed"
    assert "step soil: its input-builder raised KeyError('field_id')" in outcome["reason"]
    assert plain.returncode == 1, plain.stderr
    assert "1 did not succeed" in plain.stderr


def test_the_session_timeout_setting_reaches_faust(tmp_path: Path) -> None:
    settings = OrchestratorSettings(session_timeout_seconds=8, data_dir=tmp_path, http_port=0)
    app = build_app(KafkaSettings(), settings, {})
    assert app.conf.broker_session_timeout == 8
    assert app.conf.broker_heartbeat_interval < 8 / 3, "Kafka wants 3 heartbeats per session"
    assert app.conf.broker_request_timeout > 8, "Faust refuses request <= session timeout"
    slow = OrchestratorSettings(session_timeout_seconds=300, data_dir=tmp_path, http_port=0)
    assert build_app(KafkaSettings(), slow, {}).conf.broker_request_timeout > 300
