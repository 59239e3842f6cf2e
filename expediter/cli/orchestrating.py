"""``expediter orchestrator``, ``submit`` and ``status``: run the orchestrator and talk to it.

``submit`` takes a workflow name (a file under workflows/) or a capability (one task, straight
to its agents). ``--wait`` returns the final result by request-reply over Kafka; ``--count N
--rate R`` submits many, with a progress bar. ``status`` prints a workflow's state and history.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from expediter.authoring import load_workflows
from expediter.authoring.approvals import APPROVAL_CAPABILITY
from expediter.cli.agents import print_warning, unserved_warning
from expediter.cli.approvals import approval_lines
from expediter.cli.output import console, emit_json, fail
from expediter.cli.stopping import arm_watchdog
from expediter.errors import ConfigurationError, ExpediterError
from expediter.messaging import TopicNames
from expediter.orchestrator.submitting import Submission, Submitter, new_workflow_id, read_status
from expediter.settings import KafkaSettings, OrchestratorSettings

__all__ = ["orchestrator", "status", "submit"]

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
WorkflowsDir = Annotated[
    Path | None, typer.Option("--workflows", help="Folder of workflow files (default workflows/).")
]


def orchestrator(workflows: WorkflowsDir = None) -> None:
    """Run the orchestrator (a Faust app) until SIGTERM: join results, publish next tasks.

    Shutdown gets EXPEDITER_SHUTDOWN_SECONDS (30), then the process exits with code 70. A crash
    (a transaction of which a record was not delivered) exits non-zero the same way.
    """
    import faust

    from expediter.orchestrator.running import build_app

    settings = OrchestratorSettings()
    if workflows is not None:
        settings = settings.model_copy(update={"workflows_dir": workflows})
    found = load_workflows(settings.workflows_dir)
    app = build_app(KafkaSettings(), settings, found)
    console.print(f"orchestrator: workflows {', '.join(sorted(found))}", highlight=False)
    budget = settings.shutdown_seconds

    class Worker(faust.Worker):
        # Faust's own handlers stop the app; these only add the hard deadline before them.
        def _on_sigterm(self) -> None:
            arm_watchdog(budget)
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            arm_watchdog(budget)
            super()._on_sigint()

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            # Faust's terminal spinner sets the root logger to DEBUG so that it spins on every
            # log record: each aiokafka debug call then builds one (13-20% of the CPU per
            # workflow). Logs go to files and collectors here, not to a terminal.
            self.spinner = None
            super().on_setup_root_logger(logger, level)

        def _crash(self, reason: BaseException) -> None:
            # A crash (a transaction that lost a record) stops the app too, and its shutdown
            # can hang the same way: the process must exit, so that a restart reads again.
            arm_watchdog(budget)
            super()._crash(reason)

    worker = Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


def _parse_input(text: str) -> dict[str, Any]:
    raw = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, OSError) as exc:
        raise ConfigurationError(
            f"--input {text!r} is not JSON ({exc}); pass '{{...}}' or @file.json"
        ) from exc
    if not isinstance(value, dict):
        raise ConfigurationError('--input must be a JSON object, e.g. \'{"field_id": "f1"}\'')
    return value


def submit(
    target: Annotated[str, typer.Argument(help="A workflow name (workflows/) or a capability.")],
    input_: Annotated[str, typer.Option("--input", help="JSON object, or @file.json.")] = "{}",
    wait: Annotated[bool, typer.Option(help="Wait for the final result.")] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds --wait may take.")] = 120.0,
    count: Annotated[int, typer.Option(min=1, help="How many to submit.")] = 1,
    rate: Annotated[
        float, typer.Option(min=0.1, help="Submissions per second with --count.")
    ] = 50.0,
    workflows: WorkflowsDir = None,
    json_: JsonFlag = False,
) -> None:
    """Publish a request; with --wait, print the final result (request-reply over Kafka).

    A workflow's input is checked against its input model first: bad input is refused (exit
    2) with each bad field named, before anything is sent.
    """
    given = _parse_input(input_)
    settings = OrchestratorSettings()
    folder = workflows or settings.workflows_dir
    found = load_workflows(folder) if folder.is_dir() else {}
    if target in found:
        found[target].check_input(given)  # InvalidInputError: a ConfigurationError, exit 2
    needed = [s.capability for s in found[target].steps()] if target in found else [target]
    print_warning(unserved_warning(needed, settings.topic_prefix))
    names = set(found)
    try:
        done = asyncio.run(
            _submit(target, given, names, settings, wait, timeout, count, rate, json_)
        )
    except _Interrupted as stop:
        _report_interrupted(stop, count, json_)
    failed = [s for s in done if (s.outcome or {}).get("status") not in ("completed", "succeeded")]
    if json_:
        emit_json([_summary(s) for s in done] if count > 1 else _summary(done[0]))
        if wait and failed:
            raise typer.Exit(1)  # as the plain output: a script sees the failure in the code
        return
    for s in done if count <= 5 else []:
        console.print(f"{s.workflow_id}  {target}", highlight=False)
        if s.outcome is not None:
            console.print_json(data=s.outcome)
    if count > 5:
        console.print(f"submitted {count} {target} requests")
    if wait:
        seconds = sorted(s.seconds or 0 for s in done)
        p50 = seconds[len(seconds) // 2]
        console.print(
            f"finished {len(done) - len(failed)}/{len(done)}; p50 {p50:.2f}s",
            highlight=False,
        )
        if failed:
            fail(f"{len(failed)} did not succeed, e.g. {failed[0].workflow_id}")


class _Interrupted(Exception):
    """Publishing stopped part-way (the broker went away): what was published, what is unsure."""

    def __init__(self, done: list[Submission], unsure: str, error: BaseException) -> None:
        super().__init__(repr(error))
        self.done = done
        self.unsure = unsure
        self.error = error


def _report_interrupted(stop: _Interrupted, count: int, json_: bool) -> NoReturn:
    published = [s.workflow_id for s in stop.done]
    message = (
        f"publishing stopped after {len(published)} of {count} ({stop.error!r}; is the broker "
        f"up? EXPEDITER_BOOTSTRAP). {stop.unsure} may or may not have been published "
        f"(`expediter status {stop.unsure}` tells); submit the other {count - len(published) - 1} "
        "again"
    )
    if json_:
        emit_json({"ok": False, "error": message, "published": [_summary(s) for s in stop.done],
                   "unsure": stop.unsure})  # fmt: skip
    else:
        for workflow_id in published:
            console.print(workflow_id, highlight=False)
    fail(message + (f"; the {len(published)} published ids are listed above" if published
                    and not json_ else ""))  # fmt: skip


def _summary(s: Submission) -> dict[str, Any]:
    return {
        "workflow_id": s.workflow_id,
        "target": s.target,
        "outcome": s.outcome,
        "seconds": s.seconds,
    }


async def _submit(
    target: str, given: dict[str, Any], workflows: set[str], settings: OrchestratorSettings,
    wait: bool, timeout: float, count: int, rate: float, quiet: bool,
) -> list[Submission]:  # fmt: skip
    names = TopicNames(settings.topic_prefix)
    columns = (TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, disable=quiet or count == 1) as bars:
        sending = bars.add_task("submit", total=count)
        finishing = bars.add_task("finish", total=count, visible=wait)
        async with Submitter(KafkaSettings(), names, workflows) as client:
            done: list[Submission] = []
            started = time.monotonic()
            for n in range(count):
                workflow_id = new_workflow_id()
                try:
                    done.append(await client.submit(target, given, workflow_id))
                except ExpediterError:
                    raise  # a wrong target or a missing topic: reported as it is
                except Exception as exc:  # the broker went away part-way: say what was sent
                    raise _Interrupted(done, workflow_id, exc) from exc
                bars.advance(sending)
                pause = started + (n + 1) / rate - time.monotonic()
                if count > 1 and pause > 0:
                    await asyncio.sleep(pause)
            if wait:
                await client.wait(done, timeout=timeout, progress=lambda _: bars.advance(finishing))
    return done


def status(
    workflow_id: Annotated[str, typer.Argument(help="The id `submit` printed.")],
    json_: JsonFlag = False,
) -> None:
    """Print a workflow's state and its step history."""
    settings = OrchestratorSettings()
    state, events = asyncio.run(
        read_status(KafkaSettings(), TopicNames(settings.topic_prefix), workflow_id)
    )
    if state is None and not events:
        if json_:
            emit_json({"workflow_id": workflow_id, "found": False})
            raise typer.Exit(1)
        fail(f"no workflow {workflow_id!r} found (check the id, and EXPEDITER_TOPIC_PREFIX)")
    waiting = [] if state is None or state.status != "running" else [
        step.capability for step in state.steps.values()
        if step.status in ("pending", "running") and step.capability != APPROVAL_CAPABILITY
    ]  # fmt: skip
    warning = unserved_warning(waiting, settings.topic_prefix)
    if json_:
        emit_json({
            "workflow_id": workflow_id, "found": True, "warnings": [warning] if warning else [],
            "state": state.model_dump(mode="json") if state else None,
            "history": [e.model_dump(mode="json") for e in events],
        })  # fmt: skip
        return
    if state is not None:
        console.print(
            f"[bold]{state.workflow_id}[/] {state.workflow}: {state.status}", highlight=False
        )
        if state.reason:
            console.print(f"reason: {state.reason}", highlight=False, markup=False)
        print_warning(warning)
        steps = Table("step", "capability", "status", "attempt", "late", "error")
        for step_id, step in state.steps.items():
            steps.add_row(step_id, step.capability, step.status, str(step.attempt), str(step.late),
                          step.error.code if step.error else "")  # fmt: skip
        console.print(steps)
        for step_id, step in state.steps.items():  # an approval's wait or decision, in words
            for line in approval_lines(step_id, step):
                console.print(line, highlight=False, markup=False)
    history = Table("time", "event", "step", "detail")
    for event in events:
        detail = {k: v for k, v in event.detail.items() if k != "report"}
        history.add_row(event.created_at.strftime("%H:%M:%S.%f")[:-3], event.status,
                        event.step_id or "", json.dumps(detail)[:80])  # fmt: skip
    console.print(history)
