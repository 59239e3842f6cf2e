"""Human approval as a workflow step: :class:`Approval`, who may decide (names and
:class:`Group`), and what the orchestrator keeps of one while it waits (:class:`ApprovalState`).

A workflow file puts an approval in a stage like any step::

    AGRONOMISTS = Group("agronomists", ["ana", "ben"])

    Approval(
        "drones",
        ask=lambda s: {"zone": s.output("pests")["zone"], "hectares": ...},
        approvers=[AGRONOMISTS, "chief-agronomist"],
        title="Dispatch bio-drones over the infested zone?",
        when=lambda s: s.output("map")["hotspots"]["infested_area_ha"] >= 50,
        deadline_seconds=600, on_deadline="escalate",
        escalate_to=[Group("farm-managers", ["carla"])], after_escalation="reject",
    )

The orchestrator publishes an :class:`~expediter.events.ApprovalRequest` (what is asked, built
from the workflow's state like a step's input; who may decide; the deadline) and waits, with
nothing in memory: the wait is the step's state in the workflow table. A person answers with an
:class:`~expediter.events.ApprovalDecision` (``expediter approvals approve|reject``). Once
decided, either way, the step is done: its output is the decision (``approved``, ``by``,
``comment``...), which later steps read and ``when=`` branches on (``s.approved("drones")``).
A rejection does not fail the workflow; a ``when=`` decides what follows.

Called by workflow files (through ``expediter``), :mod:`expediter.authoring.workflows` (stages),
:mod:`expediter.authoring.state` (the step's state) and the orchestrator's stepping logic.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from expediter.errors import ConfigurationError

if TYPE_CHECKING:
    from expediter.authoring.state import WorkflowState

__all__ = [
    "APPROVAL_CAPABILITY",
    "Approval",
    "ApprovalState",
    "DeadlinePolicy",
    "Decision",
    "Group",
    "IgnoredDecision",
    "IgnoredReason",
    "ParkedDecision",
    "decider_problem",
]

APPROVAL_CAPABILITY = "approval"
"""The capability an approval step's state carries: a person decides, no agent serves it (the
registry's "no live agent" warning skips it)."""

DeadlinePolicy = Literal["reject", "approve", "escalate"]
"""What happens when an approval's deadline passes with no decision."""
Decision = Literal["approved", "rejected"]
IgnoredReason = Literal[
    "not-allowed", "already-decided", "unknown-request", "withdrawn", "workflow-finished"
]
"""Why a decision was recorded and not applied:

- ``not-allowed``: the decider is not among the approvers (the request stays open);
- ``already-decided``: the request was decided already (by a person or its deadline);
- ``unknown-request``: the workflow has no approval step of that id, or the request id does not
  match it, or the approval was skipped (its ``when=`` was false);
- ``withdrawn``: the workflow finished (failed elsewhere) before anyone decided;
- ``workflow-finished``: a decision that came before its request, for a workflow that has ended.
"""

AskBuilder = Callable[["WorkflowState"], Mapping[str, Any]]
Condition = Callable[["WorkflowState"], bool]

_STEP_ID = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_GROUP = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DECIDER = re.compile(r"^[A-Za-z0-9._@-]{1,100}$")
"""A decider's name (``--as NAME``): letters, digits, '.', '_', '@', '-'."""
HISTORY = 20
"""How many ignored decisions a step keeps whole (the count goes on): a flood of decisions from
someone not allowed must not grow the workflow's table entry without bound."""


def decider_problem(name: str) -> str | None:
    """Why ``name`` cannot be a decider's name, or None."""
    if not isinstance(name, str) or not DECIDER.match(name):
        return (
            f"{name!r} is not a decider's name: use 1-100 letters, digits, '.', '_', '@' or '-' "
            "(e.g. 'ana' or 'ana@farm.example')"
        )
    return None


@dataclass(frozen=True)
class Group:
    """Named people who may decide, e.g. ``Group("agronomists", ["ana", "ben"])``.

    The members are read when the request is made and travel in it, so that the decision is
    checked against what the request said, even after the workflow file changes.
    """

    name: str
    members: Sequence[str]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _GROUP.match(self.name):
            raise ConfigurationError(
                f"group name {self.name!r} must be a lowercase DNS label (a-z, 0-9, '-')"
            )
        if isinstance(self.members, str) or not self.members:
            raise ConfigurationError(
                f"group {self.name}: members must be a non-empty list of names, "
                "e.g. Group('agronomists', ['ana', 'ben'])"
            )
        for member in self.members:
            if problem := decider_problem(member):
                raise ConfigurationError(f"group {self.name}: {problem}")


Approvers = Sequence[str | Group]


