"""The ``expediter`` command line. Entry point: :func:`main`.

Each command group lives in its own module and is mounted here. Every command that reports
something takes ``--json`` for scripts. Errors from the runtime (:mod:`expediter.errors`) are
printed as one line naming the problem and the fix, with a non-zero exit code, never as a
traceback.
"""

from __future__ import annotations

import sys

import typer

from expediter.cli import (
    agents,
    approvals,
    demo,
    devcluster,
    devkafka,
    dlq,
    keda,
    operator,
    orchestrating,
    replay,
    scaler,
    schemas,
    supervising,
    topics,
    watching,
    worker,
)
from expediter.cli.output import fail
from expediter.errors import ConfigurationError, ExpediterError

__all__ = ["app", "main"]

app = typer.Typer(
    name="expediter",
    help="Run AI agents as event-driven consumers on Apache Kafka, autoscaled by KEDA.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
dev = typer.Typer(
    help="Developer tooling: a real Kafka broker, Kubernetes and KEDA on this machine.",
    no_args_is_help=True,
)
dev.add_typer(devkafka.app, name="kafka")
dev.add_typer(devcluster.app, name="cluster")
app.add_typer(dev, name="dev")
app.add_typer(schemas.app, name="schemas")
app.add_typer(topics.app, name="topics")
app.add_typer(dlq.app, name="dlq")
app.add_typer(approvals.app, name="approvals")
replay.register(app)  # replay, trace, diff
app.add_typer(keda.app, name="keda")
app.command(name="demo")(demo.demo)
app.command(name="worker")(worker.worker)
app.command(name="orchestrator")(orchestrating.orchestrator)
app.command(name="operator")(operator.operator)
app.command(name="submit")(orchestrating.submit)
app.command(name="status")(orchestrating.status)
app.command(name="up")(supervising.up)
app.command(name="watch")(watching.watch)
app.command(name="agents")(agents.agents)
app.command(name="scaler")(scaler.scaler)


def main() -> None:
    try:
        app()
    except ConfigurationError as exc:
        fail(str(exc), code=2)
    except ExpediterError as exc:
        fail(str(exc), code=1)
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    sys.exit(0)
