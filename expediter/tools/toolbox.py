"""The ToolBox: how one task's handler calls tools (``ctx.tools.call(name, arguments)``).

It enforces the agent's allowlist, validates arguments with the tool's pydantic model, and goes
through the ledger: a call that was recorded for this (task id, step, n) returns its recorded
result without running again, so a redelivered task never repeats a side effect. ``n`` counts
the task's accepted calls, which is why a handler must issue its calls in the same order on
every attempt; one that does not gets a "replay diverged" PermanentError rather than a wrong
result.

Built by the worker, one per task (``task_id`` is the task event's id, kept across attempts);
satisfies :class:`expediter.authoring.ToolCaller`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from expediter.authoring.tools import Tool
from expediter.errors import ConfigurationError, PermanentError, ToolError
from expediter.tools.ledger import ToolLedger, ledger_key

__all__ = ["ToolBox"]

_MAX_ERRORS = 10


def _field_errors(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    listed = [
        f"{'.'.join(str(part) for part in error['loc']) or '(root)'}: {error['msg']}"
        for error in errors[:_MAX_ERRORS]
    ]
    more = len(errors) - len(listed)
    return "; ".join(listed) + (f"; and {more} more" if more > 0 else "")


class ToolBox:
    """The tools one task may call: ``allowlist`` only, each call recorded in ``ledger``."""

    def __init__(
        self,
        allowlist: Sequence[Tool[Any, Any]],
        ledger: ToolLedger,
        *,
        task_id: uuid.UUID | str,
        step_id: str,
    ) -> None:
        tools: dict[str, Tool[Any, Any]] = {}
        for item in allowlist:
            if not isinstance(item, Tool):
                raise ConfigurationError(
                    f"the tool allowlist holds {item!r}, which is not a Tool: list tools made "
                    "with @tool(...) (expediter.tools) in Agent(tools=[...])"
                )
            if item.name in tools:
                raise ConfigurationError(
                    f"the tool allowlist names {item.name!r} twice: give each tool its own name"
                )
            tools[item.name] = item
        self.tools = tools
        self.ledger = ledger
        self.task_id = str(task_id)
        self.step_id = step_id
        self.calls = 0
        """How many calls were accepted so far; the next one is recorded as ``n = calls``."""

    async def call(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Run tool ``name`` (or replay its record) and return its result as JSON data.

        Raises ToolError for a tool outside the allowlist or invalid arguments (nothing runs),
        and PermanentError when the ledger holds a different call at this position.
        """
        found = self.tools.get(name)
        if found is None:
            allowed = ", ".join(sorted(self.tools)) or "(none)"
            raise ToolError(
                f"tool {name!r} is not allowlisted for this agent (allowed: {allowed}): call one "
                "of those, or add the tool to the agent's Agent(tools=[...])",
                code="tool-not-allowed",
            )
        try:
            args = found.arguments.model_validate(dict(arguments))
        except ValidationError as exc:
            raise ToolError(
                f"tool {name!r} refused its arguments: {_field_errors(exc)}; pass arguments "
                f"that match {found.arguments.__name__}",
                code="invalid-tool-arguments",
            ) from exc
        canonical = args.model_dump(mode="json")
        # Taken before any await, so concurrent calls from one handler get distinct positions.
        n = self.calls
        self.calls += 1
        recorded = await self.ledger.lookup(self.task_id, self.step_id, n)
        if recorded is not None:
            if recorded.tool != name or recorded.arguments != canonical:
                raise PermanentError(
                    f"replay diverged at tool call {ledger_key(self.task_id, self.step_id, n)}: "
                    f"the ledger recorded {recorded.tool}({recorded.arguments}), this attempt "
                    f"asks {name}({canonical}); a handler must make the same tool calls in the "
                    "same order on every attempt (derive them from the task's input only)",
                    code="replay-diverged",
                )
            return self._result(found, recorded.result, "its ledger record")
        output = await found.run(args)
        result = self._result(found, output, "the tool")
        await self.ledger.record(
            self.task_id, self.step_id, n, tool=name, arguments=canonical, result=result
        )
        return result

    @staticmethod
    def _result(found: Tool[Any, Any], output: object, source: str) -> dict[str, Any]:
        try:
            model = (
                output if isinstance(output, found.result) else found.result.model_validate(output)
            )
        except ValidationError as exc:
            raise PermanentError(
                f"tool {found.name!r}: {source} returned an invalid {found.result.__name__}: "
                f"{_field_errors(exc)}; make the tool return its declared result model",
                code="bad-tool-result",
            ) from exc
        dumped: dict[str, Any] = model.model_dump(mode="json")
        return dumped