@dataclass(frozen=True)
class Approval:
    """A step that waits for a person's decision; it fits in a stage like a :class:`Step`."""

    id: str
    ask: AskBuilder
    """Builds what is asked (a JSON object) from the workflow's state, like a step's input."""
    approvers: Approvers
    """Who may decide: names and :class:`Group` objects."""
    title: str = ""
    """One line for ``expediter approvals list``; default: ``approve <id>``."""
    when: Condition | None = None
    """False: the approval is skipped (nothing is asked)."""
    deadline_seconds: float = 86_400.0
    on_deadline: DeadlinePolicy = "reject"
    """With no decision by the deadline: ``reject``, ``approve``, or ``escalate`` (the request
    goes to ``escalate_to`` as well, with a new deadline)."""
    escalate_to: Approvers = ()
    escalation_seconds: float | None = None
    """The escalated request's deadline; default: ``deadline_seconds``."""
    after_escalation: Literal["reject", "approve"] = "reject"
    """With no decision by the escalated deadline either."""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _STEP_ID.match(self.id):
            raise ConfigurationError(
                f"approval id {self.id!r} must be 1-100 letters, digits, '.', '_' or '-' (no "
                "'/': the request id is '<workflow id>/<approval id>')"
            )
        where = f"approval {self.id}"
        if not callable(self.ask):
            raise ConfigurationError(f"{where}: ask must be a function of the workflow's state")
        _check_approvers(where, "approvers", self.approvers)
        if not self.deadline_seconds > 0:
            raise ConfigurationError(f"{where}: deadline_seconds must be > 0")
        if self.on_deadline not in ("reject", "approve", "escalate"):
            raise ConfigurationError(
                f"{where}: on_deadline must be 'reject', 'approve' or 'escalate', "
                f"not {self.on_deadline!r}"
            )
        if self.after_escalation not in ("reject", "approve"):
            raise ConfigurationError(
                f"{where}: after_escalation must be 'reject' or 'approve', "
                f"not {self.after_escalation!r}"
            )
        if self.on_deadline == "escalate":
            _check_approvers(where, "escalate_to", self.escalate_to)
        elif self.escalate_to:
            raise ConfigurationError(
                f"{where}: escalate_to is set but on_deadline is {self.on_deadline!r}; "
                "set on_deadline='escalate' or drop escalate_to"
            )
        if self.escalation_seconds is not None and not self.escalation_seconds > 0:
            raise ConfigurationError(f"{where}: escalation_seconds must be > 0")

    def deciders(self, round_: int) -> tuple[list[str], list[str]]:
        """(names, group names) who may decide in ``round_`` (1; 2 once escalated, when the
        escalation's approvers join the first ones)."""
        given = [*self.approvers, *(self.escalate_to if round_ >= 2 else ())]
        names = [n for a in given for n in ([a] if isinstance(a, str) else a.members)]
        groups = [a.name for a in given if isinstance(a, Group)]
        return list(dict.fromkeys(names)), list(dict.fromkeys(groups))

    def seconds(self, round_: int) -> float:
        """How long ``round_`` waits."""
        if round_ >= 2 and self.escalation_seconds is not None:
            return self.escalation_seconds
        return self.deadline_seconds

    def policy(self, round_: int) -> DeadlinePolicy:
        """What ``round_``'s deadline does."""
        return self.after_escalation if round_ >= 2 else self.on_deadline


def _check_approvers(where: str, label: str, approvers: Approvers) -> None:
    if isinstance(approvers, str | Group) or not approvers:
        raise ConfigurationError(
            f"{where}: {label} must be a non-empty list of names and Group(...) objects, "
            "e.g. [Group('agronomists', ['ana', 'ben']), 'chief']"
        )
    for approver in approvers:
        if isinstance(approver, Group):
            continue
        if problem := decider_problem(approver):
            raise ConfigurationError(f"{where}: {label}: {problem}")


# -- what the orchestrator keeps (part of the workflow table's value) -------------------------


class ParkedDecision(BaseModel):
    """A decision that came before its request: applied when the request is made."""

    model_config = ConfigDict(extra="ignore")

    decision_id: uuid.UUID
    decision: Decision
    by: str
    comment: str | None = None
    at: datetime


class IgnoredDecision(BaseModel):
    """A decision recorded and not applied, with why."""

    model_config = ConfigDict(extra="ignore")

    decision_id: uuid.UUID
    decision: Decision
    by: str
    at: datetime
    reason: IgnoredReason


class ApprovalState(BaseModel):
    """An approval step's wait and outcome; the deadline is the step's ``deadline``."""

    model_config = ConfigDict(extra="ignore")

    request_id: str
    title: str = ""
    ask: dict[str, Any] = Field(default_factory=dict)
    approvers: list[str] = Field(default_factory=list)
    """Everyone who may decide now (groups expanded), as the latest request said."""
    groups: list[str] = Field(default_factory=list)
    round: int = 0
    """0: not asked yet; 1: asked; 2: escalated."""
    on_deadline: DeadlinePolicy = "reject"
    """What the current deadline does."""
    requested_at: datetime | None = None
    decision: Decision | None = None
    decided_by: str | None = None
    """The person, or None when the deadline decided."""
    decided_at: datetime | None = None
    comment: str | None = None
    reason: Literal["decided", "deadline", "withdrawn"] | None = None
    seen: list[uuid.UUID] = Field(default_factory=list)
    """Decision event ids handled (the latest 200), so that a redelivered one is not recorded
    twice."""
    parked: list[ParkedDecision] = Field(default_factory=list)
    ignored: list[IgnoredDecision] = Field(default_factory=list)
    """The latest :data:`HISTORY` decisions recorded and not applied."""
    ignored_count: int = 0
