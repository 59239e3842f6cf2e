"""An output model whose grammar llama.cpp cannot parse: the llama engine says so, naming the
model, at the worker's start (a ConfigurationError before it joins its group) or as a failed
task, and the process goes on; llama.cpp never parses it in process, where it would crash.

Needs the ``[llm]`` extra and the real Gemma 3 270M (CI installs both); no broker: the worker
fails before it connects.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Literal

import pytest
import pytest_asyncio
from pydantic import BaseModel, Field

from expediter import Agent, TaskContext
from expediter.errors import ConfigurationError, EngineError
from expediter.reasoning import LlamaEngine
from expediter.reasoning.grammarchecking import check_grammar
from expediter.settings import EngineSettings, KafkaSettings, WorkerSettings
from expediter.worker.working import Worker

pytestmark = pytest.mark.slow


class Unparsable(BaseModel):
    """``\\Q`` is a regex escape the JSON-schema converter copies into the grammar, where
    llama.cpp's parser refuses it ("unknown escape"). The pattern is in the schema only (an
    author's json_schema_extra), as a schema written for another tool would be."""

    code: Annotated[str, Field(max_length=8, json_schema_extra={"pattern": r"^\Q$"})]


class Unconvertible(BaseModel):
    """A pattern llama-cpp-python's converter itself fails on (unbalanced brackets)."""

    code: Annotated[str, Field(max_length=8, json_schema_extra={"pattern": "^[$"})]


class Fine(BaseModel):
    answer: Literal["yes", "no"]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def engine() -> AsyncIterator[LlamaEngine]:
    llama = LlamaEngine(EngineSettings(kind="llama", n_ctx=1024))
    await llama.start()
    yield llama
    await llama.stop()


async def test_prepare_names_the_output_model_llama_cpp_refuses(engine: LlamaEngine) -> None:
    with pytest.raises(ConfigurationError, match=r"Unparsable's grammar was refused") as raised:
        await engine.prepare(Unparsable)
    assert "unknown escape" in str(raised.value)  # llama.cpp's own reason, from the child


async def test_prepare_names_the_output_model_the_converter_fails_on(engine: LlamaEngine) -> None:
    with pytest.raises(ConfigurationError, match=r"Unconvertible's JSON schema into a grammar"):
        await engine.prepare(Unconvertible)


async def test_a_model_first_met_in_a_task_fails_that_task_and_the_engine_goes_on(
    engine: LlamaEngine,
) -> None:
    with pytest.raises(EngineError, match="Unparsable") as raised:
        await engine.reason("Give a code.", Unparsable, max_tokens=8)
    assert not raised.value.retriable
    answered = await engine.reason("Is water wet? Answer yes or no.", Fine, max_tokens=16)
    assert isinstance(answered.output, Fine)


def test_a_crash_of_the_parser_is_named_too(tmp_path: Path) -> None:
    # A file that is no GGUF: the child fails to load the vocabulary; what a crash (a signal)
    # or any other failure of the child becomes is the same ConfigurationError.
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"\0" * 64)
    with pytest.raises(ConfigurationError, match="Fine's grammar could not be checked"):
        check_grammar('root ::= "a"', bogus, "Fine")


async def _never(task: Fine, ctx: TaskContext) -> Unparsable:
    raise AssertionError("the worker must not run a task")


async def test_a_worker_whose_output_model_llama_cpp_refuses_stops_before_joining() -> None:
    agent = Agent(name="bad-grammar", capability="bad-grammar", version="0.1.0",
                  input_model=Fine, output_model=Unparsable, handler=_never)  # fmt: skip
    worker = Worker(
        agent, LlamaEngine(EngineSettings(kind="llama", n_ctx=1024)),
        # Nothing listens there: the check fails the start before any Kafka client connects.
        kafka=KafkaSettings(bootstrap="127.0.0.1:9"),
        settings=WorkerSettings(http_port=0, instance="grammar-test"),
    )  # fmt: skip
    with pytest.raises(ConfigurationError, match="Unparsable's grammar was refused"):
        await worker.run()
    assert list(worker.phases) == ["engine"]  # loaded; the grammar phase failed; no Kafka
    assert not worker.health.warm
