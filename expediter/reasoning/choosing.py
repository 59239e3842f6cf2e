"""Picks the engine that ``EXPEDITER_ENGINE_KIND`` names; called by the worker at start-up.

Constructing an engine loads nothing: the worker then calls ``start()`` (which loads a model or
opens a connection pool) before joining its consumer group.
"""

from __future__ import annotations

from typing import assert_never

from expediter.reasoning.llama import LlamaEngine
from expediter.reasoning.protocol import ReasoningEngine, RuleBook
from expediter.reasoning.remote import OpenAICompatibleEngine
from expediter.reasoning.rules import RuleEngine
from expediter.settings import EngineSettings

__all__ = ["engine_from_settings"]


def engine_from_settings(settings: EngineSettings, *, rules: RuleBook | None) -> ReasoningEngine:
    """The engine for ``settings.kind``; ``rules`` is the agent's RuleBook, used only by the
    ``rules`` kind (which reports a missing one when first asked, not here: an agent whose
    handler never reasons needs none)."""
    match settings.kind:
        case "rules":
            return RuleEngine(rules)
        case "llama":
            return LlamaEngine(settings)
        case "openai":
            return OpenAICompatibleEngine(settings)
        case _:
            assert_never(settings.kind)
