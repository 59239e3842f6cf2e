"""One container of a pod as a local process: start, probe, restart with back-off, stop.

:class:`ContainerRunner` runs the container's command (made by
:mod:`~expediter.dev.cluster.launching`) as a process in its own process group, with its
output in ``<node dir>/logs/<namespace>_<pod>_<uid>/<container>/<restart>.log`` (a kubelet's
``/var/log/pods`` layout). When the process exits, the rest of its group is killed, as a
container's processes die with its PID 1. Probes (:mod:`~expediter.dev.cluster.probing`) set
``started`` and ``ready`` and restart it when its startup or liveness probe fails.

Restarts follow ``restartPolicy`` and the kubelet's back-off: the first restart at once, then
10 s, 20 s, 40 s ... up to 5 min (``CrashLoopBackOff`` meanwhile), forgotten after 10 min of
running. A stop is a kubelet's: the preStop hook, then SIGTERM, then SIGKILL at the deadline
(at least 2 s after a preStop hook). Called by :mod:`~expediter.dev.cluster.podrunning`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from expediter.dev.cluster.launching import ConfigError, ContainerPlan
from expediter.dev.cluster.nodeclient import ApiError
from expediter.dev.cluster.nodes import NODE_IP
from expediter.dev.cluster.podstatus import ContainerStatus, exit_reason
from expediter.dev.cluster.probing import ProbeSpec, run_probe

if TYPE_CHECKING:
    from expediter.dev.cluster.podrunning import PodRunner

__all__ = ["BACKOFF_MAX_SECONDS", "BACKOFF_SECONDS", "ContainerRunner", "kill_group"]

log = logging.getLogger(__name__)

BACKOFF_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 300.0
BACKOFF_RESET_SECONDS = 600.0
MIN_TERM_SECONDS = 2.0
"""After a preStop hook, SIGTERM still gets this long (the kubelet's minimum grace)."""


def kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ContainerRunner:
    """Runs one container of ``pod`` until the pod is stopped or it is done for good."""

    def __init__(self, pod: PodRunner, spec: Mapping[str, Any]) -> None:
        self.pod = pod
        self.spec = spec
        self.name = str(spec["name"])
        self.status = ContainerStatus(name=self.name, image=str(spec.get("image") or ""))
        self.process: asyncio.subprocess.Process | None = None
        self.plan: ContainerPlan | None = None
        self._backoff: float | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def _set(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.status, key, value)
        self.pod.changed()

    async def run(self) -> None:
        """Start, wait, restart per policy; returns when the pod stops or policy says done."""
        while not self.pod.stopping:
            try:
                self.plan = await self.pod.plan(self.spec)
            except (ConfigError, ApiError) as exc:
                reason = (
                    exc.reason if isinstance(exc, ConfigError) else "CreateContainerConfigError"
                )
                self._set(state="waiting", reason=reason, message=str(exc))
                await self.pod.sleep(3.0)  # the kubelet retries too; a ConfigMap may appear
                continue
            returncode, ran = await self._run_once(self.plan)
            if self.pod.stopping or not self._restarts(returncode):
                return
            delay = self._next_delay(ran)
            if delay > 0:
                self._set(
                    state="waiting",
                    reason="CrashLoopBackOff",
                    last=self.status.terminated(),
                    message=f"back-off {delay:g}s restarting failed container={self.name} "
                    f"pod={self.pod.name}",
                )
                await self.pod.sleep(delay)
                if self.pod.stopping:
                    return
            self._set(restart_count=self.status.restart_count + 1)

    def _restarts(self, returncode: int) -> bool:
        policy = self.pod.spec.get("restartPolicy", "Always")
        return policy == "Always" or (policy == "OnFailure" and returncode != 0)

    def _next_delay(self, ran: float) -> float:
        if ran >= BACKOFF_RESET_SECONDS:
            self._backoff = None
        if self._backoff is None:  # the kubelet restarts at once the first time
            self._backoff = BACKOFF_SECONDS
            return 0.0
        delay, self._backoff = self._backoff, min(self._backoff * 2, BACKOFF_MAX_SECONDS)
        return delay

    async def _run_once(self, plan: ContainerPlan) -> tuple[int, float]:
        """One life of the process: (its return code, seconds it ran)."""
        last = self.status.terminated() if self.status.state == "terminated" else self.status.last
        log_file = self.pod.log_dir / self.name / f"{self.status.restart_count}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        try:
            with log_file.open("ab") as out:
                self.process = await asyncio.create_subprocess_exec(
                    *plan.argv,
                    cwd=plan.cwd,
                    env=plan.env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    # A group of its own in the node's session (the node has a session of its
                    # own): probes and preStop hooks can join it, and a stop reaches them all.
                    process_group=0,
                )
        except OSError as exc:  # no such program, not executable
            self._set(
                state="terminated",
                exit_code=128,
                reason="StartError",
                last=last,
                message=f"{plan.argv[0]}: {exc.strerror or exc}",
                started_at=_now(),
                finished_at=_now(),
                pid=None,
            )
            return 128, 0.0
        pid = self.process.pid
        self.pod.track(self.name, pid)
        startup = ProbeSpec.read(self.spec.get("startupProbe"), self.pod.layout.ports)
        self._set(
            state="running",
            reason=None,
            message=None,
            started_at=_now(),
            pid=pid,
            exit_code=None,
            last=last,
            started=startup is None,
            ready=False,
        )
        probes = asyncio.create_task(self._probe(plan, pid, startup))
        try:
            returncode = await self.process.wait()
        finally:
            probes.cancel()
            await asyncio.gather(probes, return_exceptions=True)
            kill_group(pid, signal.SIGKILL)  # what is left of the container dies with it
            self.pod.untrack(self.name)
        code, reason, message = exit_reason(returncode)
        self._set(
            state="terminated",
            exit_code=code,
            reason=reason,
            message=message,
            finished_at=_now(),
            started=False,
            ready=False,
        )
        return returncode, time.monotonic() - began

    async def _probe(self, plan: ContainerPlan, pid: int, startup: ProbeSpec | None) -> None:
        ports = self.pod.layout.ports
        common = {"env": plan.env, "cwd": plan.cwd, "process_group": pid}
        if startup is not None:
            # Liveness and readiness wait until the startup probe passes (it returns then).
            started = lambda ok: self._set(started=True) if ok else self._failed("startup")  # noqa: E731
            await run_probe(startup, started, initial=None, until=lambda ok: ok, **common)  # type: ignore[arg-type]
        tasks = []
        readiness = ProbeSpec.read(self.spec.get("readinessProbe"), ports)
        if readiness is None:
            self._set(ready=True)
        else:
            ready = lambda ok: self._set(ready=ok)  # noqa: E731
            tasks.append(run_probe(readiness, ready, initial=False, **common))  # type: ignore[arg-type]
        liveness = ProbeSpec.read(self.spec.get("livenessProbe"), ports)
        if liveness is not None:
            live = lambda ok: None if ok else self._failed("liveness")  # noqa: E731
            tasks.append(run_probe(liveness, live, initial=True, **common))  # type: ignore[arg-type]
        await asyncio.gather(*tasks)

    def _failed(self, which: str) -> None:
        """A startup or liveness probe failed for good: the container is killed and restarted."""
        log.info("%s/%s: %s probe failed, restarting", self.pod.name, self.name, which)
        if self.running and self.process is not None:
            deadline = time.monotonic() + self.pod.grace_seconds
            asyncio.get_running_loop().create_task(self.stop(deadline, pre_stop=True))

    async def stop(self, deadline: float, *, pre_stop: bool) -> None:
        """preStop (when asked), SIGTERM, then SIGKILL at ``deadline`` (monotonic)."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        hook = ((self.spec.get("lifecycle") or {}).get("preStop")) if pre_stop else None
        if hook:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(deadline - time.monotonic(), 0)):
                    await self._pre_stop(hook, process.pid)
            deadline = max(deadline, time.monotonic() + MIN_TERM_SECONDS)
        kill_group(process.pid, signal.SIGTERM)
        while process.returncode is None:
            remaining = min(deadline, self.pod.kill_at or deadline) - time.monotonic()
            if remaining <= 0:
                kill_group(process.pid, signal.SIGKILL)
                await process.wait()
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), min(remaining, 0.5))

    async def _pre_stop(self, hook: Mapping[str, Any], pgid: int) -> None:
        if "exec" in hook and self.plan is not None:
            hooked = await asyncio.create_subprocess_exec(
                *hook["exec"]["command"],
                env=self.plan.env,
                cwd=self.plan.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                process_group=pgid,
            )
            try:
                await hooked.wait()
            finally:
                if hooked.returncode is None:
                    hooked.kill()
                    await hooked.wait()
        elif "httpGet" in hook:
            get = hook["httpGet"]
            port = ProbeSpec.read({"httpGet": get}, self.pod.layout.ports)
            url = f"http://{NODE_IP}:{port.port if port else 0}{get.get('path', '/')}"
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with aiohttp.ClientSession() as session, session.get(url):
                    pass
        elif "sleep" in hook:
            await asyncio.sleep(float(hook["sleep"].get("seconds", 0)))


def log_root(node_dir: Path, pod: Mapping[str, Any]) -> Path:
    meta = pod["metadata"]
    return node_dir / "logs" / f"{meta.get('namespace', '')}_{meta['name']}_{meta['uid']}"
