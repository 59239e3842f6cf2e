"""The llama engine with the real Gemma 3 270M model from PyPI: load, warm up, answer with JSON
held to the output model's schema, and generate under a grammar exactly what llama-cpp-python's
own sampler chain generates. Needs no broker, only the ``[llm]`` extra, which CI installs
(``make test``): without it these tests fail, they are never skipped.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pytest
import pytest_asyncio
from pydantic import BaseModel, Field

from expediter.errors import ConfigurationError
from expediter.reasoning import LlamaEngine
from expediter.reasoning.cores import available_cores
from expediter.reasoning.faults import EngineFault
from expediter.settings import EngineSettings

pytestmark = pytest.mark.slow


class Moisture(StrEnum):
    DRY = "dry"
    NORMAL = "normal"
    WET = "wet"


class FieldAssessment(BaseModel):
    """Bounded everywhere, as an output model for a tiny model should be: an unbounded string
    lets Gemma 270M ramble until max_tokens cuts the JSON."""

    moisture: Moisture
    irrigation_hours: int = Field(ge=0, le=12)
    actions: list[Annotated[str, Field(max_length=40)]] = Field(min_length=1, max_length=3)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine() -> AsyncIterator[LlamaEngine]:
    llama = LlamaEngine(EngineSettings(kind="llama", n_ctx=2048))
    await llama.start()
    yield llama
    await llama.stop()


async def test_start_loads_the_default_model_and_warms_it(engine: LlamaEngine) -> None:
    assert engine.model_path is not None
    assert engine.model_path.suffix == ".gguf"
    assert engine.load_seconds > 0
    assert engine.warmup_seconds > 0
    loaded = engine.load_seconds
    await engine.start()  # idempotent: the loaded model stays
    assert engine.load_seconds == loaded


async def test_the_answer_is_held_to_the_output_schema(engine: LlamaEngine) -> None:
    reasoned = await engine.reason(
        "Field 7 has had no rain for three weeks and the maize leaves are curling. "
        "Assess the field.",
        FieldAssessment,
        system="You are an agronomist.",
        max_tokens=128,
    )
    assert isinstance(reasoned.output, FieldAssessment)
    assert 0 <= reasoned.output.irrigation_hours <= 12
    assert 1 <= len(reasoned.output.actions) <= 3
    assert all(len(action) <= 40 for action in reasoned.output.actions)
    assert reasoned.usage.prompt_tokens > 0
    assert reasoned.usage.completion_tokens > 0


async def test_a_missing_model_file_names_the_setting(tmp_path: Path) -> None:
    llama = LlamaEngine(EngineSettings(kind="llama", model_path=tmp_path / "absent.gguf"))
    with pytest.raises(ConfigurationError, match="EXPEDITER_ENGINE_MODEL_PATH"):
        await llama.start()


class Counting(BaseModel):
    numbers: str


COUNT = "Count from 1 to 500, separated by commas."
"""Gemma 270M counts on for hundreds of tokens: a generation that outlasts a short timeout."""


async def test_the_engine_uses_the_cores_it_is_given(engine: LlamaEngine) -> None:
    assert engine.threads == available_cores()
    assert engine.parallelism == 1


async def test_a_generation_past_the_timeout_is_stopped_and_frees_the_model() -> None:
    llama = LlamaEngine(EngineSettings(kind="llama", n_ctx=2048, timeout=1.0))
    await llama.start()
    try:
        began = time.perf_counter()
        with pytest.raises(EngineFault, match="EXPEDITER_ENGINE_TIMEOUT=1 s") as raised:
            await llama.reason(COUNT, Counting, max_tokens=300)
        stopped_after = time.perf_counter() - began
        assert raised.value.reason == "timeout"
        assert raised.value.retriable
        # Stopped at the first token past the deadline, not after 300 tokens.
        assert stopped_after < 10, stopped_after
    finally:
        await llama.stop()


async def test_a_cancelled_call_stops_its_generation_so_the_next_call_gets_the_model(
    engine: LlamaEngine,
) -> None:
    # How long a short call takes on this machine now, to size the comparison to its load.
    began = time.perf_counter()
    with pytest.raises(EngineFault):  # 16 tokens cut the count short: only the time matters
        await engine.reason(COUNT, Counting, max_tokens=16)
    short_call = time.perf_counter() - began
    with pytest.raises(TimeoutError):
        # The worker's max_task_seconds and routing's timeout cancel a call this way.
        await asyncio.wait_for(engine.reason(COUNT, Counting, max_tokens=300), 1.0)
    began = time.perf_counter()
    with pytest.raises(EngineFault):
        await engine.reason(COUNT, Counting, max_tokens=16)
    waited = time.perf_counter() - began
    # Had the cancelled generation gone on to 300 tokens, this call would have waited for it.
    assert waited < 5 * short_call, (waited, short_call)


# Greedy decoding under a grammar: the engine's sampler chain checks the grammar on the chosen
# token first (expediter.reasoning.sampling); llama-cpp-python's own chain applies it to the
# whole vocabulary on every token. The answers must be the same, token for token.

PROMPTS = [
    "Field 7 has had no rain for three weeks and the maize leaves are curling. Assess it.",
    "Field 2 was flooded yesterday; water still stands between the wheat rows. Assess it.",
    "Field 9 looks fine: moisture 30 percent, no pests, the barley is heading. Assess it.",
]


class Assessment(BaseModel):
    """Short bounds, so that the model's first choice is sometimes refused (a string cut at its
    limit, a number out of range) and both ways of applying the grammar are taken."""

    moisture: Moisture
    irrigation_hours: int = Field(ge=0, le=12)
    actions: list[Annotated[str, Field(max_length=24)]] = Field(min_length=1, max_length=3)


@contextmanager
def stock_sampler(engine: LlamaEngine) -> Iterator[None]:
    """llama-cpp-python's own ``_init_sampler`` (grammar, then greedy) for the engine's model."""
    llm = engine._llm
    base: Any = type(llm).__mro__[1]  # llama_cpp.Llama, under the engine's subclass
    stock = base._init_sampler
    llm._init_sampler = functools.partial(stock, llm)
    try:
        yield
    finally:
        del llm._init_sampler


def complete(engine: LlamaEngine, prompt: str) -> tuple[str, int]:
    """The raw completion under ``Assessment``'s grammar, as the engine asks for it: its text and
    its token count. Compared raw, because a tiny model cut at ``max_tokens`` may not finish
    the JSON, and an unfinished answer must match too."""
    reply = engine._llm.create_chat_completion(
        messages=[
            {"role": "system", "content": "You are an agronomist. Answer in JSON."},
            {"role": "user", "content": prompt},
        ],
        grammar=engine._grammars[Assessment],
        max_tokens=64,
        temperature=0.0,
    )
    return reply["choices"][0]["message"]["content"], reply["usage"]["completion_tokens"]


async def test_checking_the_chosen_token_first_answers_what_the_whole_vocabulary_does(
    engine: LlamaEngine,
) -> None:
    await engine.prepare(Assessment)
    checks = engine.grammar_checks
    before = (checks.chosen_only, checks.whole_vocabulary)
    fast = [complete(engine, prompt) for prompt in PROMPTS]
    chosen_only, whole = checks.chosen_only - before[0], checks.whole_vocabulary - before[1]
    with stock_sampler(engine):
        stock = [complete(engine, prompt) for prompt in PROMPTS]
    # The stock chain does not go through the engine's sampler at all.
    assert (checks.chosen_only - before[0], checks.whole_vocabulary - before[1]) == (
        chosen_only, whole,
    )  # fmt: skip
    assert fast == stock  # the same text from the same number of tokens
    # Both ways were taken, so the comparison covers both: some tokens only checked the chosen
    # one, others were refused and went over the whole vocabulary.
    assert chosen_only > 0, (chosen_only, whole)
    assert whole > 0, (chosen_only, whole)
    # One check per sampled token: every generated one, and the end-of-generation token that
    # stops an answer before max_tokens (sampled, but not counted in the usage).
    generated = sum(tokens for _, tokens in fast)
    assert generated <= chosen_only + whole <= generated + len(PROMPTS), (chosen_only, whole)


async def test_a_sampled_generation_keeps_llama_cpps_own_chain() -> None:
    """With a temperature above 0 the shortcut would change the distribution: not taken."""
    llama = LlamaEngine(EngineSettings(kind="llama", n_ctx=2048, temperature=0.7))
    await llama.start()
    try:
        reasoned = await llama.reason(PROMPTS[0], Assessment, system="Answer in JSON.")
    finally:
        await llama.stop()
    assert reasoned.usage.completion_tokens > 0
    assert (llama.grammar_checks.chosen_only, llama.grammar_checks.whole_vocabulary) == (0, 0)
