"""What a worker process loads: a small image without a model relies on it.

``expediter worker`` resolves only its own command (expediter.cli imports each command's module
when it runs), serves /metrics, /healthz and /readyz without a web framework, and never reads
the topic catalog, so none of aiohttp, yaml, faust, kubernetes, kopf, gRPC or prometheus_client
(it writes its /metrics itself) is imported. Each check runs in a fresh interpreter: this test
process has imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("aiohttp", "yaml", "faust", "mode", "kubernetes", "kopf", "grpc", "rich", "llama_cpp",
         "prometheus_client")  # fmt: skip


def loaded_after(code: str) -> list[str]:
    """The HEAVY packages in sys.modules after ``code`` runs in a fresh interpreter."""
    report = f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    probe = f"{code}\nimport json, sys\n{report}"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_the_worker_command_imports_no_framework_it_does_not_use() -> None:
    # What `expediter worker agents/x.py` imports before its loop starts: the CLI resolving
    # the command, the command's module, the worker, an agent and the default engine.
    code = """
import typer
from pathlib import Path
from expediter.cli import app
root = typer.main.get_command(app)
assert root.get_command(typer.Context(root), "worker") is not None
import expediter.cli.worker
from expediter.authoring.loading import load_agent
from expediter.reasoning import engine_from_settings
from expediter.settings import EngineSettings
from expediter.worker.working import Worker
agent = load_agent(Path("agents/soil_analyzer.py"))
engine_from_settings(EngineSettings.from_env(), rules=agent.rules)
"""
    assert loaded_after(code) == []


def test_help_lists_commands_without_importing_them() -> None:
    code = """
import contextlib, io, sys
from expediter.cli import app
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    app(["--help"])
assert "expediter.cli.orchestrating" not in sys.modules
assert "expediter.cli.worker" not in sys.modules
"""
    assert [m for m in loaded_after(code) if m != "rich"] == []  # rich prints the help
