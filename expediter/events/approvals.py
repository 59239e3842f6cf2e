"""The approval events: a request for a person's decision, and the decision.

- :class:`ApprovalRequest`, on ``approvals.requests``: written by the orchestrator when a
  workflow reaches an :class:`~expediter.authoring.Approval` step (and again, ``round`` 2,
  when its deadline escalates it). The topic is compacted and keyed by ``request_id``; the
  orchestrator writes a tombstone under that key once the request is resolved (decided,
  decided by its deadline, or withdrawn), so that the topic holds the open requests and a
  reader (``expediter approvals list``, a notifier) reads only those.
- :class:`ApprovalDecision`, on ``approvals.decisions``: written by a person's client
  (``expediter approvals approve|reject``, or any Kafka client), keyed by ``workflow_id`` and
  co-partitioned with the workflow table, so the stream that owns the workflow reads it.

What the orchestrator did with a decision (applied, parked until its request, ignored and
why) is recorded as a :class:`~expediter.events.WorkflowEvent` in ``workflows.events``.
Called by the orchestrator, the approvals CLI and the schema exporter.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field

from expediter.events.envelope import Event, Identifier

__all__ = ["ApprovalDecision", "ApprovalRequest", "Decider"]

Decider = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._@-]+$")]
"""A person's name as approvers lists and decisions carry it."""


class ApprovalRequest(Event):
    """A workflow waits for a person's decision. Keyed by ``request_id`` (compacted topic)."""

    type: Literal["approval-request"] = "approval-request"
    request_id: Identifier
    """``<workflow_id>/<step_id>``: what ``expediter approvals approve`` takes."""
    workflow_id: Identifier
    workflow: Identifier
    """The workflow definition's name, e.g. ``field-analysis``."""
    step_id: Identifier
    title: Annotated[str, Field(max_length=500)] = ""
    ask: dict[str, Any] = Field(default_factory=dict)
    """What is asked, built from the workflow's state by the approval's ``ask``."""
    approvers: Annotated[list[Decider], Field(min_length=1)]
    """Everyone who may decide (groups expanded when the request was made)."""
    groups: list[Identifier] = Field(default_factory=list)
    """The groups ``approvers`` came from, by name (for people to read)."""
    round: Annotated[int, Field(ge=1, le=2)] = 1
    """1: the first request; 2: escalated by its deadline (``approvers`` then holds the
    escalation's approvers as well)."""
    requested_at: AwareDatetime
    """When the workflow first asked (``created_at`` is this record's, later once escalated)."""
    deadline: AwareDatetime
    """When ``on_deadline`` happens if nobody decided. The orchestrator keeps it in its table,
    so a restart days later still honours it."""
    on_deadline: Literal["reject", "approve", "escalate"]


class ApprovalDecision(Event):
    """A person's decision on a request. Keyed by ``workflow_id``, on ``approvals.decisions``.

    The decider, the time (``created_at``) and the comment are kept in the workflow's state and
    given to later steps (the approval step's output). A decision for an unknown or decided
    request, or from someone not among the approvers, is recorded with the reason and changes
    nothing; one that comes before its request waits for it (parked in the workflow's state).
    """

    type: Literal["approval-decision"] = "approval-decision"
    request_id: Identifier
    workflow_id: Identifier
    step_id: Identifier
    decision: Literal["approve", "reject"]
    decider: Decider
    comment: Annotated[str, Field(max_length=2_000)] | None = None
