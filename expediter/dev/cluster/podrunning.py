"""One pod bound to the local node, from its binding to its deletion, as a kubelet runs it.

:class:`PodRunner` gives the pod its local ports and directory
(:mod:`~expediter.dev.cluster.launching`), runs each container
(:mod:`~expediter.dev.cluster.containerrunning`) and reports the pod's status
(:mod:`~expediter.dev.cluster.podstatus`) whenever something changes. The local ports are
written on the pod as the annotation ``node.expediter.io/ports`` (``{"http": 41234}``), so that
a person can reach a pod's /metrics.

Deletion is a kubelet's: the API server sets ``deletionTimestamp`` and
``deletionGracePeriodSeconds`` (the pod's ``terminationGracePeriodSeconds`` unless the delete
said otherwise); each container gets its preStop hook, SIGTERM, and SIGKILL when the grace
period is over (a later delete with a shorter grace period brings that forward). Once every
process has ended, the pod's last status is written and the pod is deleted with
``gracePeriodSeconds=0`` and its UID as precondition, which removes it from the API. A pod that
vanishes from the API (force-deleted) gets SIGTERM and 2 s. Called by
:mod:`~expediter.dev.cluster.kubelet`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import shutil
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expediter.dev.cluster.containerrunning import ContainerRunner, kill_group, log_root
from expediter.dev.cluster.launching import (
    ContainerPlan,
    PodLayout,
    allocate_ports,
    plan_container,
    prepare_volumes,
    referenced_objects,
)
from expediter.dev.cluster.nodeclient import ApiError, NodeClient
from expediter.dev.cluster.podstatus import pod_status

__all__ = ["PORTS_ANNOTATION", "NodeContext", "PodRunner"]

log = logging.getLogger(__name__)

PORTS_ANNOTATION = "node.expediter.io/ports"
FORCED_GRACE_SECONDS = 2.0
_RESOURCES = {"configmap": "configmaps", "secret": "secrets"}


@dataclass(frozen=True)
class NodeContext:
    """What every pod of the node shares."""

    client: NodeClient
    root: Path
    """The checkout: the image's WORKDIR."""
    node_dir: Path
    api_port: int
    track: Callable[[tuple[str, str], str, int | None], None]
    """``track((pod uid, namespace), container, pid or None)``: the node's record of its
    processes."""


