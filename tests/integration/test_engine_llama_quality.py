"""The reasoning agent's plans from the real Gemma 3 270M: for a fixed set of 20 inputs, no text
field holds JSON punctuation (the fragments a tiny model writes when the prompt never shows it
what a field should say), and each plan names a tool the action agent has.

The 20 plans are generated once for the module, with the agent's own prompt, SYSTEM, grammar
(at most MAX_STEPS steps) and MAX_TOKENS, exactly as its handler asks. Slow (20 generations of
~150 tokens); CI runs it with the other slow tests, and without the ``[llm]`` extra it fails
rather than skips.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_asyncio

from expediter.reasoning import LlamaEngine
from expediter.settings import EngineSettings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

AGENT_FILE = Path(__file__).parents[2] / "agents" / "reasoning.py"
GOALS = [
    "Plan today's work for the field",
    "Decide whether the field needs treatment",
    "Protect the crop this week",
    "Prepare the field for a heat wave",
]
CONTEXTS: list[dict[str, Any]] = [
    {"pests": 0, "moisture_pct": 35},
    {"pests": 14, "moisture_pct": 30},
    {"pests": 3, "moisture_pct": 12},
    {"pests": 0, "moisture_pct": 8, "crop": "maize"},
    {"pests": 25, "moisture_pct": 9, "crop": "wheat", "ndvi": 0.41},
]
FRAGMENT = re.compile(r'[{}\[\]]|":|"\s*,|,\s*"')
"""Braces, brackets, a key's quote-colon, a quote next to a comma: JSON, not words."""
TOOLS = {"create_work_order", "schedule_irrigation", "notify_agronomist"}


def _agent_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reasoning_agent_under_test", AGENT_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def plans() -> AsyncIterator[list[Any]]:
    agent = _agent_module()
    # The time limit is the test's (pytest-timeout), not a call's: on a loaded machine one
    # plan took over the engine's default 120 s.
    engine = LlamaEngine(EngineSettings(kind="llama", timeout=900))
    await engine.start()
    try:
        answers = []
        for n, (goal, context) in enumerate((g, c) for g in GOALS for c in CONTEXTS):
            task = agent.ReasoningInput(goal=goal, field_id=f"field-{n}", context=context)
            reasoned = await engine.reason(
                agent.prompt_for(task),
                agent.Plan,
                system=agent.SYSTEM,
                max_tokens=agent.MAX_TOKENS,
            )
            answers.append(reasoned.output)
        yield answers
    finally:
        await engine.stop()


def _texts(plan: Any) -> list[str]:
    texts = [plan.summary]
    for step in plan.steps:
        texts += [step.action, step.rationale, *step.arguments.values()]
    return texts


async def test_no_text_field_holds_json_fragments(plans: list[Any]) -> None:
    assert len(plans) == 20
    fragments = [text for plan in plans for text in _texts(plan) if FRAGMENT.search(text)]
    assert fragments == []


async def test_each_plan_names_a_tool_of_the_action_agent(plans: list[Any]) -> None:
    toolless = [plan.summary for plan in plans if not {s.tool for s in plan.steps} & TOOLS]
    assert toolless == []
