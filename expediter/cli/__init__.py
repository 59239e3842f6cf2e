"""The ``expediter`` command line. Entry point: :func:`main`.

Each command group lives in its own module, listed here and imported only when its command runs
(:mod:`expediter.cli.deferring`), so that ``expediter worker`` never loads what the operator,
the orchestrator or the dev cluster need: a worker's memory is what its image is sized by.
Every command that reports something takes ``--json`` for scripts. Errors from the runtime
(:mod:`expediter.errors`) are printed as one line naming the problem and the fix, with a
non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import sys

import typer

from expediter.cli.deferring import Deferred, deferred_group
from expediter.errors import ConfigurationError, ExpediterError

__all__ = ["COMMANDS", "DEV_COMMANDS", "app", "main"]

_C = "expediter.cli."
COMMANDS: dict[str, Deferred] = {
    "replay": Deferred(_C + "replay", "replay",
        "Print a range of any topic, or re-run it into shadow topics. Never moves a group."),
    "trace": Deferred(_C + "replay", "trace",
        "One workflow's whole history in time order, across its topics, with each hop's "
        "latency."),
    "diff": Deferred(_C + "replay", "diff",
        "Compare a shadow re-run's results with the originals, field by field, and say how "
        "often\neach field agrees (the figures that judge a candidate engine)."),
    "demo": Deferred(_C + "demo", "demo",
        "Run the field-analysis fleet on a real broker, scaled on lag as KEDA would; sum it up."),
    "worker": Deferred(_C + "worker", "worker",
        "Run one agent: join agents.<capability> on tasks.<capability> and publish results."),
    "orchestrator": Deferred(_C + "orchestrating", "orchestrator",
        "Run the orchestrator (a Faust app) until SIGTERM: join results, publish next tasks."),
    "operator": Deferred(_C + "operator", "operator", "Run the Agent operator until SIGTERM."),
    "submit": Deferred(_C + "orchestrating", "submit",
        "Publish a request; with --wait, print the final result (request-reply over Kafka)."),
    "status": Deferred(_C + "orchestrating", "status",
        "Print a workflow's state and its step history."),
    "up": Deferred(_C + "supervising", "up",
        "Run the orchestrator and scale each agent's workers on lag, as KEDA would; Ctrl-C "
        "stops."),
    "watch": Deferred(_C + "watching", "watch",
        "Show per capability: offsets, lag, rates, KEDA's metric, desired and actual replicas."),
    "agents": Deferred(_C + "agents", "agents",
        "List the live agents per capability: instances, version, engine, model, resources."),
    "scaler": Deferred(_C + "scaler", "scaler",
        "Serve KEDA's externalscaler.proto: pending tokens / a replica's tokens/s per agent."),
    "dev": Deferred("expediter.cli", "dev",
        "Developer tooling: a real Kafka broker, Kubernetes and KEDA on this machine."),
    "schemas": Deferred(_C + "schemas", "app",
        "Export and check the JSON Schemas of events and payloads."),
    "topics": Deferred(_C + "topics", "app",
        "Check the topic catalog, apply it to a cluster, and inspect topics."),
    "dlq": Deferred(_C + "dlq", "app",
        "Dead letters: list them, show them whole, redrive them to their source topic."),
    "approvals": Deferred(_C + "approvals", "app",
        "Approval requests workflows wait on: list them, show one, approve or reject it."),
    "keda": Deferred(_C + "keda", "app",
        "KEDA on this machine: simulate a ScaledObject over a timeline; render and check keda/ "
        "and k8s/."),
}  # fmt: skip
"""The top-level commands, in --help's order; each line is the command's own first paragraph
of help (a test compares them)."""

DEV_COMMANDS: dict[str, Deferred] = {
    "kafka": Deferred(_C + "devkafka", "app",
        "Start, stop and inspect the development Kafka broker."),
    "cluster": Deferred(_C + "devcluster", "app",
        "Build, start, stop and inspect a local Kubernetes control plane with KEDA."),
}  # fmt: skip
"""The commands of ``expediter dev``."""

app = typer.Typer(
    name="expediter",
    help="Run AI agents as event-driven consumers on Apache Kafka, autoscaled by KEDA.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=deferred_group(COMMANDS),
)
dev = typer.Typer(
    help="Developer tooling: a real Kafka broker, Kubernetes and KEDA on this machine.",
    no_args_is_help=True,
    cls=deferred_group(DEV_COMMANDS),
)
"""``expediter dev``: a group of deferred groups, itself listed in :data:`COMMANDS`."""


# A callback makes each Typer a group even though no command is registered on it up front.
@app.callback()
def _expediter() -> None: ...


@dev.callback()
def _dev() -> None: ...


def main() -> None:
    try:
        app()
    except ConfigurationError as exc:
        _fail(str(exc), code=2)
    except ExpediterError as exc:
        _fail(str(exc), code=1)
    except KeyboardInterrupt:
        _fail("interrupted", code=130)
    sys.exit(0)


def _fail(message: str, *, code: int) -> None:
    from expediter.cli.output import fail  # rich, only when there is an error to print

    fail(message, code=code)
