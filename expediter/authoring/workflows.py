"""Workflows, defined in Python: sequential stages of steps and parallel groups with joins.

A file under ``workflows/`` declares one workflow::

    class FieldInput(BaseModel):
        field_id: str

    workflow = Workflow(
        name="field-analysis",
        input_model=FieldInput,
        stages=[
            Parallel("survey", [
                Step("soil", "soil-analysis", lambda s: {"field_id": s.input["field_id"]}),
                Step("pests", "pest-detection", lambda s: {"field_id": s.input["field_id"]}),
            ], join=All()),
            Step("map", "crop-mapping", map_input, when=lambda s: s.output("pests")["pests"] > 0),
        ],
        report=assemble_report,
    )

A stage starts when the one before it has joined. A step whose ``when`` is false is skipped.
An :class:`~expediter.authoring.approvals.Approval` fits in a stage (or a parallel group) like a
step: it waits for a person's decision instead of an agent's result.
The input model (pydantic) is checked by ``expediter submit`` (bad input is refused, the field
named) and again by the orchestrator (bad input fails that workflow): the steps' input builders
can then rely on the fields it declares.
Each step has a deadline and a retry policy (attempts, for retriable failures and deadlines).
Called by workflow files (through ``expediter``), the orchestrator's stepping logic and the
loader (:mod:`expediter.authoring.loading`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from expediter.authoring.approvals import Approval
from expediter.errors import ConfigurationError

if TYPE_CHECKING:
    from expediter.authoring.state import WorkflowState

__all__ = [
    "All",
    "Any_",
    "InvalidInputError",
    "Join",
    "Parallel",
    "Quorum",
    "Step",
    "Workflow",
]

InputBuilder = Callable[["WorkflowState"], Mapping[str, Any]]
Condition = Callable[["WorkflowState"], bool]


@dataclass(frozen=True)
class Step:
    """One task for one capability."""

    id: str
    capability: str
    build_input: InputBuilder
    """Builds the task's input from the workflow's state: the request's input and the outputs
    of earlier steps. What the agent needs travels in the task; agents keep no state."""
    when: Condition | None = None
    deadline_seconds: float = 120.0
    max_attempts: int = 2
    """Attempts in all: a retriable failure or a missed deadline publishes attempt + 1."""


@dataclass(frozen=True)
class Join:
    """How a parallel group completes: ``needed(n)`` successes of ``n`` steps."""

    def needed(self, steps: int) -> int:
        raise NotImplementedError


@dataclass(frozen=True)
class All(Join):
    def needed(self, steps: int) -> int:
        return steps


@dataclass(frozen=True)
class Any_(Join):  # not `Any`, which would shadow typing.Any in every workflow file
    def needed(self, steps: int) -> int:
        return min(1, steps)


@dataclass(frozen=True)
class Quorum(Join):
    k: int

    def needed(self, steps: int) -> int:
        return min(self.k, steps)


@dataclass(frozen=True)
class Parallel:
    """Steps that run side by side, joined by ``join``."""

    id: str
    steps: Sequence[Step | Approval]
    join: Join = field(default_factory=All)


Stage = Step | Approval | Parallel
Report = Callable[["WorkflowState"], Mapping[str, Any]]


class InvalidInputError(ConfigurationError):
    """A workflow's input does not fit its input model; the message names each bad field."""


@dataclass(frozen=True)
class Workflow:
    name: str
    stages: Sequence[Stage]
    report: Report
    """The final step: assembles the report from the state once every stage has joined."""
    input_model: type[BaseModel] | None = None
    """What the workflow's input must look like. None accepts any JSON object (the input
    builders then meet whatever was sent; a builder that raises fails the workflow)."""

    def check_input(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` as the input model reads it (defaults filled in), or InvalidInputError."""
        if self.input_model is None:
            return dict(given)
        try:
            return self.input_model.model_validate(given).model_dump(mode="json")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or '(input)'}: {error['msg']}"
                for error in exc.errors()
            )
            fields = ", ".join(
                f"{name}{'' if field.is_required() else ' (optional)'}"
                for name, field in self.input_model.model_fields.items()
            )
            raise InvalidInputError(
                f"invalid input for workflow {self.name}: {problems}. It takes a JSON object "
                f"with {fields or 'no fields'}"
            ) from None

    def __post_init__(self) -> None:
        ids = [s.id for s in self.members()]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ConfigurationError(
                f"workflow {self.name}: step ids {duplicates} are used twice; ids name results"
            )
        for stage in self.stages:
            if (
                isinstance(stage, Parallel)
                and isinstance(stage.join, Quorum)
                and not 1 <= stage.join.k <= len(stage.steps)
            ):
                raise ConfigurationError(
                    f"workflow {self.name}: group {stage.id} has quorum({stage.join.k}) of "
                    f"{len(stage.steps)} steps; use 1..{len(stage.steps)}"
                )

    def members(self) -> list[Step | Approval]:
        """Every step and approval, in stage order."""
        return [s for stage in self.stages for s in _members(stage)]

    def steps(self) -> list[Step]:
        """The steps that are tasks for agents (approvals are not)."""
        return [s for s in self.members() if isinstance(s, Step)]

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps() if s.id == step_id), None)

    def approvals(self) -> list[Approval]:
        return [s for s in self.members() if isinstance(s, Approval)]

    def approval(self, step_id: str) -> Approval | None:
        return next((s for s in self.approvals() if s.id == step_id), None)


def _members(stage: Stage) -> Sequence[Step | Approval]:
    return stage.steps if isinstance(stage, Parallel) else [stage]
