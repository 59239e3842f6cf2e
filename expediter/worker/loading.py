"""Loading agents by path from ``agents/``, like a DAGs folder.

Each file is imported as a module of its own and must define ``agent = Agent(...)``. Called by
``expediter worker``, the schema exporter, the KEDA renderer and the compose check.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from expediter.errors import ConfigurationError
from expediter.worker.defining import Agent

__all__ = ["load_agent", "load_agents"]


def load_agent(path: Path) -> Agent[Any, Any]:
    """The ``agent`` of one agent file; a clear error when the file is not one."""
    if not path.is_file() or path.suffix != ".py":
        raise ConfigurationError(f"{path}: not a Python file; pass agents/<name>.py")
    name = f"expediter_agents.{path.stem}"
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
    agent = getattr(module, "agent", None)
    if not isinstance(agent, Agent):
        raise ConfigurationError(
            f"{path}: defines no `agent = Agent(...)` at module level; every agent file "
            "declares exactly one agent"
        )
    return agent


def load_agents(folder: Path) -> list[Agent[Any, Any]]:
    """Every agent in ``folder`` (files starting with ``_`` are helpers, not agents)."""
    if not folder.is_dir():
        raise ConfigurationError(f"{folder}: no such folder of agents")
    agents = [load_agent(p) for p in sorted(folder.glob("*.py")) if not p.stem.startswith("_")]
    seen: dict[str, str] = {}
    for agent in agents:
        if agent.capability in seen:
            raise ConfigurationError(
                f"capability {agent.capability!r} is declared by both {seen[agent.capability]} "
                f"and {agent.name}: one agent per capability"
            )
        seen[agent.capability] = agent.name
    return agents
