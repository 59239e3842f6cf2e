"""The rule engine and the choice of engine by settings: no model, no server, no broker."""

from __future__ import annotations

import sys
from enum import StrEnum

import pytest
from pydantic import BaseModel, Field

from expediter.errors import ConfigurationError, EngineError
from expediter.reasoning import (
    LlamaEngine,
    OpenAICompatibleEngine,
    ReasoningEngine,
    RuleEngine,
    engine_from_settings,
)
from expediter.reasoning.llama import _grammar_schema
from expediter.settings import EngineSettings


class Risk(StrEnum):
    LOW = "low"
    HIGH = "high"


class Verdict(BaseModel):
    risk: Risk
    score: int = Field(ge=0, le=10)
    reasons: list[str]


class Other(BaseModel):
    note: str


def verdict_rules(prompt: str, output_model: type[BaseModel]) -> BaseModel:
    high = "flood" in prompt
    return Verdict(
        risk=Risk.HIGH if high else Risk.LOW, score=8 if high else 2, reasons=["by rule"]
    )


async def test_rule_engine_answers_with_the_rulebook_and_counts_words() -> None:
    engine = RuleEngine(verdict_rules)
    await engine.start()
    reasoned = await engine.reason("field 7 after the flood", Verdict, system="be careful")
    await engine.stop()

    assert reasoned.output == Verdict(risk=Risk.HIGH, score=8, reasons=["by rule"])
    # 5 prompt words + 2 system words; the JSON {"risk": "high", "score": 8, "reasons": ["by
    # rule"]} splits into 7 whitespace-separated pieces.
    assert reasoned.usage.prompt_tokens == 7
    assert reasoned.usage.completion_tokens == 7


async def test_rule_engine_is_deterministic() -> None:
    engine = RuleEngine(verdict_rules)
    first = await engine.reason("dry field", Verdict)
    second = await engine.reason("dry field", Verdict)
    assert first == second
    assert first.output.risk is Risk.LOW


def test_rule_engine_satisfies_the_protocol() -> None:
    engine = RuleEngine(verdict_rules, name="soil-rules")
    assert isinstance(engine, ReasoningEngine)
    assert engine.name == "soil-rules"


async def test_without_a_rulebook_the_error_names_the_agents_rules() -> None:
    with pytest.raises(EngineError, match=r"rules=") as caught:
        await RuleEngine().reason("anything", Verdict)
    assert caught.value.retriable is False
    assert "Verdict" in str(caught.value)


async def test_a_rule_returning_another_model_is_a_permanent_error() -> None:
    engine = RuleEngine(lambda prompt, model: Other(note="wrong"))
    with pytest.raises(EngineError, match=r"returned Other where Verdict") as caught:
        await engine.reason("x", Verdict)
    assert caught.value.retriable is False
    assert "rules=" in str(caught.value)


async def test_a_rule_answer_that_does_not_validate_is_a_permanent_error() -> None:
    # model_construct skips validation, as a careless rule might.
    engine = RuleEngine(lambda p, m: Verdict.model_construct(risk=Risk.LOW, score=99, reasons=[]))
    with pytest.raises(EngineError, match=r"invalid Verdict") as caught:
        await engine.reason("x", Verdict)
    assert caught.value.retriable is False


def test_settings_choose_the_rule_engine_with_the_agents_rules() -> None:
    engine = engine_from_settings(EngineSettings(kind="rules"), rules=verdict_rules)
    assert isinstance(engine, RuleEngine)
    assert engine.name == "rules"


async def test_the_rules_kind_without_rules_fails_when_asked_not_when_built() -> None:
    engine = engine_from_settings(EngineSettings(kind="rules"), rules=None)
    with pytest.raises(EngineError, match="rules="):
        await engine.reason("x", Verdict)


def test_settings_choose_llama_and_openai_without_loading_anything() -> None:
    llama = engine_from_settings(EngineSettings(kind="llama"), rules=verdict_rules)
    remote = engine_from_settings(EngineSettings(kind="openai"), rules=None)
    assert isinstance(llama, LlamaEngine)
    assert llama.name == "llama"
    assert llama.load_seconds == 0.0
    assert isinstance(remote, OpenAICompatibleEngine)
    assert remote.name == "openai"
    assert isinstance(llama, ReasoningEngine)
    assert isinstance(remote, ReasoningEngine)


def test_the_kind_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPEDITER_ENGINE_KIND", "openai")
    monkeypatch.setenv("EXPEDITER_ENGINE_BASE_URL", "http://vllm:8000/v1")
    assert isinstance(engine_from_settings(EngineSettings(), rules=None), OpenAICompatibleEngine)


@pytest.mark.parametrize("kind", ["llama", "openai"])
async def test_model_engines_refuse_to_reason_before_start(kind: str) -> None:
    engine = engine_from_settings(EngineSettings(kind=kind), rules=None)  # type: ignore[arg-type]
    with pytest.raises(EngineError, match=r"start\(\)") as caught:
        await engine.reason("x", Verdict)
    assert caught.value.retriable is False


async def test_llama_without_the_extra_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes an import raise ImportError, as on a core install; submodules
    # too, since the slow llama tests may have imported them already in this session.
    for module in ("llama_cpp", "llama_cpp.llama", "llama_cpp.llama_grammar"):
        monkeypatch.setitem(sys.modules, module, None)
    engine = LlamaEngine(EngineSettings(kind="llama"))
    with pytest.raises(ConfigurationError, match=r"expediter\[llm\]"):
        await engine.start()
    await engine.stop()


class Bounded(BaseModel):
    hours: int = Field(ge=0, le=3)
    exclusive: int = Field(gt=-1, lt=2)
    even: int = Field(ge=0, le=6, multiple_of=2)
    wide: int = Field(ge=0, le=100_000)
    open_ended: int = Field(ge=0)
    nested: list[Verdict]


def test_small_integer_ranges_become_enums_for_the_grammar() -> None:
    # llama-cpp-python's grammar converter ignores minimum/maximum; enums it enforces.
    schema = _grammar_schema(Bounded.model_json_schema())
    properties = schema["properties"]
    assert properties["hours"] == {"enum": [0, 1, 2, 3]}
    assert properties["exclusive"] == {"enum": [0, 1]}
    assert properties["even"] == {"enum": [0, 2, 4, 6]}
    assert properties["wide"]["type"] == "integer"
    assert properties["open_ended"]["type"] == "integer"
    assert schema["$defs"]["Verdict"]["properties"]["score"] == {"enum": list(range(11))}
