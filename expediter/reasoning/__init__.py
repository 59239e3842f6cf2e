"""Reasoning engines: a prompt and an output model in, a validated output and its cost out.

Which engine runs is configuration (``EXPEDITER_ENGINE_KIND``), never code:
:func:`engine_from_settings` picks one of :class:`RuleEngine` (the agent's deterministic
RuleBook), :class:`LlamaEngine` (llama.cpp in process, output constrained to the JSON schema) and
:class:`OpenAICompatibleEngine` (vLLM, llama-server). The worker builds and starts the engine;
agent handlers call it through ``TaskContext.reason``.
"""

from expediter.reasoning.choosing import engine_from_settings
from expediter.reasoning.llama import LlamaEngine
from expediter.reasoning.protocol import Reasoned, ReasoningEngine, RuleBook
from expediter.reasoning.remote import OpenAICompatibleEngine
from expediter.reasoning.rules import RuleEngine

__all__ = [
    "LlamaEngine",
    "OpenAICompatibleEngine",
    "Reasoned",
    "ReasoningEngine",
    "RuleBook",
    "RuleEngine",
    "engine_from_settings",
]
