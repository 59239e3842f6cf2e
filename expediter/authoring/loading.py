"""Loading what authors write, by path: agent files from ``agents/``, workflow files from
``workflows/``, like a DAGs folder.

Each file is imported as a module of its own and must define one ``agent = Agent(...)`` or
``workflow = Workflow(...)`` at module level. Files whose name starts with ``_`` are helpers,
not definitions. Called by ``expediter worker``, the orchestrator's CLI, the schema exporter,
the KEDA renderer, replay's shadow re-run and the compose check.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from expediter.authoring.agents import Agent
from expediter.authoring.workflows import Workflow
from expediter.errors import ConfigurationError

__all__ = ["load_agent", "load_agents", "load_workflows"]


def load_agent(path: Path) -> Agent[Any, Any]:
    """The ``agent`` of one agent file; a clear error when the file is not one."""
    agent = _definition(path, "agent", "expediter_agents")
    if not isinstance(agent, Agent):
        raise ConfigurationError(
            f"{path}: defines no `agent = Agent(...)` at module level; every agent file "
            "declares exactly one agent"
        )
    return agent


def load_agents(folder: Path) -> list[Agent[Any, Any]]:
    """Every agent in ``folder``, one capability each."""
    if not folder.is_dir():
        raise ConfigurationError(f"{folder}: no such folder of agents")
    agents = [load_agent(p) for p in _files(folder)]
    seen: dict[str, str] = {}
    for agent in agents:
        if agent.capability in seen:
            raise ConfigurationError(
                f"capability {agent.capability!r} is declared by both {seen[agent.capability]} "
                f"and {agent.name}: one agent per capability"
            )
        seen[agent.capability] = agent.name
    return agents


def load_workflows(folder: Path) -> dict[str, Workflow]:
    """Every ``workflow = Workflow(...)`` in ``folder/*.py``, by name."""
    if not folder.is_dir():
        raise ConfigurationError(f"{folder}: no such folder of workflows (--workflows)")
    found: dict[str, Workflow] = {}
    for path in _files(folder):
        workflow = _definition(path, "workflow", "expediter_workflows")
        if not isinstance(workflow, Workflow):
            raise ConfigurationError(f"{path}: defines no `workflow = Workflow(...)`")
        if workflow.name in found:
            raise ConfigurationError(
                f"{path}: workflow {workflow.name!r} is already defined in {folder}; "
                "give each workflow its own name"
            )
        found[workflow.name] = workflow
    return found


def _files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.glob("*.py")) if not p.stem.startswith("_")]


def _definition(path: Path, attribute: str, namespace: str) -> object:
    """``path`` imported as ``namespace.<stem>``, and its module-level ``attribute``."""
    if not path.is_file() or path.suffix != ".py":
        raise ConfigurationError(f"{path}: not a Python file; pass {namespace[10:]}/<name>.py")
    name = f"{namespace}.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before exec so that pydantic can resolve the file's own forward references.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{path}: {exc}") from exc
    except Exception as exc:
        raise ConfigurationError(f"{path}: importing it failed ({exc!r}); fix the file") from exc
    return getattr(module, attribute, None)
