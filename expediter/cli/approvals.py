"""``expediter approvals list|show|approve|reject``: the requests workflows wait on, and people's
decisions.

``list`` reads the open requests (``approvals.requests``) with their age and deadline;
``show`` prints one whole, or, once resolved, its outcome from the workflow's state;
``approve`` and ``reject`` publish a decision (``approvals.decisions``) and wait for the
orchestrator to say what it did with it: decided, or refused with the reason (someone not among
the approvers, a request already decided), which it records either way. Exit codes: 0 done;
1 refused, no such request, or no answer in time; 2 bad input (an id without '/', a bad name).
Mounted by :mod:`expediter.cli` as ``approvals``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from expediter.authoring.approvals import decider_problem
from expediter.authoring.state import StepState, WorkflowState
from expediter.cli.output import console, emit_json, fail, wide_console
from expediter.errors import ConfigurationError
from expediter.events import ApprovalDecision, ApprovalRequest, WorkflowEvent
from expediter.messaging import TopicNames
from expediter.orchestrator.deciding import CLIENT, find_request, open_requests, send_decision
from expediter.orchestrator.submitting import read_status
from expediter.settings import KafkaSettings, OrchestratorSettings

__all__ = ["app", "approval_lines"]

app = typer.Typer(
    help="Approval requests workflows wait on: list them, show one, approve or reject it.",
    no_args_is_help=True,
)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]
RequestId = Annotated[
    str, typer.Argument(help="The request id, <workflow id>/<step id> (`approvals list`).")
]
As = Annotated[str, typer.Option("--as", help="Who decides: a name among the approvers.")]
Comment = Annotated[str | None, typer.Option(help="Why; later steps of the workflow can read it.")]
Wait = Annotated[
    float,
    typer.Option(min=0, help="Seconds to wait for the orchestrator's answer (0: send only)."),
]
Early = Annotated[
    bool,
    typer.Option(help="Send even if the request is not open yet: it applies when it is made."),
]


def _names() -> TopicNames:
    return TopicNames(OrchestratorSettings().topic_prefix)


def _split(request_id: str) -> tuple[str, str]:
    workflow_id, _, step_id = request_id.rpartition("/")
    if not workflow_id or not step_id:
        raise ConfigurationError(
            f"{request_id!r} is not a request id: it is <workflow id>/<step id>, e.g. "
            "wf-3f2a9c1e0b7d4a51/drones (`expediter approvals list` shows them)"
        )
    return workflow_id, step_id


def _ago(moment: datetime, now: datetime) -> str:
    seconds = int((now - moment).total_seconds())
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{sign}{seconds // size}{unit}{(seconds % size) // (size // 60 or 1):02d}"
    return f"{sign}{seconds}s"


def _summary(request: ApprovalRequest, now: datetime) -> dict[str, Any]:
    return {
        **request.model_dump(mode="json", exclude={"producer", "schema_version", "type"}),
        "age_seconds": round((now - request.requested_at).total_seconds(), 1),
        "left_seconds": round((request.deadline - now).total_seconds(), 1),
    }


@app.command(name="list")
def list_(json_: JsonFlag = False) -> None:
    """The open requests, soonest deadline first, with their age and deadline."""
    requests = asyncio.run(open_requests(KafkaSettings(), _names()))
    now = datetime.now(UTC)
    if json_:
        emit_json({"ok": True, "pending": [_summary(r, now) for r in requests]})
        return
    if not requests:
        console.print("no open approval requests")
        return
    table = Table("request", "title", "who may decide", "round", "age", "deadline in", "then")
    for r in requests:
        more = len(r.approvers) - 4
        who = ", ".join(r.approvers[:4]) + (f" +{more}" if more > 0 else "")
        left = _ago(now, r.deadline) if r.deadline > now else "due"
        table.add_row(r.request_id, r.title, who, str(r.round), _ago(r.requested_at, now), left,
                      r.on_deadline)  # fmt: skip
    wide_console().print(table)
    console.print(f"{len(requests)} open", highlight=False)


@app.command()
def show(request_id: RequestId, json_: JsonFlag = False) -> None:
    """One request whole: what is asked, who may decide, the deadline; or how it ended."""
    workflow_id, step_id = _split(request_id)
    kafka, names = KafkaSettings(), _names()
    request = asyncio.run(find_request(kafka, names, request_id))
    state, events = asyncio.run(read_status(kafka, names, workflow_id))
    step = state.steps.get(step_id) if state else None
    history = [
        e for e in events
        if e.step_id == step_id and e.status.startswith(("approval", "decision"))
    ]  # fmt: skip
    if request is None and (step is None or step.approval is None):
        _missing(request_id, state, step, json_)
    if json_:
        emit_json({
            "ok": True, "request_id": request_id, "open": request is not None,
            "request": _summary(request, datetime.now(UTC)) if request else None,
            "step": step.model_dump(mode="json") if step else None,
            "history": [e.model_dump(mode="json") for e in history],
        })  # fmt: skip
        return
    if request is not None:
        now = datetime.now(UTC)
        console.print(f"[bold]{request.request_id}[/] ({request.workflow}): {request.title}",
                      highlight=False)  # fmt: skip
        console.print(f"asked {_ago(request.requested_at, now)} ago of "
                      f"{', '.join(request.approvers)}"
                      + (f" (groups {', '.join(request.groups)})" if request.groups else ""),
                      highlight=False)  # fmt: skip
        console.print(f"deadline {request.deadline.isoformat()} (round {request.round}); then "
                      f"{request.on_deadline}", highlight=False)  # fmt: skip
        console.print_json(data=request.ask)
    for line in approval_lines(step_id, step) if request is None and step else []:
        console.print(line, highlight=False, markup=False)
    for event in history:
        console.print(f"{event.created_at:%Y-%m-%d %H:%M:%S} {event.status} "
                      f"{json.dumps(event.detail)}", highlight=False, markup=False)  # fmt: skip


def _missing(
    request_id: str, state: WorkflowState | None, step: StepState | None, json_: bool
) -> None:
    if state is None:
        why = f"no workflow {request_id.rpartition('/')[0]!r} found"
    elif step is None or step.status == "pending":
        why = f"workflow {state.workflow_id} has not asked it (yet): it is {state.status}"
    else:
        why = f"step {request_id.rpartition('/')[2]} is {step.status}, not an approval asked"
    message = (f"no request {request_id}: {why} (check the id and EXPEDITER_TOPIC_PREFIX; "
               "`expediter approvals list` shows the open ones)")  # fmt: skip
    if json_:
        emit_json({"ok": False, "request_id": request_id, "error": message})
        raise typer.Exit(1)
    fail(message)


def approval_lines(step_id: str, step: StepState) -> list[str]:
    """What ``status`` and ``approvals show`` say of an approval step, one line each."""
    approval = step.approval
    if approval is None:
        return []
    lines = []
    if step.status == "waiting":
        lines.append(
            f"{step_id}: waiting since {approval.requested_at:%Y-%m-%d %H:%M:%S} for "
            f"{', '.join(approval.approvers)} (round {approval.round}); deadline "
            f"{step.deadline:%Y-%m-%d %H:%M:%S}, then {approval.on_deadline}"
        )
    elif approval.decision is not None:
        by = approval.decided_by or "the deadline"
        comment = f': "{approval.comment}"' if approval.comment else ""
        lines.append(f"{step_id}: {approval.decision} by {by} at "
                     f"{approval.decided_at:%Y-%m-%d %H:%M:%S}{comment}")  # fmt: skip
    elif approval.reason == "withdrawn":
        lines.append(f"{step_id}: withdrawn (the workflow ended first)")
    if approval.parked:
        lines.append(f"{step_id}: {len(approval.parked)} decision(s) waiting for the request")
    if approval.ignored_count:
        last = approval.ignored[-1]
        lines.append(f"{step_id}: {approval.ignored_count} decision(s) ignored; last by "
                     f"{last.by}: {last.reason}")  # fmt: skip
    return lines


def _decide(
    verdict: str, request_id: str, by: str, comment: str | None, wait: float, early: bool,
    json_: bool,
) -> None:  # fmt: skip
    workflow_id, step_id = _split(request_id)
    if problem := decider_problem(by):
        raise ConfigurationError(f"--as {problem}")
    kafka, names = KafkaSettings(), _names()
    request = asyncio.run(find_request(kafka, names, request_id))
    if request is None and not early:
        state, _ = asyncio.run(read_status(kafka, names, workflow_id))
        step = state.steps.get(step_id) if state else None
        if step is not None and step.approval is not None and step.approval.decision:
            done = f"already {step.approval.decision} by {step.approval.decided_by or 'deadline'}"
            message = f"{request_id} is {done}; nothing sent"
            if json_:
                emit_json({"ok": False, "request_id": request_id, "error": message})
                raise typer.Exit(1)
            fail(message)
        _missing(request_id, state, step, json_)
    decision = ApprovalDecision(
        producer=CLIENT, request_id=request_id, workflow_id=workflow_id, step_id=step_id,
        decision="approve" if verdict == "approve" else "reject", decider=by, comment=comment,
    )  # fmt: skip
    outcome = asyncio.run(send_decision(kafka, names, decision, wait=wait))
    _report(decision, outcome, wait, json_)


def _report(
    decision: ApprovalDecision, outcome: WorkflowEvent | None, wait: float, json_: bool
) -> None:
    request_id, decision_id = decision.request_id, str(decision.event_id)
    if outcome is None:
        ok = wait <= 0
        message = (
            f"sent decision {decision_id}" if ok else
            f"sent decision {decision_id}, but the orchestrator did not answer within {wait:g}s: "
            f"it applies it when it reads approvals.decisions (`expediter approvals show "
            f"{request_id}` tells)"
        )  # fmt: skip
        if json_:
            emit_json({"ok": ok, "request_id": request_id, "decision_id": decision_id,
                       "outcome": None, "message": message})  # fmt: skip
            raise typer.Exit(0 if ok else 1)
        if ok:
            console.print(message, highlight=False)
            return
        fail(message)
    reason = outcome.detail.get("reason")
    ok = outcome.status != "decision-ignored"
    if json_:
        emit_json({"ok": ok, "request_id": request_id, "decision_id": decision_id,
                   "outcome": outcome.status, "reason": reason,
                   "detail": outcome.detail})  # fmt: skip
        raise typer.Exit(0 if ok else 1)
    if outcome.status == "approval-decided":
        console.print(f"{request_id}: {outcome.detail.get('decision')} by "
                      f"{outcome.detail.get('by')}", highlight=False)  # fmt: skip
    elif outcome.status == "decision-parked":
        console.print(f"{request_id}: not asked yet; the decision waits and applies when it is",
                      highlight=False)  # fmt: skip
    else:
        fail(f"{request_id}: decision refused ({reason}) and recorded: "
             + _REFUSALS.get(str(reason), ""))  # fmt: skip


_REFUSALS = {
    "not-allowed": "the name given with --as is not among the approvers (`approvals show`)",
    "already-decided": "it was decided first (`approvals show` says by whom)",
    "unknown-request": "the workflow has no such approval (check the id)",
    "withdrawn": "the workflow ended before anyone decided",
    "workflow-finished": "the workflow ended before it asked",
}


@app.command()
def approve(
    request_id: RequestId, as_: As, comment: Comment = None, wait: Wait = 30.0,
    early: Early = False, json_: JsonFlag = False,
) -> None:  # fmt: skip
    """Approve a request as NAME (one of its approvers); prints what the orchestrator did."""
    _decide("approve", request_id, as_, comment, wait, early, json_)


@app.command()
def reject(
    request_id: RequestId, as_: As, comment: Comment = None, wait: Wait = 30.0,
    early: Early = False, json_: JsonFlag = False,
) -> None:  # fmt: skip
    """Reject a request as NAME (one of its approvers); prints what the orchestrator did."""
    _decide("reject", request_id, as_, comment, wait, early, json_)
