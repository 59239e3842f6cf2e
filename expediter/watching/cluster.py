"""Actual replicas on a cluster: the Deployment, KEDA's HPA and the ScaledObject's status.

:func:`cluster_actual` reads the three status objects as plain dicts (camelCase, as the API
server sends them) and :func:`scale_events` picks the scale events out of Kubernetes Events
(the HPA's ``SuccessfulRescale``, KEDA's ``KEDAScaleTargetActivated`` / ``Deactivated``). Both
are pure, so they are unit-tested with dicts standing in for the API server's answers.
:class:`ClusterReader` is the thin part that fetches them with the ``kubernetes`` client; it
cannot be exercised without a cluster, so it does nothing but fetch and hand dicts over.

KEDA names its HPA ``keda-hpa-<ScaledObject name>`` unless ``status.hpaName`` says otherwise
(kedacore/keda controllers/keda/hpa.go ``getHPAName``).

Who calls it: ``expediter watch --kubeconfig/--namespace``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from expediter.supervising import ScaledAgent
from expediter.watching.snapshot import Actual

__all__ = ["SCALE_REASONS", "ClusterReader", "cluster_actual", "hpa_name", "scale_events"]

SCALE_REASONS = frozenset(
    {"SuccessfulRescale", "KEDAScaleTargetActivated", "KEDAScaleTargetDeactivated"}
)


def hpa_name(scaled_object: Mapping[str, Any] | None, name: str) -> str:
    status = (scaled_object or {}).get("status") or {}
    return str(status.get("hpaName") or f"keda-hpa-{name}")


def cluster_actual(
    deployment: Mapping[str, Any] | None,
    hpa: Mapping[str, Any] | None,
    scaled_object: Mapping[str, Any] | None,
) -> Actual:
    """What runs on the cluster for one agent; a missing object counts as absent."""
    if deployment is None:
        return Actual(None, "kubernetes", None, {"missing": "Deployment"})
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    detail: dict[str, Any] = {
        "spec_replicas": spec.get("replicas"),
        "ready_replicas": int(status.get("readyReplicas") or 0),
        "updated_replicas": int(status.get("updatedReplicas") or 0),
    }
    desired = spec.get("replicas")
    if hpa is not None:
        hpa_status = hpa.get("status") or {}
        desired = hpa_status.get("desiredReplicas", desired)
        detail["hpa_current"] = hpa_status.get("currentReplicas")
        detail["hpa_desired"] = hpa_status.get("desiredReplicas")
        detail["last_scale_time"] = hpa_status.get("lastScaleTime")
    if scaled_object is not None:
        so_status = scaled_object.get("status") or {}
        conditions = {
            str(c.get("type")): c
            for c in so_status.get("conditions") or []
            if isinstance(c, Mapping)
        }
        for kind in ("Ready", "Active", "Fallback", "Paused"):
            if kind in conditions:
                detail[kind.lower()] = conditions[kind].get("status") == "True"
        detail["last_active_time"] = so_status.get("lastActiveTime")
    replicas = int(status.get("replicas") or 0)
    return Actual(replicas, "kubernetes", None if desired is None else int(desired), detail)


def scale_events(events: Sequence[Mapping[str, Any]], agent: str) -> list[dict[str, Any]]:
    """The scale events among Kubernetes Events, oldest first, in the state file's shape
    (``from`` and ``to`` are None: Events carry them only in their message)."""
    picked: list[dict[str, Any]] = []
    for event in events:
        if event.get("reason") not in SCALE_REASONS:
            continue
        when = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
        reason = f"{event.get('reason')}: {event.get('message', '')}"
        picked.append({"time": _unix(when), "agent": agent, "capability": None, "from": None,
                       "to": None, "reason": reason})  # fmt: skip
    return sorted(picked, key=lambda e: e["time"] or 0.0)


def _unix(value: object) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


class ClusterReader:
    """Fetches the status objects of each agent through the kubernetes client (blocking)."""

    def __init__(self, namespace: str, kubeconfig: Path | None = None,
                 context: str | None = None) -> None:  # fmt: skip
        from kubernetes import client, config

        config.load_kube_config(  # type: ignore[no-untyped-call]
           config_file=str(kubeconfig) if kubeconfig else None,
                                context=context)  # fmt: skip
        self.namespace = namespace
        self._api = client.ApiClient()
        self._apps = client.AppsV1Api(self._api)
        self._autoscaling = client.AutoscalingV2Api(self._api)
        self._custom = client.CustomObjectsApi(self._api)
        self._core = client.CoreV1Api(self._api)

    def read(self, agent: ScaledAgent) -> tuple[Actual, list[dict[str, Any]]]:
        ns = self.namespace
        scaled_object = self._get(lambda: self._custom.get_namespaced_custom_object(
            "keda.sh", "v1alpha1", ns, "scaledobjects", agent.name))  # fmt: skip
        deployment = self._get(lambda: self._apps.read_namespaced_deployment(agent.name, ns))
        hpa = hpa_name(scaled_object, agent.name)
        autoscaler = self._get(
            lambda: self._autoscaling.read_namespaced_horizontal_pod_autoscaler(hpa, ns)
        )
        events: list[Mapping[str, Any]] = []
        for involved in (hpa, agent.name):
            selector = f"involvedObject.name={involved}"
            listed = self._get(
                partial(self._core.list_namespaced_event, ns, field_selector=selector)
            )
            events += (listed or {}).get("items") or []
        actual = cluster_actual(deployment, autoscaler, scaled_object)
        found = scale_events(events, agent.name)
        for event in found:
            event["capability"] = agent.capability
        return actual, found

    def _get(self, call: Callable[[], Any]) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            result = call()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        # Models become the API server's camelCase dicts; custom objects already are dicts.
        sanitized: dict[str, Any] = self._api.sanitize_for_serialization(  # type: ignore[no-untyped-call]
            result
        )
        return sanitized
