"""The deterministic engine: answers come from the agent's RuleBook, never from a model.

Tests and demos run agents with it (``EXPEDITER_ENGINE_KIND=rules``, the default), so a whole
workflow is repeatable and needs no weights. Chosen by
:func:`expediter.reasoning.engine_from_settings`; agent handlers call it through
``TaskContext.reason``.
"""

from __future__ import annotations

import json

from pydantic import ValidationError

from expediter.errors import EngineError
from expediter.events import TokenUsage
from expediter.reasoning.faults import EngineFault
from expediter.reasoning.protocol import OutputT, Reasoned, RuleBook

__all__ = ["RuleEngine"]


class RuleEngine:
    """A :class:`~expediter.reasoning.protocol.ReasoningEngine` backed by a RuleBook."""

    def __init__(self, rules: RuleBook | None = None, *, name: str = "rules") -> None:
        self._rules = rules
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        """No model: the agent's rulebook answers."""
        return "rulebook"

    async def start(self) -> None:
        """Nothing to load; present so the worker treats every engine alike."""

    async def stop(self) -> None:
        """Nothing to release."""

    async def reason(
        self,
        prompt: str,
        output_model: type[OutputT],
        *,
        system: str | None = None,
        max_tokens: int = 256,
        workflow_id: str | None = None,
    ) -> Reasoned[OutputT]:
        if self._rules is None:
            raise EngineError(
                f"engine {self._name!r} has no rulebook to answer a {output_model.__name__} "
                "request: give the agent `rules=` (a function (prompt, output model) -> output), "
                "or set EXPEDITER_ENGINE_KIND=llama or openai",
                retriable=False,
            )
        answer = self._rules(prompt, output_model)
        if not isinstance(answer, output_model):
            raise EngineFault(
                f"the agent's `rules=` returned {type(answer).__name__} where "
                f"{output_model.__name__} was asked for: make the rule return an instance of the "
                "output model it is called with",
                reason="invalid-output",
                retriable=False,
            )
        try:
            # A rule may build its answer with model_construct or mutate it: re-validating the
            # dump holds rules to the same contract a model's output meets.
            output = output_model.model_validate(answer.model_dump(mode="json"))
        except ValidationError as exc:
            raise EngineFault(
                f"the agent's `rules=` returned an invalid {output_model.__name__}: {exc}; "
                "fix the rule so that its answer validates",
                reason="invalid-output",
                retriable=False,
            ) from exc
        # Deterministic stand-ins for token counts, so metrics and cost reports are exercised
        # in tests and demos exactly as with a model.
        completion = json.dumps(output.model_dump(mode="json"))
        prompt_words = len(prompt.split()) + (len(system.split()) if system else 0)
        usage = TokenUsage(prompt_tokens=prompt_words, completion_tokens=len(completion.split()))
        return Reasoned(output=output, usage=usage)