class PodRunner:
    """Runs one pod's containers until the pod is deleted (or the node stops)."""

    def __init__(self, pod: Mapping[str, Any], ctx: NodeContext) -> None:
        meta = pod["metadata"]
        self.pod = pod
        self.ctx = ctx
        self.uid, self.name = str(meta["uid"]), str(meta["name"])
        self.namespace = str(meta.get("namespace", "default"))
        self.spec: Mapping[str, Any] = pod["spec"]
        self.layout = PodLayout(
            root=ctx.root,
            pod_dir=ctx.node_dir / "pods" / self.uid,
            ports=allocate_ports(pod),
            api_port=ctx.api_port,
        )
        self.log_dir = log_root(ctx.node_dir, pod)
        self.containers = [ContainerRunner(self, c) for c in self.spec.get("containers", [])]
        self.kill_at: float | None = None
        """When every process of the pod gets SIGKILL (monotonic); set by a stop."""
        self.gone = False
        """Removed from the API already: nothing is written back."""
        self._stop = asyncio.Event()
        self._pre_stop = True
        self._dirty = asyncio.Event()
        self._volumes_ready = False
        self._started = dt.datetime.now(dt.UTC)
        self.update(pod)

    @property
    def path(self) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{self.name}"

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def grace_seconds(self) -> float:
        return float(self.spec.get("terminationGracePeriodSeconds", 30))

    def changed(self) -> None:
        self._dirty.set()

    def track(self, container: str, pid: int) -> None:
        self.ctx.track((self.uid, self.namespace), container, pid)

    def untrack(self, container: str) -> None:
        self.ctx.track((self.uid, self.namespace), container, None)

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up when the pod is being stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def update(self, pod: Mapping[str, Any]) -> None:
        """A newer version of the pod from the watch: a deletion starts the stop."""
        self.pod = pod
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            grace = meta.get("deletionGracePeriodSeconds")
            self.request_stop(self.grace_seconds if grace is None else float(grace), pre_stop=True)

    def vanish(self) -> None:
        """The pod is gone from the API (force-deleted): stop its processes at once."""
        self.gone = True
        self.request_stop(FORCED_GRACE_SECONDS, pre_stop=False)

    def request_stop(self, grace: float, *, pre_stop: bool) -> None:
        at = time.monotonic() + grace
        if self.kill_at is None or at < self.kill_at:
            self.kill_at = at
        if not self._stop.is_set():
            self._pre_stop = pre_stop
            self._stop.set()

    async def plan(self, container: Mapping[str, Any]) -> ContainerPlan:
        """The container's command line now (ConfigMaps and Secrets are read at each start)."""
        objects = await self._objects()
        if not self._volumes_ready:
            prepare_volumes(self.pod, self.layout, objects)
            self._volumes_ready = True
        return plan_container(self.pod, container, self.layout, objects)

    async def _objects(self) -> dict[tuple[str, str], Mapping[str, Any] | None]:
        found: dict[tuple[str, str], Mapping[str, Any] | None] = {}
        for kind, name in sorted(referenced_objects(self.pod)):
            path = f"/api/v1/namespaces/{self.namespace}/{_RESOURCES[kind]}/{name}"
            try:
                found[(kind, name)] = await self.ctx.client.get(path)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                found[(kind, name)] = None
        return found

    async def run(self) -> None:
        """The pod's life on the node; returns once it is deleted (or vanished)."""
        reporter = asyncio.create_task(self._report())
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._annotate_ports()
            self.changed()
            if not self.stopping:
                tasks = [asyncio.create_task(c.run()) for c in self.containers]
            await self._stop.wait()
            deadline = self.kill_at or time.monotonic()
            await asyncio.gather(
                *(c.stop(deadline, pre_stop=self._pre_stop) for c in self.containers)
            )
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for container in self.containers:  # nothing of the pod outlives it
                if container.process is not None:
                    kill_group(container.process.pid, signal.SIGKILL)
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
            shutil.rmtree(self.layout.pod_dir, ignore_errors=True)
        if not self.gone:
            await self._write_status()
            await self._delete()

    async def _annotate_ports(self) -> None:
        named = {str(k): v for k, v in self.layout.ports.items() if isinstance(k, str)}
        ports = named or {str(k): v for k, v in self.layout.ports.items()}
        if not ports:
            return
        body = {"metadata": {"annotations": {PORTS_ANNOTATION: json.dumps(ports)}}}
        try:
            await self.ctx.client.patch(self.path, body)
        except ApiError as exc:
            log.warning("%s/%s: could not annotate its ports: %s", self.namespace, self.name, exc)

    async def _report(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.1)  # one write for a burst of changes
            self._dirty.clear()
            if not await self._write_status():
                await asyncio.sleep(1.0)
                self._dirty.set()

    async def _write_status(self) -> bool:
        if self.gone:
            return True
        status = pod_status(
            self.pod,
            [c.status for c in self.containers],
            start_time=self._started,
            now=dt.datetime.now(dt.UTC),
            stopped=self.stopping,
        )
        try:
            await self.ctx.client.patch(f"{self.path}/status", {"status": status})
        except ApiError as exc:
            if exc.status == 404:
                self.vanish()
                return True
            log.warning("%s/%s: status not written: %s", self.namespace, self.name, exc)
            return False
        return True

    async def _delete(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            await self.ctx.client.delete(self.path, body)
        except ApiError as exc:
            if exc.status not in (404, 409):
                log.warning("%s/%s: not deleted: %s", self.namespace, self.name, exc)
