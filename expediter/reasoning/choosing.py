"""Picks the engine that the settings name; called by the worker at start-up and by shadow
re-runs (``expediter replay --rerun --engine``).

``EXPEDITER_ENGINE_KIND`` names one engine; ``EXPEDITER_ENGINE_ROUTES`` several, which then run
behind a :class:`~expediter.reasoning.routing.RoutingEngine` (fallbacks, breakers, a split).
Constructing an engine loads nothing: the worker then calls ``start()`` (which loads a model or
opens a connection pool) before joining its consumer group.
"""

from __future__ import annotations

import json
from typing import assert_never

from pydantic import ValidationError

from expediter.errors import ConfigurationError
from expediter.reasoning.llama import LlamaEngine
from expediter.reasoning.protocol import ReasoningEngine, RuleBook
from expediter.reasoning.remote import OpenAICompatibleEngine
from expediter.reasoning.routing import Route, RoutingEngine
from expediter.reasoning.rules import RuleEngine
from expediter.settings import EngineSettings, RouteSettings

__all__ = ["candidate_settings", "engine_from_settings"]


def engine_from_settings(settings: EngineSettings, *, rules: RuleBook | None) -> ReasoningEngine:
    """The engine for ``settings``: a routing engine over ``settings.routes`` when there are
    any, else the one engine of ``settings.kind``. ``rules`` is the agent's RuleBook, used only
    by the ``rules`` kind (which reports a missing one when first asked, not here: an agent
    whose handler never reasons needs none)."""
    if not settings.routes:
        return _one(settings, rules=rules, name=None)
    routes = []
    for route in settings.routes:
        own = settings.for_route(route)
        routes.append(Route(route.name, _one(own, rules=rules, name=route.name), own.timeout))
    return RoutingEngine(routes, split=settings.split, breaker=settings.breaker)


def candidate_settings(settings: EngineSettings, choice: str) -> EngineSettings:
    """Settings that route every call to the one engine named on a command line
    (``--engine``): a route of ``settings.routes`` by name, a kind (``rules``, ``llama``,
    ``openai``) with the other settings as they are, or a route as a JSON object
    (``{"name": "next", "kind": "openai", "model": "..."}``). Alone, with no fallback: every
    answer is that engine's, under its name."""
    chosen = next((route for route in settings.routes if route.name == choice), None)
    if chosen is None and choice in ("rules", "llama", "openai"):
        chosen = RouteSettings.model_validate({"name": choice, "kind": choice})
    if chosen is None and choice.lstrip().startswith("{"):
        try:
            chosen = RouteSettings.model_validate({"name": "candidate", **json.loads(choice)})
        except (ValueError, ValidationError) as exc:
            raise ConfigurationError(
                f"--engine {choice!r} is not a valid route ({exc}); give a JSON object with a "
                'kind and what differs, e.g. {"kind": "openai", "model": "next"}'
            ) from exc
    if chosen is None:
        names = [route.name for route in settings.routes]
        raise ConfigurationError(
            f"--engine {choice!r} is neither a route of EXPEDITER_ENGINE_ROUTES "
            f"({names or 'none'}) nor an engine kind (rules, llama, openai) nor a JSON route: "
            "name one of those"
        )
    return settings.model_copy(update={"routes": [chosen], "split": None})


def _one(settings: EngineSettings, *, rules: RuleBook | None, name: str | None) -> ReasoningEngine:
    match settings.kind:
        case "rules":
            return RuleEngine(rules, name=name or "rules")
        case "llama":
            return LlamaEngine(settings, name=name or "llama")
        case "openai":
            return OpenAICompatibleEngine(settings, name=name or "openai")
        case _:
            assert_never(settings.kind)
