"""A container's startup, liveness and readiness probes, run as a kubelet runs them.

:class:`ProbeSpec` reads a probe from the pod spec (``httpGet``, ``tcpSocket`` or ``exec``; the
port by name or number, mapped to the pod's local port by
:mod:`~expediter.dev.cluster.launching`), and :func:`run_probe` runs it every ``periodSeconds``
after ``initialDelaySeconds``, turning single tries into results by ``successThreshold`` and
``failureThreshold``, and calling back on each change. An HTTP probe passes on a status from 200
to 399, a TCP probe when it connects, an exec probe on exit code 0, each within
``timeoutSeconds``. Called by :mod:`~expediter.dev.cluster.podrunning`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from expediter.dev.cluster.nodes import NODE_IP

__all__ = ["ProbeSpec", "probe_once", "run_probe"]


@dataclass(frozen=True)
class ProbeSpec:
    kind: str
    """``http``, ``tcp`` or ``exec``."""
    port: int = 0
    path: str = "/"
    scheme: str = "http"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def read(
        cls, raw: Mapping[str, Any] | None, ports: Mapping[str | int, int]
    ) -> ProbeSpec | None:
        """The probe in ``raw`` (a container's ``readinessProbe`` and so on), or None."""
        if not raw:
            return None
        timing: dict[str, Any] = {
            "initial_delay": float(raw.get("initialDelaySeconds", 0)),
            "period": float(raw.get("periodSeconds", 10)),
            "timeout": float(raw.get("timeoutSeconds", 1)),
            "success_threshold": int(raw.get("successThreshold", 1)),
            "failure_threshold": int(raw.get("failureThreshold", 3)),
        }
        if "httpGet" in raw:
            get = raw["httpGet"]
            return cls(
                "http",
                port=_port(get["port"], ports),
                path=get.get("path", "/"),
                scheme=str(get.get("scheme", "HTTP")).lower(),
                headers=tuple((h["name"], h["value"]) for h in get.get("httpHeaders") or []),
                **timing,
            )
        if "tcpSocket" in raw:
            return cls("tcp", port=_port(raw["tcpSocket"]["port"], ports), **timing)
        if "exec" in raw:
            return cls("exec", command=tuple(raw["exec"].get("command") or ()), **timing)
        return None  # grpc: not run here; the container counts as passing it


def _port(port: str | int, ports: Mapping[str | int, int]) -> int:
    """The local port for a probe's port (a containerPort's name or number)."""
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    return ports.get(port, port if isinstance(port, int) else 0)


async def probe_once(
    spec: ProbeSpec, *, env: Mapping[str, str], cwd: Path, process_group: int | None
) -> bool:
    """One try of the probe."""
    try:
        async with asyncio.timeout(spec.timeout):
            if spec.kind == "http":
                url = f"{spec.scheme}://{NODE_IP}:{spec.port}{spec.path}"
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(url, headers=dict(spec.headers), ssl=False) as response,
                ):
                    return 200 <= response.status < 400
            if spec.kind == "tcp":
                _, writer = await asyncio.open_connection(NODE_IP, spec.port)
                writer.close()
                return True
            return await _exec(spec.command, env, cwd, process_group)
    except (TimeoutError, OSError, aiohttp.ClientError):
        return False


async def _exec(
    command: tuple[str, ...], env: Mapping[str, str], cwd: Path, process_group: int | None
) -> bool:
    # In the container's process group, as an exec runs inside the container: a stop kills it.
    proc = await asyncio.create_subprocess_exec(
        *command,
        env=dict(env),
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        process_group=process_group,
    )
    try:
        return await proc.wait() == 0
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()


async def run_probe(
    spec: ProbeSpec,
    changed: Callable[[bool], None],
    *,
    env: Mapping[str, str],
    cwd: Path,
    process_group: int | None,
    initial: bool | None = None,
    until: Callable[[bool], bool] = lambda _: False,
) -> None:
    """Probe forever (until cancelled or ``until(result)``); ``changed(result)`` on each change.

    ``initial`` is the result before the first try (a readiness probe starts failing, a
    liveness probe passing).
    """
    await asyncio.sleep(spec.initial_delay)
    result, successes, failures = initial, 0, 0
    while True:
        ok = await probe_once(spec, env=env, cwd=cwd, process_group=process_group)
        successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
        new = result
        if successes >= spec.success_threshold:
            new = True
        elif failures >= spec.failure_threshold:
            new = False
        if new is not None and new != result:
            result = new
            changed(new)
            if until(new):
                return
        await asyncio.sleep(spec.period)
