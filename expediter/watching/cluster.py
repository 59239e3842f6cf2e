"""Actual replicas on a cluster: the Deployment, KEDA's HPA, the ScaledObject and KEDA's metric.

:func:`cluster_actual` reads the three status objects as plain dicts (camelCase, as the API
server sends them), with KEDA's metric as the external metrics API answers it
(:func:`keda_metric`), and :func:`scale_events` picks the scale events out of Kubernetes Events
(the HPA's ``SuccessfulRescale``, KEDA's ``KEDAScaleTargetActivated`` / ``Deactivated``). They
are pure, so they are unit-tested with dicts standing in for the API server's answers.
:class:`ClusterReader` is the thin part that fetches them with the ``kubernetes`` client
(tests/cluster/test_watch_cluster.py runs it against the local cluster).

What the cluster says: *desired* is the Deployment's ``spec.replicas``, the count KEDA (0 <-> 1)
and its HPA (1 <-> N) set; the HPA's own ``desiredReplicas`` is in the detail, as it lags KEDA's
0 <-> 1. *Actual* is ``status.replicas`` (pods that exist), with ``readyReplicas`` beside it.
*Metric* is what KEDA serves the HPA, read where the HPA reads it:
``/apis/external.metrics.k8s.io/v1beta1/namespaces/<ns>/<metric>`` with the ScaledObject's
label selector, the metric named in the HPA's spec (``s0-kafka-<topic>``).

KEDA names its HPA ``keda-hpa-<ScaledObject name>`` unless ``status.hpaName`` says otherwise
(kedacore/keda controllers/keda/hpa.go ``getHPAName``).

Who calls it: ``expediter watch --kubeconfig/--namespace``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from expediter.supervising import ScaledAgent
from expediter.watching.snapshot import Actual

__all__ = [
    "SCALE_REASONS",
    "ClusterReader",
    "KedaMetric",
    "cluster_actual",
    "hpa_name",
    "keda_metric",
    "metric_name",
    "parse_quantity",
    "scale_events",
]

SCALE_REASONS = frozenset(
    {"SuccessfulRescale", "KEDAScaleTargetActivated", "KEDAScaleTargetDeactivated"}
)


KedaMetric = tuple[int | float | None, str | None]
"""(KEDA's metric, or None with why it could not be read)."""
_QUANTITY = re.compile(r"([+-]?[0-9.]+)([a-zA-Z]*)")
_SUFFIXES = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
             "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
             "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18")}  # fmt: skip


def hpa_name(scaled_object: Mapping[str, Any] | None, name: str) -> str:
    status = (scaled_object or {}).get("status") or {}
    return str(status.get("hpaName") or f"keda-hpa-{name}")


def metric_name(hpa: Mapping[str, Any] | None) -> str | None:
    """The first external metric the HPA reads (KEDA's ``s0-kafka-<topic>``), if any."""
    for metric in ((hpa or {}).get("spec") or {}).get("metrics") or []:
        name = ((metric.get("external") or {}).get("metric") or {}).get("name")
        if name:
            return str(name)
    return None


def parse_quantity(text: str) -> int | float:
    """A Kubernetes quantity in decimal SI form (``40``, ``40500m``, ``1k``) as a number: an int
    when it is whole."""
    match = _QUANTITY.fullmatch(text.strip())
    if match is None or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a decimal quantity: {text!r}")
    value = Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    return int(value) if value == value.to_integral_value() else float(value)


def keda_metric(reply: Mapping[str, Any]) -> KedaMetric:
    """The value of an ExternalMetricValueList as the external metrics API returns it."""
    items = reply.get("items") or []
    if not items:
        return None, "KEDA returned no metric value"
    try:
        return parse_quantity(str(items[0].get("value"))), None
    except ValueError as exc:
        return None, str(exc)


def cluster_actual(
    deployment: Mapping[str, Any] | None,
    hpa: Mapping[str, Any] | None,
    scaled_object: Mapping[str, Any] | None,
    metric: KedaMetric = (None, "not read"),
) -> Actual:
    """What runs on the cluster for one agent; a missing object counts as absent."""
    value, problem = metric
    if deployment is None:
        return Actual(None, "kubernetes", None, {"missing": "Deployment"}, value)
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    detail: dict[str, Any] = {
        "spec_replicas": spec.get("replicas"),
        "ready_replicas": int(status.get("readyReplicas") or 0),
        "updated_replicas": int(status.get("updatedReplicas") or 0),
        "metric_error": problem,
    }
    # KEDA sets 0 <-> 1 on the Deployment itself: the HPA's desiredReplicas lags it.
    desired = spec.get("replicas")
    if hpa is not None:
        hpa_status = hpa.get("status") or {}
        detail["hpa_desired"] = hpa_status.get("desiredReplicas")
        detail["hpa_current"] = hpa_status.get("currentReplicas")
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
    return Actual(replicas, "kubernetes", None if desired is None else int(desired), detail,
                  value)  # fmt: skip


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
        actual = cluster_actual(deployment, autoscaler, scaled_object,
                                self._metric(metric_name(autoscaler), agent.name))  # fmt: skip
        found = scale_events(events, agent.name)
        for event in found:
            event["capability"] = agent.capability
        return actual, found

    def _metric(self, metric: str | None, name: str) -> KedaMetric:
        """KEDA's metric through the aggregated API, as the HPA reads it."""
        if metric is None:
            return None, "no HPA metric (KEDA has made no HPA yet)"
        configuration = self._api.configuration
        selector = quote(f"scaledobject.keda.sh/name={name}", safe="")
        url = (f"{configuration.host}/apis/external.metrics.k8s.io/v1beta1/namespaces/"
               f"{self.namespace}/{metric}?labelSelector={selector}")  # fmt: skip
        headers = {"Accept": "application/json"}
        token = configuration.get_api_key_with_prefix("authorization")
        if token:
            headers["Authorization"] = token
        from kubernetes.client.exceptions import ApiException

        try:
            # The REST client's request() has the same keywords from kubernetes 29 to 37.
            response = self._api.rest_client.request(  # type: ignore[no-untyped-call]
                "GET", url, headers=headers, _request_timeout=10
            )
        except ApiException as exc:  # older clients raise on a non-2xx answer
            return None, f"HTTP {exc.status} from the external metrics API"
        if not 200 <= int(response.status) < 300:
            return None, f"HTTP {response.status} from the external metrics API"
        data = getattr(response, "data", None)
        if data is None:
            data = response.read()
        return keda_metric(json.loads(data))

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
