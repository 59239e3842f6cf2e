"""An Agent's status, read from what is really there: the Deployment, the ScaledObject, KEDA's
metric and the consumer group's lag.

- desired and ready replicas: the Deployment's ``spec.replicas`` (set by KEDA and the HPA) and
  ``status.readyReplicas``;
- KEDA's metric: what its metrics adapter serves the HPA, read through the external metrics API
  as the HPA reads it (the lag capped at partitions x lagThreshold);
- lag: the group's committed offsets against the task topic's end offsets, counted with the
  ScaledObject's own trigger settings by :class:`~expediter.scaling.LagMeter`, the project's
  reproduction of KEDA's Kafka scaler;
- the phase and conditions follow from those (see :func:`phase_of`).

A piece that cannot be read (Kafka down, KEDA not serving yet) leaves its field out and says
why in a condition; it never fails the status as a whole.

Called by :mod:`expediter.operating.reconciling`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from expediter.errors import ExpediterError
from expediter.operating.requesting import KubeApi, KubeApiError
from expediter.operating.resources import AgentStatus, Condition, Phase
from expediter.scaling import LagMeter, parse_trigger
from expediter.supervising import LagSampler

__all__ = ["Observation", "condition", "observe", "phase_of", "status_of"]

Object = dict[str, Any]
log = logging.getLogger(__name__)


@dataclass
class Observation:
    """What one look at an Agent's objects found."""

    desired: int | None = None
    ready: int | None = None
    lag: int | None = None
    keda_metric: str | None = None
    scaler_ready: bool | None = None
    scaler_message: str = ""
    problems: list[str] = field(default_factory=list)
    """Why a piece is missing, for the conditions."""


def _scaler_ready(scaled: Object) -> tuple[bool | None, str]:
    for item in scaled.get("status", {}).get("conditions", []):
        if item.get("type") == "Ready" and item.get("status") in ("True", "False"):
            return item["status"] == "True", str(item.get("message", ""))
    return None, "KEDA has not taken the ScaledObject yet"


async def _keda_metric(api: KubeApi, namespace: str, scaled: Object) -> str | None:
    names = scaled.get("status", {}).get("externalMetricNames") or []
    if not names:
        return None
    selector = quote(f"scaledobject.keda.sh/name={scaled['metadata']['name']}", safe="")
    reply = await api.request(
        "GET",
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{names[0]}"
        f"?labelSelector={selector}",
    )
    items = (reply or {}).get("items") or []
    return str(items[0]["value"]) if items else None


async def _lag(sampler: LagSampler, scaled: Object) -> int:
    metadata = scaled["spec"]["triggers"][0]["metadata"]
    trigger = parse_trigger(metadata, where="spec.triggers[0].metadata")
    sample = await sampler.sample(str(metadata["topic"]), str(metadata["consumerGroup"]))
    # The lag KEDA sums before it caps it for the metric (which the metric field shows).
    return LagMeter(trigger).read(sample.latest, sample.committed).lag


async def observe(
    api: KubeApi, sampler: LagSampler | None, namespace: str, name: str
) -> Observation:
    """Read the Agent's Deployment, ScaledObject, KEDA's metric and the lag."""
    seen = Observation()
    deployment = await api.get("Deployment", namespace, name)
    if deployment is None:
        seen.problems.append("the Deployment does not exist yet")
    else:
        seen.desired = int(deployment.get("spec", {}).get("replicas") or 0)
        seen.ready = int(deployment.get("status", {}).get("readyReplicas") or 0)
    scaled = await api.get("ScaledObject", namespace, name)
    if scaled is None:
        seen.problems.append("the ScaledObject does not exist yet")
        return seen
    seen.scaler_ready, seen.scaler_message = _scaler_ready(scaled)
    try:
        seen.keda_metric = await _keda_metric(api, namespace, scaled)
    except KubeApiError as exc:
        seen.problems.append(f"KEDA's metric could not be read: {exc}")
    if sampler is None:
        seen.problems.append("the lag could not be read: no connection to Kafka")
    else:
        try:
            seen.lag = await _lag(sampler, scaled)
        except (ExpediterError, OSError) as exc:
            seen.problems.append(f"the lag could not be read: {exc}")
        except Exception as exc:  # aiokafka's errors: a status must not fail on Kafka
            log.debug("lag of %s/%s", namespace, name, exc_info=True)
            seen.problems.append(f"the lag could not be read: {exc!r}")
    return seen


def phase_of(seen: Observation, *, failed: bool, terminating: bool) -> Phase:
    """Terminating while draining; Degraded after a failed reconcile or a scaler KEDA refused;
    Pending before the objects exist; then Idle (0), Scaling (ready != desired), Running."""
    if terminating:
        return "Terminating"
    if failed or seen.scaler_ready is False:
        return "Degraded"
    if seen.desired is None:
        return "Pending"
    if seen.desired == 0:
        return "Idle"
    return "Running" if seen.ready == seen.desired else "Scaling"


def condition(
    kind: str,
    ok: bool | None,
    reason: str,
    message: str,
    generation: int | None,
    before: Sequence[Condition],
    now: datetime,
) -> Condition:
    """A condition whose transition time moves only when its status changes."""
    status = "Unknown" if ok is None else ("True" if ok else "False")
    previous = next((c for c in before if c.type == kind), None)
    moved = previous is None or previous.status != status
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message[:2000],
        last_transition_time=now if moved or previous is None else previous.last_transition_time,
        observed_generation=generation,
    )


def status_of(
    seen: Observation,
    previous: AgentStatus,
    *,
    generation: int | None,
    reconciled: bool,
    reconcile_message: str,
    terminating: bool = False,
    topics: Sequence[str] | None = None,
) -> AgentStatus:
    """The status to write, from an observation and the status before it."""
    now = datetime.now(UTC).replace(microsecond=0)
    before = previous.conditions
    phase = phase_of(seen, failed=not reconciled, terminating=terminating)
    conditions = [
        condition(
            "Reconciled",
            reconciled,
            "Applied" if reconciled else "ReconcileFailed",
            reconcile_message,
            generation,
            before,
            now,
        ),
        condition(
            "ScalerReady",
            seen.scaler_ready,
            "KedaReady" if seen.scaler_ready else "KedaNotReady",
            seen.scaler_message,
            generation,
            before,
            now,
        ),
        condition(
            "Observed",
            not seen.problems,
            "AllRead" if not seen.problems else "PartlyRead",
            "; ".join(seen.problems),
            generation,
            before,
            now,
        ),
    ]
    last_scale = previous.last_scale_time
    if seen.desired is not None and seen.desired != previous.desired_replicas:
        last_scale = now if previous.desired_replicas is not None else last_scale
    return AgentStatus(
        phase=phase,
        conditions=conditions,
        observed_generation=generation if reconciled else previous.observed_generation,
        desired_replicas=seen.desired,
        ready_replicas=seen.ready,
        ready=None if seen.desired is None else f"{seen.ready or 0}/{seen.desired}",
        lag=seen.lag,
        keda_metric=seen.keda_metric,
        last_scale_time=last_scale,
        topics=list(topics) if topics is not None else previous.topics,
    )
