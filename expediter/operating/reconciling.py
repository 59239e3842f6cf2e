"""The reconcile loop's work, apart from kopf: apply an Agent's objects, put back what drifted,
read its status, and drain it before it goes.

:class:`Reconciler` holds the API client and the lag sampler for the whole operator. Its
methods are what the kopf handlers (:mod:`expediter.operating.handlers`) call:

- :meth:`~Reconciler.apply`: topics (on create, spec change and operator restart), then the
  TriggerAuthentication, Deployment, Service, PodDisruptionBudget and ScaledObject by
  server-side apply. Every name is fixed by the Agent, so applying twice, or after the operator
  was killed halfway, converges on one set of objects.
- :func:`drifted_fields`: which of the operator's fields an object no longer has, so the
  watch on owned objects re-applies only when something really changed.
- :meth:`~Reconciler.status`: :func:`~expediter.operating.observing.observe`, then the status.
- :meth:`~Reconciler.drain`: the finalizer's work. KEDA is told to hold the agent at zero
  (``autoscaling.keda.sh/paused-replicas: "0"``, which also removes its HPA), the Deployment is
  set to zero, and the Agent stays until no pod of it is left: each worker finishes its tasks
  in flight on SIGTERM within its grace period, commits and leaves the group.

Called by :mod:`expediter.operating.handlers` and the tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

from expediter.operating.desiring import (
    AgentRef,
    DesiredObjects,
    deploy_settings,
    desired_objects,
)
from expediter.operating.observing import observe, status_of
from expediter.operating.requesting import KubeApi
from expediter.operating.resources import AgentSpec, AgentStatus
from expediter.operating.settings import OperatorSettings
from expediter.operating.topics import agent_topics, ensure_topics
from expediter.settings import KafkaSettings
from expediter.supervising import LagSampler

__all__ = ["PAUSED_REPLICAS", "Reconciler", "drifted_fields"]

Object = dict[str, Any]
log = logging.getLogger(__name__)

PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"
_SAMPLER_RETRY_SECONDS = 30.0


def drifted_fields(wanted: Any, actual: Any, path: str = "") -> list[str]:
    """Paths where ``actual`` lacks what ``wanted`` says (extra fields in ``actual``, such as
    server defaults and status, are not drift). Lists of named maps compare by name."""
    if isinstance(wanted, dict):
        if not isinstance(actual, dict):
            return [path or "."]
        found: list[str] = []
        for key, value in wanted.items():
            found += drifted_fields(value, actual.get(key), f"{path}.{key}")
        return found
    if isinstance(wanted, list):
        if not isinstance(actual, list):
            return [path]
        if all(isinstance(i, dict) and "name" in i for i in wanted):
            by_name = {i.get("name"): i for i in actual if isinstance(i, dict)}
            found = []
            for item in wanted:
                found += drifted_fields(item, by_name.get(item["name"]), f"{path}[{item['name']}]")
            return found
        if len(wanted) != len(actual):
            return [path]
        found = []
        for n, (w, a) in enumerate(zip(wanted, actual, strict=True)):
            found += drifted_fields(w, a, f"{path}[{n}]")
        return found
    return [] if wanted == actual else [path]


@dataclass
class Outcome:
    """What one apply made sure of."""

    objects: DesiredObjects
    topics: list[str] | None


class Reconciler:
    """The operator's work on Agents; an async context manager (API client, lag sampler)."""

    def __init__(self, settings: OperatorSettings, kafka: KafkaSettings) -> None:
        self.settings = settings
        self.kafka = kafka
        self.api = KubeApi(settings.kubeconfig)
        self._stack = AsyncExitStack()
        self._sampler: LagSampler | None = None
        self._sampler_stack = AsyncExitStack()
        self._sampler_failed_at = 0.0
        self._sampler_lock = asyncio.Lock()
        self._closing = False

    async def __aenter__(self) -> Reconciler:
        await self._stack.enter_async_context(self.api)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_kafka()
        await self._stack.aclose()

    async def close_kafka(self) -> None:
        """Close the Kafka clients for good; called as the operator stops, before kopf waits
        for the event loop's other tasks (the clients' own would hold it 5 s)."""
        async with self._sampler_lock:
            self._closing = True
            self._sampler = None
            await self._sampler_stack.aclose()

    async def _lag_sampler(self) -> LagSampler | None:
        """The shared sampler, connected on first use; None while Kafka cannot be reached
        (tried again after a while, so a broker that comes up later is found)."""
        async with self._sampler_lock:
            if self._sampler is not None or self._closing:
                return self._sampler
            if time.monotonic() - self._sampler_failed_at < _SAMPLER_RETRY_SECONDS:
                return None
            sampler = LagSampler(self.kafka)
            try:
                self._sampler = await self._sampler_stack.enter_async_context(sampler)
            except Exception as exc:  # aiokafka's errors; the status says lag is unknown
                self._sampler_failed_at = time.monotonic()
                log.warning("cannot reach Kafka at %s for lag: %r", self.kafka.bootstrap, exc)
                return None
            return self._sampler

    def desired(self, ref: AgentRef, spec: AgentSpec) -> DesiredObjects:
        return desired_objects(ref, spec, self.settings)

    async def apply(self, ref: AgentRef, spec: AgentSpec, *, topics: bool) -> Outcome:
        """Make sure of the topics (when ``topics``) and apply every object of the Agent."""
        made: list[str] | None = None
        if topics:
            catalog = agent_topics(self.settings.catalog, spec.capability, spec.partitions)
            rendering = deploy_settings(ref.namespace, spec, self.settings)
            made = [t.name for t in await ensure_topics(catalog, self.api, self.kafka, rendering)]
        objects = self.desired(ref, spec)
        for obj in objects.all:
            await self.api.apply(obj)
        return Outcome(objects=objects, topics=made)

    async def status(
        self,
        ref: AgentRef,
        previous: AgentStatus,
        *,
        generation: int | None,
        reconciled: bool,
        message: str,
        terminating: bool = False,
        topics: list[str] | None = None,
    ) -> AgentStatus:
        seen = await observe(self.api, await self._lag_sampler(), ref.namespace, ref.name)
        return status_of(
            seen,
            previous,
            generation=generation,
            reconciled=reconciled,
            reconcile_message=message,
            terminating=terminating,
            topics=topics,
        )

    async def drain(self, namespace: str, name: str) -> int:
        """Hold the Agent at zero and return how many of its pods are still there."""
        await self.api.merge_patch(
            "ScaledObject",
            namespace,
            name,
            {"metadata": {"annotations": {PAUSED_REPLICAS: "0"}}},
        )
        deployment = await self.api.get("Deployment", namespace, name)
        if deployment is None:
            return 0
        if deployment.get("spec", {}).get("replicas") != 0:
            # KEDA scales to the paused count too; this covers a KEDA that is not running.
            await self.api.merge_patch("Deployment", namespace, name, {"spec": {"replicas": 0}})
        selector = ",".join(
            f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items()
        )
        pods = await self.api.list("Pod", namespace, selector)
        return len(pods)
