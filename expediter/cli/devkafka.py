"""``expediter dev kafka start|stop|status|fetch``: a real broker for development.

The broker comes from the same three ways as in the tests (see :mod:`expediter.dev.locating`):
``EXPEDITER_BOOTSTRAP``, else docker compose when a Docker engine answers, else a local KRaft
broker from Maven Central jars, kept in ``$EXPEDITER_DEV_DIR/kafka`` (default ``.expediter/kafka``).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from typing import Annotated, Any

import typer

from expediter.cli.output import console, emit_json, fail
from expediter.dev import (
    COMPOSE_BOOTSTRAP,
    KAFKA_VERSION,
    LocalBroker,
    ScramUser,
    choose_kind,
    compose_file,
    fetch_kafka,
)
from expediter.errors import BrokerUnavailableError, ConfigurationError, LocalBrokerError
from expediter.messaging import api_versions
from expediter.settings import DevSettings, KafkaSettings

__all__ = ["app"]

app = typer.Typer(
    help="Start, stop and inspect the development Kafka broker.", no_args_is_help=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object for scripts.")]


def _local(
    dev: DevSettings, users: list[ScramUser] | None = None, port: int | None = None
) -> LocalBroker:
    return LocalBroker(
        dev.dir / "kafka", scram_users=users or (), heap_mb=dev.kafka_heap_mb, port=port
    )


def _parse_user(spec: str) -> ScramUser:
    name, sep, password = spec.partition(":")
    if not sep:
        raise ConfigurationError(
            f"--scram-user {spec!r}: expected NAME:PASSWORD, e.g. alice:s3cret"
        )
    return ScramUser(name=name, password=password)


def _compose(*args: str) -> None:
    docker = shutil.which("docker") or "docker"
    command = [docker, "compose", "-f", str(compose_file()), *args]
    if subprocess.run(command, check=False).returncode != 0:
        fail(f"`{' '.join(command)}` failed")


@app.command()
def start(
    scram_user: Annotated[
        list[str] | None,
        typer.Option(help="Add a SCRAM-SHA-512 user NAME:PASSWORD and a SASL_PLAINTEXT listener."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="PLAINTEXT port (default: a free one).")] = None,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Start on the data and ports of the last start instead of wiping them "
            "(a broker restart, after `expediter dev kafka stop`).",
        ),
    ] = False,
    json_: JsonFlag = False,
) -> None:
    """Start a broker (or find the one already running) and print its address.

    Without --keep, the local broker starts empty: its data from before is wiped.
    """
    dev = DevSettings()
    kind = choose_kind()
    if kind == "external":
        fail("EXPEDITER_BOOTSTRAP is set, so that cluster is used and nothing is started; "
             "unset it to start a local broker", code=2)  # fmt: skip
    if kind == "docker":
        # `compose stop` keeps the container and its data; `up` starts that one again.
        _compose("up", "-d", "--wait", "kafka")
        _report({"kind": "docker", "bootstrap": COMPOSE_BOOTSTRAP, "version": KAFKA_VERSION}, json_)
        return
    broker = _local(dev, [_parse_user(u) for u in scram_user or []], port)
    if not json_:
        how = "on its kept data" if keep else "(KRaft, one node)"
        console.print(f"starting Apache Kafka {broker.version} {how} ...")
    try:
        state = asyncio.run(broker.start(timeout=dev.start_timeout, keep=keep))
    except LocalBrokerError as exc:
        fail(str(exc), code=2 if keep else 1)
    _report({"kind": "local", "running": True, **vars(state)}, json_)


@app.command()
def stop(json_: JsonFlag = False) -> None:
    """Stop the broker this checkout started. Never touches another process.

    Its data stays: `expediter dev kafka start --keep` starts it again on the same data and ports.
    """
    if choose_kind() == "docker":
        _compose("stop", "kafka")
        _report({"kind": "docker", "stopped": True}, json_)
        return
    stopped = asyncio.run(_local(DevSettings()).stop())
    if json_:
        emit_json({"kind": "local", "stopped": stopped})
    else:
        console.print("broker stopped" if stopped else "no broker was running")


@app.command()
def status(json_: JsonFlag = False) -> None:
    """Print the bootstrap address and version of the broker; exit 1 when none answers."""
    kind = choose_kind()
    info: dict[str, Any]
    if kind == "external":
        info = {"kind": "external", "bootstrap": KafkaSettings().bootstrap, "version": "unknown"}
    elif kind == "docker":
        info = {"kind": "docker", "bootstrap": COMPOSE_BOOTSTRAP, "version": KAFKA_VERSION}
    else:
        state = _local(DevSettings()).status()
        if state is None:
            if json_:
                emit_json({"kind": "local", "running": False})
                raise typer.Exit(1)
            fail("no local broker is running: start one with `expediter dev kafka start`")
        info = {"kind": "local", **vars(state)}
    host, _, port = str(info["bootstrap"].split(",")[0]).rpartition(":")
    try:
        reply = asyncio.run(api_versions(host, int(port)))
    except BrokerUnavailableError as exc:
        if json_:
            emit_json({**info, "running": False, "error": str(exc)})
            raise typer.Exit(1) from exc
        fail(str(exc))
    _report({**info, "running": True, "api_keys": len(reply.apis)}, json_)


@app.command()
def fetch(json_: JsonFlag = False) -> None:
    """Download the broker's jars from Maven Central into the cache (done by start anyway)."""
    libs = fetch_kafka()
    _report({"version": KAFKA_VERSION, "libs": str(libs)}, json_)


def _report(info: dict[str, Any], json_: bool) -> None:
    if json_:
        emit_json(info)
        return
    for key, value in info.items():
        if value not in (None, [], ""):
            console.print(f"[bold]{key:>15}[/] {value}", highlight=False)
