"""The llama engine with the real Gemma 3 270M model from PyPI: load, warm up, and answer with
JSON held to the output model's schema. Needs no broker, only the ``[llm]`` extra, which CI
installs (``make test``): without it these tests fail, they are never skipped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import pytest
import pytest_asyncio
from pydantic import BaseModel, Field

from expediter.errors import ConfigurationError
from expediter.reasoning import LlamaEngine
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
