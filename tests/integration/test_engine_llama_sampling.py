"""Greedy decoding under a grammar, with the real Gemma 3 270M: the engine's sampler chain, which
checks the grammar on the chosen token first (:mod:`expediter.reasoning.sampling`), answers
token for token what llama-cpp-python's own chain answers, which applies the grammar to the
whole vocabulary on every token. Needs the ``[llm]`` extra, which CI installs; without it these
tests fail, they are never skipped.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Annotated

import pytest
import pytest_asyncio
from pydantic import BaseModel, Field

from expediter.reasoning import LlamaEngine
from expediter.settings import EngineSettings

pytestmark = pytest.mark.slow

PROMPTS = [
    "Field 7 has had no rain for three weeks and the maize leaves are curling. Assess it.",
    "Field 2 was flooded yesterday; water still stands between the wheat rows. Assess it.",
    "Field 9 looks fine: moisture 30 percent, no pests, the barley is heading. Assess it.",
]


class Moisture(StrEnum):
    DRY = "dry"
    NORMAL = "normal"
    WET = "wet"


class Assessment(BaseModel):
    """Short bounds, so that the model's first choice is sometimes refused (a string cut at its
    limit, a number out of range) and both ways of applying the grammar are taken."""

    moisture: Moisture
    irrigation_hours: int = Field(ge=0, le=12)
    actions: list[Annotated[str, Field(max_length=24)]] = Field(min_length=1, max_length=3)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine() -> AsyncIterator[LlamaEngine]:
    llama = LlamaEngine(EngineSettings(kind="llama", n_ctx=2048))
    await llama.start()
    yield llama
    await llama.stop()


@contextmanager
def stock_sampler(engine: LlamaEngine) -> Iterator[None]:
    """llama-cpp-python's own ``_init_sampler`` (grammar, then greedy) for the engine's model."""
    llm = engine._llm
    stock = type(llm).__mro__[1]._init_sampler
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
