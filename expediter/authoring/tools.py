"""What a tool is: a named async function from a pydantic arguments model to a result model.

An agent file declares its tools and lists them in ``Agent(tools=[...])``, its allowlist::

    class WorkOrderArgs(BaseModel): ...
    class WorkOrder(BaseModel): ...

    @tool(name="create_work_order", description="Open a work order for a field crew.")
    async def create_work_order(args: WorkOrderArgs) -> WorkOrder: ...

The models are read from the function's annotations, so the schema an LLM plans against, the
validation of the arguments and the type checker all follow one declaration. Called by agent
files; :class:`~expediter.tools.toolbox.ToolBox` runs the tools.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from expediter.errors import ConfigurationError

__all__ = ["ArgsT", "ResultT", "Tool", "tool"]

ArgsT = TypeVar("ArgsT", bound=BaseModel)
ResultT = TypeVar("ResultT", bound=BaseModel)

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Tool(Generic[ArgsT, ResultT]):
    """One tool: its name, its argument and result models, and the coroutine that runs it."""

    name: str
    """A lowercase identifier (``create_work_order``): plans and ledger records name it."""
    arguments: type[ArgsT]
    result: type[ResultT]
    run: Callable[[ArgsT], Awaitable[ResultT]]
    """Does the work, side effect included; it runs at most once per recorded call."""
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigurationError(
                f"tool name {self.name!r} is not a lowercase identifier: use a-z, 0-9 and '_', "
                "starting with a letter, at most 64 characters (e.g. 'create_work_order')"
            )
        for label, model in (("arguments", self.arguments), ("result", self.result)):
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ConfigurationError(
                    f"tool {self.name}: {label} must be a pydantic BaseModel subclass, "
                    f"not {model!r}"
                )
        if not inspect.iscoroutinefunction(self.run):
            raise ConfigurationError(
                f"tool {self.name}: run must be an `async def` function taking "
                f"{self.arguments.__name__} and returning {self.result.__name__}"
            )

    def schema(self) -> dict[str, Any]:
        """The tool as a planner sees it: name, description and both JSON Schemas."""
        return {
            "name": self.name,
            "description": self.description,
            "arguments": self.arguments.model_json_schema(),
            "result": self.result.model_json_schema(),
        }


def tool(
    *, name: str | None = None, description: str | None = None
) -> Callable[[Callable[[ArgsT], Awaitable[ResultT]]], Tool[ArgsT, ResultT]]:
    """Turn ``async def f(args: ArgsModel) -> ResultModel`` into a :class:`Tool`.

    ``name`` defaults to the function's name, ``description`` to its docstring's first line.
    """

    def build(func: Callable[[ArgsT], Awaitable[ResultT]]) -> Tool[ArgsT, ResultT]:
        label = getattr(func, "__qualname__", repr(func))
        params = list(inspect.signature(func).parameters.values())
        if len(params) != 1 or params[0].kind not in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            raise ConfigurationError(
                f"tool {label}: a tool function takes exactly one positional parameter, its "
                "arguments model: `async def f(args: ArgsModel) -> ResultModel`"
            )
        try:
            # Resolves string annotations (`from __future__ import annotations`) in the
            # function's module, which is why models must be defined at module level.
            hints = typing.get_type_hints(func)
        except NameError as exc:
            raise ConfigurationError(
                f"tool {label}: its annotations do not resolve ({exc}); define the arguments and "
                "result models at module level, before the tool"
            ) from exc
        arguments = hints.get(params[0].name)
        result = hints.get("return")
        if arguments is None or result is None:
            raise ConfigurationError(
                f"tool {label}: annotate both the parameter and the return type with pydantic "
                "models: `async def f(args: ArgsModel) -> ResultModel`"
            )
        doc = inspect.getdoc(func) or ""
        return Tool(
            name=name if name is not None else getattr(func, "__name__", ""),
            arguments=arguments,
            result=result,
            run=func,
            description=description if description is not None else doc.partition("\n")[0],
        )

    return build
