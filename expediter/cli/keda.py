"""``expediter keda ...``: KEDA's arithmetic on this machine.

``simulate --scenario FILE.json`` runs :mod:`expediter.scaling` over a scenario's timeline and
prints one JSON line per step, ``{"t", "lag", "metric", "active", "replicas"}`` in that order;
``--explain`` adds one line per step to stderr saying why. A bad scenario exits 2 with every
problem named as ``FILE: KEY: PROBLEM; FIX`` and prints no steps.

This module owns the ``keda`` sub-app (:data:`app`), mounted by :mod:`expediter.cli`. Other keda
commands live in their own modules and are registered here, one line each, the way
``expediter.cli`` registers ``demo``: ``app.command(name="render")(rendering.render)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from expediter.cli import keda_render
from expediter.cli.output import err_console
from expediter.errors import ConfigurationError
from expediter.scaling import Scenario, parse_scenario
from expediter.scaling.workscenarios import WorkScenario, is_work_scenario, parse_work_scenario

__all__ = ["app", "load_scenario", "simulate"]

app = typer.Typer(
    help="KEDA on this machine: simulate a ScaledObject over a timeline; render and check "
    "keda/ and k8s/.",
    no_args_is_help=True,
)


def load_scenario(path: Path) -> Scenario | WorkScenario:
    """Read and validate a scenario file; every problem is prefixed with the file's name.

    A trigger with ``"type": "external"`` is ``expediter scaler``'s work-based one
    (:mod:`expediter.scaling.workscenarios`); any other is KEDA's Kafka trigger."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"{path}: no such file; pass the path of a scenario JSON file to --scenario"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read ({exc}); check the path") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}; fix "
            "the syntax (JSON has no comments or trailing commas)"
        ) from None
    try:
        if is_work_scenario(document):
            return parse_work_scenario(document)
        return parse_scenario(document)
    except ConfigurationError as exc:
        raise ConfigurationError(
            "\n".join(f"{path}: {line}" for line in str(exc).splitlines())
        ) from None


@app.command()
def simulate(
    scenario: Annotated[
        Path,
        typer.Option(
            "--scenario",
            help="A scenario JSON file (see expediter.scaling.scenarios).",
            dir_okay=False,
        ),
    ],
    explain: Annotated[
        bool, typer.Option("--explain", help="Also say on stderr why each step came out so.")
    ] = False,
) -> None:
    """Run KEDA's Kafka scaler, scale loop and HPA over a timeline: one JSON line per step."""
    loaded = load_scenario(scenario)
    for result in loaded.run():
        # Not emit_json: its sorted keys would break the documented t, lag, metric, ... order.
        sys.stdout.write(json.dumps(result.as_line()) + "\n")
        sys.stdout.flush()
        if explain:
            err_console.print(result.explain(), highlight=False, soft_wrap=True, markup=False)


app.command(name="render")(keda_render.render)
app.command(name="check")(keda_render.check)
