"""Reasoning engines: a prompt and an output model in, a validated output and its cost out.

Which engine runs is configuration (``EXPEDITER_ENGINE_KIND``), never code:
:func:`engine_from_settings` picks one of :class:`RuleEngine` (the agent's deterministic
RuleBook), :class:`LlamaEngine` (llama.cpp in process, output constrained to the JSON schema) and
:class:`OpenAICompatibleEngine` (vLLM, llama-server), or, with ``EXPEDITER_ENGINE_ROUTES``, a
:class:`RoutingEngine` over several of them (fallbacks, circuit breakers, a split to a
candidate). The worker builds and starts the engine, always behind a RoutingEngine so that every
call is recorded and metered; agent handlers call it through ``TaskContext.reason``.
"""

from expediter.reasoning.breaking import CircuitBreaker
from expediter.reasoning.choosing import candidate_settings, engine_from_settings
from expediter.reasoning.faults import EngineFault
from expediter.reasoning.llama import LlamaEngine
from expediter.reasoning.metering import EngineMeter
from expediter.reasoning.protocol import Reasoned, ReasoningEngine, RuleBook
from expediter.reasoning.remote import OpenAICompatibleEngine
from expediter.reasoning.routing import Route, RoutingEngine, split_side
from expediter.reasoning.rules import RuleEngine

__all__ = [
    "CircuitBreaker",
    "EngineFault",
    "EngineMeter",
    "LlamaEngine",
    "OpenAICompatibleEngine",
    "Reasoned",
    "ReasoningEngine",
    "Route",
    "RoutingEngine",
    "RuleBook",
    "RuleEngine",
    "candidate_settings",
    "engine_from_settings",
    "split_side",
]
