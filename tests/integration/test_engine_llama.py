"""The llama engine with the real Gemma 3 270M model from PyPI: load, warm up, and answer with
JSON held to the output model's schema. Needs no broker, only the ``[llm]`` extra, which CI
installs (``make test``): without it these tests fail, they are never skipped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

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
