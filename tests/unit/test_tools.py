"""The @tool decorator, tool names, and the ToolBox and ToolLedger checks that need no broker."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from expediter import Tool, tool
from expediter.errors import ConfigurationError, ExpediterError
from expediter.settings import KafkaSettings
from expediter.tools import ToolBox, ToolLedger


class GreetArgs(BaseModel):
    name: str
    times: int = 1


class Greeting(BaseModel):
    text: str


async def _greet(args: GreetArgs) -> Greeting:
    return Greeting(text=" ".join([f"hello {args.name}"] * args.times))


async def test_decorator_reads_models_from_annotations() -> None:
    @tool(name="greet", description="Say hello.")
    async def greet(args: GreetArgs) -> Greeting:
        return await _greet(args)

    assert isinstance(greet, Tool)
    assert greet.name == "greet"
    assert greet.description == "Say hello."
    assert greet.arguments is GreetArgs
    assert greet.result is Greeting
    assert await greet.run(GreetArgs(name="ana", times=2)) == Greeting(text="hello ana hello ana")
    schema = greet.schema()
    assert schema["name"] == "greet"
    assert schema["arguments"]["required"] == ["name"]
    assert schema["result"]["properties"]["text"]["type"] == "string"


def test_name_and_description_default_to_the_function() -> None:
    @tool()
    async def say_hello(args: GreetArgs) -> Greeting:
        """Greets someone.

        More detail that is not part of the description.
        """
        return await _greet(args)

    assert say_hello.name == "say_hello"
    assert say_hello.description == "Greets someone."


@pytest.mark.parametrize(
    "name", ["Greet", "greet-now", "1greet", "_greet", "", "greet now", "g" * 65, "grüß"]
)
def test_names_must_be_lowercase_identifiers(name: str) -> None:
    with pytest.raises(ConfigurationError, match="lowercase identifier"):
        Tool(name=name, arguments=GreetArgs, result=Greeting, run=_greet)


@pytest.mark.parametrize("name", ["g", "greet", "create_work_order", "v2_notify", "g" * 64])
def test_valid_names(name: str) -> None:
    assert Tool(name=name, arguments=GreetArgs, result=Greeting, run=_greet).name == name


def test_models_must_be_pydantic() -> None:
    with pytest.raises(ConfigurationError, match="arguments must be a pydantic BaseModel"):
        Tool(name="greet", arguments=dict, result=Greeting, run=_greet)  # type: ignore[type-var, arg-type]
    with pytest.raises(ConfigurationError, match="result must be a pydantic BaseModel"):
        Tool(name="greet", arguments=GreetArgs, result=str, run=_greet)  # type: ignore[type-var, arg-type]


def test_a_tool_must_be_async() -> None:
    def sync(args: GreetArgs) -> Greeting:
        return Greeting(text=args.name)

    with pytest.raises(ConfigurationError, match="async def"):
        tool(name="sync")(sync)  # type: ignore[arg-type]


def test_a_tool_takes_exactly_one_parameter() -> None:
    async def two(args: GreetArgs, extra: int) -> Greeting:
        return Greeting(text=args.name)

    with pytest.raises(ConfigurationError, match="exactly one positional parameter"):
        tool(name="two")(two)  # type: ignore[arg-type]


def test_a_tool_needs_both_annotations() -> None:
    async def bare(args):  # type: ignore[no-untyped-def]
        return Greeting(text="x")

    with pytest.raises(ConfigurationError, match="annotate both"):
        tool(name="bare")(bare)


def test_unresolvable_annotations_are_explained() -> None:
    async def dangling(args: Missing) -> Greeting:  # type: ignore[name-defined]  # noqa: F821
        return Greeting(text="x")

    with pytest.raises(ConfigurationError, match="define the arguments and result models"):
        tool(name="dangling")(dangling)


def test_toolbox_rejects_a_bad_allowlist() -> None:
    greet = Tool(name="greet", arguments=GreetArgs, result=Greeting, run=_greet)
    ledger = ToolLedger(KafkaSettings(), topic="unused")
    with pytest.raises(ConfigurationError, match="names 'greet' twice"):
        ToolBox([greet, greet], ledger, task_id="t", step_id="s")
    not_tools: list[Any] = [_greet]
    with pytest.raises(ConfigurationError, match="not a Tool"):
        ToolBox(not_tools, ledger, task_id="t", step_id="s")


async def test_a_ledger_that_is_not_started_says_so() -> None:
    ledger = ToolLedger(KafkaSettings(), topic="unused")
    with pytest.raises(ExpediterError, match="not started"):
        await ledger.lookup("t", "s", 0)
    with pytest.raises(ExpediterError, match="not started"):
        await ledger.record("t", "s", 0, tool="greet", arguments={}, result={})


async def test_a_stopped_ledger_is_not_restarted() -> None:
    ledger = ToolLedger(KafkaSettings(), topic="unused")
    await ledger.stop()
    await ledger.stop()  # idempotent
    with pytest.raises(ExpediterError, match="was stopped; create a new one"):
        await ledger.start()
