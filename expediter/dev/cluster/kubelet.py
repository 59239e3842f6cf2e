"""The local node's process: a kubelet's part for the dev cluster, in Python, on one event loop.

It registers each :class:`~expediter.dev.cluster.nodes.NodeSpec` as a Node (capacity, labels,
taints; Ready), keeps it Ready with heartbeats (its Lease in kube-node-lease every 10 s, its
status every 20 s), and watches the pods bound to its nodes (``spec.nodeName``): each gets a
:class:`~expediter.dev.cluster.podrunning.PodRunner`, which runs its containers as local
processes and writes its status back. The PID of every container process goes to
``<node dir>/processes.json`` (with its start time), so that
:mod:`~expediter.dev.cluster.noding` can make sure none outlives a stop, even one of a node that
was killed.

SIGTERM (``expediter dev cluster stop``) is a node leaving the cluster: every pod's processes get
SIGTERM and at most ``--stop-grace`` seconds (no preStop hook), then SIGKILL; the pods are
deleted, so their ReplicaSets make new ones that wait for a node; then its Lease and Node go.

Run by :mod:`~expediter.dev.cluster.noding` as
``python -m expediter.dev.cluster.kubelet --server URL --pki DIR --node-dir DIR --root DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from expediter.dev.cluster.nodeclient import ApiError, NodeClient
from expediter.dev.cluster.nodes import (
    LEASE_NAMESPACE,
    NodeSpec,
    cpu_node,
    gpu_node,
    lease_object,
    node_object,
    node_status,
)
from expediter.dev.cluster.podrunning import NodeContext, PodRunner
from expediter.dev.cluster.processes import PROCESSES_FILE, process_start

__all__ = ["Kubelet", "main"]

log = logging.getLogger("expediter.node")

LEASE_RENEW_SECONDS = 10.0
STATUS_SECONDS = 20.0
SELECTOR = {"fieldSelector": "spec.nodeName!="}
"""Every pod bound to some node: this process serves every node of the local cluster."""


class Kubelet:
    """Serves the pods bound to ``specs``' nodes until :meth:`run`'s ``stop`` is set."""

    def __init__(
        self,
        client: NodeClient,
        specs: Sequence[NodeSpec],
        *,
        node_dir: Path,
        root: Path,
        api_port: int,
        stop_grace: float,
    ) -> None:
        self.client = client
        self.specs = list(specs)
        self.names = {s.name for s in specs}
        self.node_dir = node_dir
        self.stop_grace = stop_grace
        self.runners: dict[str, PodRunner] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._finished: set[str] = set()
        self._processes: dict[str, dict[str, Any]] = {}
        self._uids: dict[str, str] = {}
        self.ctx = NodeContext(
            client=client, root=root, node_dir=node_dir, api_port=api_port, track=self._track
        )
        self._since = dt.datetime.now(dt.UTC)

    async def run(self, stop: asyncio.Event) -> None:
        await self.register()
        heartbeat = asyncio.create_task(self._heartbeat())
        watching = asyncio.create_task(self._watch())
        try:
            await stop.wait()
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
            await self.shutdown()
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self.deregister()

    async def register(self) -> None:
        for spec in self.specs:
            node = node_object(spec)
            with contextlib.suppress(ApiError):  # it exists already: the patch updates it
                await self.client.create("/api/v1/nodes", node)
            # Also drops node.kubernetes.io/not-ready, which admission puts on a new Node: the
            # node lifecycle controller, which would lift it once Ready, does not run here.
            patch = {
                "metadata": {"labels": node["metadata"]["labels"]},
                "spec": {**node["spec"], "unschedulable": None},
            }
            created = await self.client.patch(f"/api/v1/nodes/{spec.name}", patch)
            self._uids[spec.name] = str(created["metadata"].get("uid") or "")
            await self._report(spec)
            await self._renew(spec)
            log.info("node %s registered: %s", spec.name, spec.capacity)

    async def _report(self, spec: NodeSpec) -> None:
        status = node_status(spec, now=dt.datetime.now(dt.UTC), since=self._since)
        await self.client.patch(f"/api/v1/nodes/{spec.name}/status", {"status": status})

    async def _renew(self, spec: NodeSpec) -> None:
        """Renew the node's Lease, or make it: it is owned by this Node (by its UID), so the
        garbage collector removes one left by a Node of the same name that was deleted."""
        lease = lease_object(
            spec.name, now=dt.datetime.now(dt.UTC), node_uid=self._uids.get(spec.name)
        )
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        try:
            await self.client.patch(
                f"{leases}/{spec.name}", {"metadata": lease["metadata"], "spec": lease["spec"]}
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
            await self.client.create(leases, lease)

    async def _heartbeat(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(LEASE_RENEW_SECONDS)
            ticks += 1
            for spec in self.specs:
                try:
                    await self._renew(spec)
                    if ticks % round(STATUS_SECONDS / LEASE_RENEW_SECONDS) == 0:
                        await self._report(spec)
                except ApiError as exc:
                    log.warning("heartbeat of %s failed: %s", spec.name, exc)

    async def _watch(self) -> None:
        """List, then watch from the list's version; list again after any error."""
        while True:
            try:
                listed = await self.client.get("/api/v1/pods", **SELECTOR)
                seen = set()
                for pod in listed.get("items") or []:
                    pod.setdefault("kind", "Pod")
                    seen.add(pod["metadata"]["uid"])
                    self.reconcile(pod)
                for uid, runner in list(self.runners.items()):
                    if uid not in seen:
                        runner.vanish()
                version = str(listed["metadata"]["resourceVersion"])
                while True:
                    async for event in self.client.watch("/api/v1/pods", version, params=SELECTOR):
                        obj = event["object"]
                        version = str(obj["metadata"].get("resourceVersion") or version)
                        if event["type"] == "DELETED":
                            gone = self.runners.get(obj["metadata"]["uid"])
                            if gone is not None:
                                gone.vanish()
                        elif event["type"] in ("ADDED", "MODIFIED"):
                            self.reconcile(obj)
            except ApiError as exc:
                log.info("pod watch ended (%s); listing again", exc)
                await asyncio.sleep(1.0)

    def reconcile(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        uid = str(meta["uid"])
        if pod["spec"].get("nodeName") not in self.names or uid in self._finished:
            return
        runner = self.runners.get(uid)
        if runner is not None:
            runner.update(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and not meta.get("deletionTimestamp"):
            return  # ran to its end (before a restart of the node): not run again
        runner = PodRunner(pod, self.ctx)
        self.runners[uid] = runner
        log.info("pod %s/%s bound here: starting it", runner.namespace, runner.name)
        task = asyncio.create_task(runner.run())
        self._tasks[uid] = task
        task.add_done_callback(lambda _: self._done(uid))

    def _done(self, uid: str) -> None:
        runner = self.runners.pop(uid, None)
        self._tasks.pop(uid, None)
        self._finished.add(uid)
        if runner is not None:
            log.info("pod %s/%s stopped and removed", runner.namespace, runner.name)

    def _track(self, pod: tuple[str, str], container: str, pid: int | None) -> None:
        uid, namespace = pod
        record = self._processes.setdefault(uid, {"namespace": namespace, "containers": {}})
        containers = record["containers"]
        if pid is None:
            containers.pop(container, None)
        else:
            containers[container] = {"pid": pid, "start": process_start(pid) or 0}
        if not containers:
            self._processes.pop(uid, None)
        document = {"pid": os.getpid(), "pods": self._processes}
        target = self.node_dir / PROCESSES_FILE
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(document))
        temporary.replace(target)

    async def shutdown(self) -> None:
        """Every pod's processes SIGTERM, at most ``stop_grace`` s, then SIGKILL; pods deleted.

        The Nodes are cordoned first, so that the pods their ReplicaSets make again wait for a
        node instead of being bound to this one as it leaves."""
        for spec in self.specs:
            with contextlib.suppress(ApiError):
                await self.client.patch(
                    f"/api/v1/nodes/{spec.name}", {"spec": {"unschedulable": True}}
                )
        for runner in self.runners.values():
            runner.request_stop(min(runner.grace_seconds, self.stop_grace), pre_stop=False)
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=self.stop_grace + 10)

    async def deregister(self) -> None:
        for spec in self.specs:
            lease = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{spec.name}"
            for path in (lease, f"/api/v1/nodes/{spec.name}"):
                with contextlib.suppress(ApiError):
                    await self.client.delete(path)


async def _main(args: argparse.Namespace) -> None:
    specs = [cpu_node()] + ([gpu_node(gpus=args.gpus)] if args.gpus else [])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    args.node_dir.mkdir(parents=True, exist_ok=True)
    api_port = urlsplit(args.server).port or 443
    async with NodeClient(args.server, args.pki) as client:
        kubelet = Kubelet(
            client,
            specs,
            node_dir=args.node_dir,
            root=args.root,
            api_port=api_port,
            stop_grace=args.stop_grace,
        )
        await kubelet.run(stop)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The dev cluster's local node.")
    parser.add_argument("--server", required=True)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--node-dir", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--gpus", type=int, default=0, help="Add a GPU node with this many.")
    parser.add_argument("--stop-grace", type=float, default=15.0)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
