"""``expediter up --cluster``: the fleet as pods on the dev cluster, scaled by the real KEDA.

:class:`ClusterFleet` is what ``up --cluster`` and ``demo --cluster`` share: it finds the dev
cluster (``expediter dev cluster``) or starts one with its local node, applies the project's
manifests for the chosen agents (``k8s/overlays/local`` through
:mod:`expediter.dev.cluster.fleet`: a namespace of its own, the ConfigMap aimed at the broker
and the topic prefix, a demo's polling interval, cooldown and max replicas), and at the end
removes them (each pod stopped with its grace period) and stops the cluster if it started it.
KEDA decides the replicas, the HPA applies them, the scheduler places the pods and the node runs
them as ``expediter worker`` processes.

:func:`up_on_cluster` prints each Deployment's replica changes until Ctrl-C or ``--duration``;
``expediter watch --kubeconfig ... --namespace ...`` shows the whole picture meanwhile.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from expediter.cli.output import console, err_console
from expediter.dev.cluster import ClusterState, LocalCluster, kubectl, pod_processes
from expediter.dev.cluster.fleet import FleetOptions, apply_fleet, fleet_objects, remove_fleet
from expediter.dev.cluster.fleet import render_overlay as render
from expediter.settings import DevSettings
from expediter.supervising import ScaledAgent

__all__ = ["ClusterFleet", "deployment_replicas", "up_on_cluster"]


@dataclass
class ClusterFleet:
    """The fleet's manifests on the dev cluster, from :meth:`open` to :meth:`close`."""

    namespace: str
    bootstrap: str
    prefix: str
    agents: list[ScaledAgent]
    root: Path
    orchestrator: bool = True
    polling_interval: int | None = None
    cooldown: int | None = None
    max_replicas: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    local: LocalCluster | None = None
    state: ClusterState | None = None
    started_cluster: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        assert self.state is not None, "open() first"
        return Path(self.state.kubeconfig)

    @property
    def node_dir(self) -> Path:
        assert self.local is not None, "open() first"
        return self.local.node_dir

    def open(self) -> None:
        """Find or start the dev cluster with its node, then apply the fleet (blocking)."""
        hpa_sync = float(min(self.polling_interval or 15, 15))
        self.local = LocalCluster(DevSettings().dir / "cluster", hpa_sync_period=hpa_sync,
                                  node=True, root=self.root)  # fmt: skip
        self.started_cluster = self.local.status() is None
        self.state = self.local.start()
        if self.state.hpa_sync_period > max(hpa_sync, 5.0):
            self.notes.append(
                f"the running dev cluster's HPA syncs every {self.state.hpa_sync_period:g}s: "
                "replicas follow KEDA that much later (`expediter dev cluster stop`, then "
                f"`start --hpa-sync-period {hpa_sync:g}`)"
            )
        options = FleetOptions(
            namespace=self.namespace, bootstrap=self.bootstrap, prefix=self.prefix,
            agents=[a.name for a in self.agents], orchestrator=self.orchestrator,
            polling_interval=self.polling_interval, cooldown=self.cooldown,
            max_replicas=self.max_replicas, env=self.env,
        )  # fmt: skip
        apply_fleet(self.kubeconfig, fleet_objects(render(self.root), options))

    def close(self) -> int:
        """Remove the fleet (pods stopped with their grace period), stop the cluster if it was
        started here; the count of the fleet's processes still alive after that."""
        if self.local is None or self.state is None:
            return 0
        left = len(remove_fleet(self.kubeconfig, self.namespace))
        if left:
            self.notes.append(f"{left} pods of {self.namespace} were still there at the end")
        processes = len(pod_processes(self.node_dir, self.namespace))
        if self.started_cluster:
            self.local.stop()
            processes = len(pod_processes(self.node_dir))
        return processes


def deployment_replicas(kubeconfig: Path, namespace: str) -> dict[str, dict[str, int]]:
    """{Deployment: {"spec": spec.replicas, "pods": status.replicas, "ready": readyReplicas}}."""
    listed = json.loads(kubectl(kubeconfig, "get", "deployments", "-n", namespace, "-o", "json"))
    found: dict[str, dict[str, int]] = {}
    for item in listed.get("items", []):
        spec, status = item.get("spec") or {}, item.get("status") or {}
        found[item["metadata"]["name"]] = {
            "spec": int(spec.get("replicas") or 0),
            "pods": int(status.get("replicas") or 0),
            "ready": int(status.get("readyReplicas") or 0),
        }
    return found


def up_on_cluster(fleet: ClusterFleet, *, duration: float | None, report: Any) -> None:
    """Apply the fleet, report each Deployment's replica changes until Ctrl-C, SIGTERM or
    ``duration``, then take it all down again."""
    stopping: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    began = time.monotonic()
    try:
        fleet.open()
        report({"event": "applied", "namespace": fleet.namespace,
                "kubeconfig": str(fleet.kubeconfig), "agents": [a.name for a in fleet.agents],
                "started_cluster": fleet.started_cluster, "notes": fleet.notes})  # fmt: skip
        seen: dict[str, dict[str, int]] = {}
        while not stopping and (duration is None or time.monotonic() - began < duration):
            now = deployment_replicas(fleet.kubeconfig, fleet.namespace)
            for name, replicas in sorted(now.items()):
                if seen.get(name) != replicas:
                    report({"event": "replicas", "deployment": name, **replicas})
            seen = now
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        report({"event": "stopping", "namespace": fleet.namespace})
        left = fleet.close()
        report({"event": "stopped", "processes_left": left, "notes": fleet.notes})


def print_event(event: dict[str, Any]) -> None:
    """``up --cluster``'s events for people."""
    kind = event["event"]
    if kind == "applied":
        console.print(
            f"applied {', '.join(event['agents'])} to namespace {event['namespace']}"
            f"{' (dev cluster started)' if event['started_cluster'] else ''}; watch with:\n"
            f"  expediter watch --kubeconfig {event['kubeconfig']} --namespace "
            f"{event['namespace']}\nCtrl-C stops", highlight=False,
        )  # fmt: skip
    elif kind == "replicas":
        console.print(
            f"{time.strftime('%H:%M:%S')} [bold]{event['deployment']}[/] replicas "
            f"{event['spec']} (pods {event['pods']}, ready {event['ready']})",
            highlight=False,
        )
    elif kind == "stopping":
        console.print(f"removing the fleet from {event['namespace']} ...", highlight=False)
    elif kind == "stopped":
        console.print(f"stopped; processes left: {event['processes_left']}", highlight=False)
    for note in event.get("notes") or []:
        err_console.print(f"note: {note}", highlight=False)
    if event.get("notes"):
        event["notes"].clear()  # each note once
