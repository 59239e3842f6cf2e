"""The author's API: one package, imported from ``expediter`` only, light to load."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import expediter
from expediter import ConfigurationError, load_workflows

ROOT = Path(__file__).resolve().parents[2]
AUTHOR_FILES = sorted([*ROOT.glob("agents/*.py"), *ROOT.glob("workflows/*.py")])


@pytest.mark.parametrize("path", AUTHOR_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_agent_and_workflow_files_import_from_expediter_only(path: Path) -> None:
    inner = [
        node.module
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("expediter.")
    ]
    assert inner == [], f"{path.name} reaches into {inner}; import these names from `expediter`"


def test_the_author_names_are_exported_from_the_root() -> None:
    for name in ("Agent", "TaskContext", "Workflow", "Step", "Parallel", "All", "tool"):
        assert name in expediter.__all__
        assert getattr(expediter, name).__module__.startswith("expediter.authoring")


def test_loading_the_author_api_loads_no_kafka_client_and_no_engine() -> None:
    code = (
        "import sys, expediter; from pathlib import Path;"
        "expediter.load_agents(Path('agents')); expediter.load_workflows(Path('workflows'));"
        "heavy = ('aiokafka', 'faust', 'aiohttp', 'llama_cpp');"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_two_workflows_of_one_name_are_refused(tmp_path: Path) -> None:
    for stem in ("a", "b"):
        (tmp_path / f"{stem}.py").write_text(
            "from expediter import Step, Workflow\n"
            "workflow = Workflow(name='same', stages=[Step('s', 'cap', lambda s: {})],\n"
            "                    report=lambda s: {})\n"
        )
    with pytest.raises(ConfigurationError, match="already defined"):
        load_workflows(tmp_path)
