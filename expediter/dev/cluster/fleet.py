"""The project's manifests on the dev cluster: the fleet as ``expediter up --cluster`` runs it.

:func:`render_overlay` renders ``k8s/overlays/local`` (the base, its agents' Deployments and
``keda/``'s ScaledObjects) with ``kubectl kustomize``; :func:`fleet_objects` makes them fit one
machine and one run, and changes nothing else:

- everything moves to ``namespace`` (a run of its own);
- the ConfigMap ``expediter-kafka-client`` points at the broker and carries
  ``EXPEDITER_TOPIC_PREFIX``, and each ScaledObject's trigger watches the prefixed topic and
  group, so that runs never mix;
- only the chosen agents (and the orchestrator, unless left out) are kept, and Strimzi's
  KafkaTopics are left out (``expediter topics apply`` makes the topics);
- the agents' Deployments start at 0 replicas (KEDA owns the count from there), the
  orchestrator at ``orchestrator_replicas``;
- a demo's shorter ``pollingInterval``, ``cooldownPeriod`` and lower ``maxReplicaCount``.

:func:`apply_fleet` applies them server-side and :func:`remove_fleet` takes them away again,
pods first stopped by the node. A Deployment's ReplicaSets and pods are deleted by name too,
not left to the garbage collector, so that the wait for the pods starts at once. Called by
``expediter up --cluster``, ``expediter demo --cluster``, the cluster tests and the scale-up
bench.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from expediter.dev.cluster.errors import ClusterError
from expediter.dev.cluster.installing import kubectl, require_kubectl

__all__ = [
    "KAFKA_CONFIGMAP",
    "FleetOptions",
    "apply_fleet",
    "fleet_objects",
    "remove_fleet",
    "render_overlay",
]

KAFKA_CONFIGMAP = "expediter-kafka-client"
ORCHESTRATOR = "orchestrator"
_LEFT_OUT = {"KafkaTopic"}
_PER_WORKLOAD = {"Deployment", "ScaledObject", "Service", "PodDisruptionBudget"}


@dataclass(frozen=True)
class FleetOptions:
    namespace: str
    bootstrap: str
    prefix: str = ""
    agents: Collection[str] | None = None
    """Deployment names (``soil-analyzer``) or agent file stems (``soil_analyzer``); None: all."""
    orchestrator: bool = True
    orchestrator_replicas: int = 1
    polling_interval: int | None = None
    cooldown: int | None = None
    max_replicas: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    """More settings for every pod, through the ConfigMap (``EXPEDITER_DRAIN_SECONDS``...)."""


def render_overlay(root: Path, overlay: str = "local") -> list[dict[str, Any]]:
    """``kubectl kustomize k8s/overlays/<overlay>``, as a list of objects."""
    folder = root / "k8s" / "overlays" / overlay
    if not folder.is_dir():
        raise ClusterError(f"no overlay {folder}: run from the repository root (or pass --root)")
    result = subprocess.run(
        [require_kubectl(), "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ClusterError(f"`kubectl kustomize {folder}` failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _wanted(name: str, options: FleetOptions) -> bool:
    if name == ORCHESTRATOR:
        return options.orchestrator
    if options.agents is None:
        return True
    return name in {a.replace("_", "-") for a in options.agents}


def fleet_objects(objects: list[dict[str, Any]], options: FleetOptions) -> list[dict[str, Any]]:
    """The rendered overlay, made fit for one run on the dev cluster (see the module's doc)."""
    chosen: list[dict[str, Any]] = []
    known = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    unknown = sorted({a.replace("_", "-") for a in options.agents or ()} - known)
    if unknown:
        raise ClusterError(
            f"no Deployment for {', '.join(unknown)} in the overlay; known: "
            f"{', '.join(sorted(known - {ORCHESTRATOR}))}"
        )
    for original in objects:
        kind, name = original["kind"], original["metadata"]["name"]
        if kind in _LEFT_OUT or (kind in _PER_WORKLOAD and not _wanted(name, options)):
            continue
        obj = copy.deepcopy(original)
        if kind == "Namespace":
            obj["metadata"]["name"] = options.namespace
        elif "namespace" in obj["metadata"]:
            obj["metadata"]["namespace"] = options.namespace
        for subject in obj.get("subjects") or []:
            if "namespace" in subject and subject.get("kind") == "ServiceAccount":
                subject["namespace"] = options.namespace
        if kind == "ConfigMap" and name == KAFKA_CONFIGMAP:
            obj["data"] = {
                **(obj.get("data") or {}),
                "EXPEDITER_BOOTSTRAP": options.bootstrap,
                "EXPEDITER_TOPIC_PREFIX": options.prefix,
                **options.env,
            }
        elif kind == "Deployment":
            obj["spec"]["replicas"] = options.orchestrator_replicas if name == ORCHESTRATOR else 0
        elif kind == "ScaledObject":
            _scaled_object(obj, options)
        chosen.append(obj)
    return chosen


def _scaled_object(obj: dict[str, Any], options: FleetOptions) -> None:
    spec = obj["spec"]
    if options.polling_interval is not None:
        spec["pollingInterval"] = options.polling_interval
    if options.cooldown is not None:
        spec["cooldownPeriod"] = options.cooldown
    if options.max_replicas is not None:
        spec["maxReplicaCount"] = min(int(spec.get("maxReplicaCount", 100)), options.max_replicas)
    for trigger in spec.get("triggers") or []:
        metadata = trigger.get("metadata") or {}
        for key in ("topic", "consumerGroup"):
            if key in metadata:
                metadata[key] = f"{options.prefix}{metadata[key]}"


def apply_fleet(kubeconfig: Path, objects: list[dict[str, Any]]) -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": objects}
    kubectl(
        kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=expediter-fleet",
        "-f",
        "-",
        stdin=json.dumps(listed),
    )


def _pods(kubeconfig: Path, namespace: str) -> list[str]:
    out = kubectl(kubeconfig, "get", "pods", "-n", namespace, "-o", "name")
    return [line for line in out.splitlines() if line.strip()]


def remove_fleet(kubeconfig: Path, namespace: str, *, timeout: float = 120.0) -> list[str]:
    """Delete the fleet's ScaledObjects (KEDA stops scaling), Deployments, ReplicaSets and pods;
    wait for the pods to be gone (the node stops them with their grace period). Returns the
    pods still there after ``timeout`` (none, normally)."""
    for kinds in ("scaledobjects.keda.sh", "deployments,replicasets", "pods"):
        kubectl(
            kubeconfig,
            "delete",
            kinds,
            "--all",
            "-n",
            namespace,
            "--wait=false",
            "--ignore-not-found",
        )
    deadline = time.monotonic() + timeout
    left = _pods(kubeconfig, namespace)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _pods(kubeconfig, namespace)
    return left
