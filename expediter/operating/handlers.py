"""The kopf handlers: what wakes the operator up, and which :class:`Reconciler` method runs.

- an Agent created, its spec changed, or seen again at the operator's start (resume):
  :meth:`Reconciler.apply` with its topics, then the status. kopf records each handler's
  progress in the Agent's annotations, so an operator killed mid-reconcile picks the same
  handler up again at its next start, and the fixed object names make the retry idempotent;
- every ``resync_seconds`` (a timer per Agent): apply again (drift in any field the operator
  owns is put back) and refresh the status;
- a Deployment or ScaledObject the operator made changes or is deleted (a watch on its
  ``managed-by`` label): when the operator's fields differ, apply again at once;
- an Agent deleted: the finalizer (``expediter.io/drain``) runs :meth:`Reconciler.drain` until
  no worker pod is left; then kopf releases the Agent and Kubernetes' garbage collector
  removes what it owns.

The handlers are registered on a registry of their own (:func:`registry_for`), so the
intervals come from :class:`OperatorSettings` and tests can run several operators apart.

Called by :mod:`expediter.operating.running`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Coroutine, Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from expediter.errors import ExpediterError
from expediter.operating.desiring import MANAGED_BY, AgentRef
from expediter.operating.reconciling import Reconciler, drifted_fields
from expediter.operating.requesting import KubeApiError
from expediter.operating.resources import GROUP, KIND, PLURAL, VERSION, AgentSpec, AgentStatus

__all__ = ["ANNOTATION_PREFIX", "FINALIZER", "kopf_settings", "registry_for"]

FINALIZER = "expediter.io/drain"
"""Holds a deleted Agent until its workers have drained."""
ANNOTATION_PREFIX = "operator.expediter.io"
"""Where kopf keeps its progress and last-handled spec on each Agent."""
RETRY_SECONDS = 10.0


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    # Kubernetes Events for failures only: a success per timer tick would flood them.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 4
    return settings


def _spec(spec: Mapping[str, Any]) -> AgentSpec:
    try:
        return AgentSpec.model_validate(copy.deepcopy(dict(spec)))
    except ValidationError as exc:
        # The CRD's schema refuses these before they are stored; an Agent stored under an
        # older CRD can still get here.
        raise kopf.PermanentError(f"invalid spec: {exc}") from exc


def _previous(status: Mapping[str, Any]) -> AgentStatus:
    try:
        return AgentStatus.model_validate(copy.deepcopy(dict(status)))
    except ValidationError:
        return AgentStatus()


async def _unless_stopped(work: Coroutine[Any, Any, None], stopped: Any) -> None:
    """Run ``work`` unless kopf stops the timer first: then cancel it. kopf does not cancel a
    running timer as the operator exits; it waits 5 s for it and only then cancels it."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _owner(body: Mapping[str, Any]) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            return str(ref["name"])
    return None


def registry_for(reconciler: Reconciler) -> kopf.OperatorRegistry:
    """Every handler of the operator, bound to ``reconciler``."""
    registry = kopf.OperatorRegistry()
    settings = reconciler.settings
    agents = {"group": GROUP, "version": VERSION, "plural": PLURAL, "registry": registry}

    @kopf.index(id="agent_index", **agents)  # type: ignore[arg-type]
    def agent_index(
        namespace: str,
        name: str,
        uid: str,
        spec: Mapping[str, Any],
        status: Mapping[str, Any],
        meta: Any,
        **_: Any,
    ) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (namespace, name): {
                "uid": uid,
                "spec": copy.deepcopy(dict(spec)),
                "status": copy.deepcopy(dict(status)),
                "deleting": bool(meta.get("deletionTimestamp")),
            }
        }

    async def write_status(
        ref: AgentRef,
        patch: kopf.Patch,
        status: Mapping[str, Any],
        *,
        generation: int | None,
        reconciled: bool,
        message: str,
        terminating: bool = False,
        topics: list[str] | None = None,
    ) -> None:
        fresh = await reconciler.status(
            ref,
            _previous(status),
            generation=generation,
            reconciled=reconciled,
            message=message,
            terminating=terminating,
            topics=topics,
        )
        patch.status.update(fresh.as_patch())

    async def reconcile(
        ref: AgentRef,
        spec: Mapping[str, Any],
        meta: Any,
        status: Mapping[str, Any],
        patch: kopf.Patch,
        *,
        topics: bool,
    ) -> None:
        parsed = _spec(spec)
        generation = meta.get("generation")
        try:
            outcome = await reconciler.apply(ref, parsed, topics=topics)
        except (ExpediterError, OSError) as exc:
            await write_status(
                ref, patch, status, generation=generation, reconciled=False, message=str(exc)
            )
            raise kopf.TemporaryError(str(exc), delay=RETRY_SECONDS) from exc
        await write_status(
            ref,
            patch,
            status,
            generation=generation,
            reconciled=True,
            message=f"generation {generation} applied",
            topics=outcome.topics,
        )

    @kopf.on.resume(id="reconcile", **agents)  # type: ignore[arg-type]
    @kopf.on.create(id="reconcile", **agents)  # type: ignore[arg-type]
    @kopf.on.update(id="reconcile", field="spec", **agents)  # type: ignore[arg-type]
    async def agent_changed(
        name: str,
        namespace: str,
        uid: str,
        spec: Mapping[str, Any],
        meta: Any,
        status: Mapping[str, Any],
        patch: kopf.Patch,
        **_: Any,
    ) -> None:
        if meta.get("deletionTimestamp"):
            return
        await reconcile(AgentRef(namespace, name, uid), spec, meta, status, patch, topics=True)

    @kopf.timer(id="resync", interval=settings.resync_seconds, **agents)  # type: ignore[arg-type]
    async def resync(
        name: str,
        namespace: str,
        uid: str,
        spec: Mapping[str, Any],
        meta: Any,
        status: Mapping[str, Any],
        patch: kopf.Patch,
        stopped: Any,
        **_: Any,
    ) -> None:
        if meta.get("deletionTimestamp"):
            return
        ref = AgentRef(namespace, name, uid)
        await _unless_stopped(reconcile(ref, spec, meta, status, patch, topics=False), stopped)

    async def replicas_changed(ref: AgentRef, agent: Mapping[str, Any], body: Any) -> None:
        # KEDA and the HPA scale the Deployment between resyncs, and the node readies pods:
        # the Agent's status follows at once rather than at the next resync.
        previous = _previous(agent["status"])
        replicas = (
            int(body.get("spec", {}).get("replicas") or 0),
            int(body.get("status", {}).get("readyReplicas") or 0),
        )
        if (previous.desired_replicas, previous.ready_replicas) == replicas:
            return
        last = next((c for c in previous.conditions if c.type == "Reconciled"), None)
        fresh = await reconciler.status(
            ref,
            previous,
            generation=previous.observed_generation,
            reconciled=last is None or last.status == "True",
            message=last.message if last is not None else "",
        )
        await reconciler.api.patch_status("Agent", ref.namespace, ref.name, fresh.as_patch())

    async def owned_changed(
        kind: str, event: Mapping[str, Any], body: Mapping[str, Any], logger: Any, index: Any
    ) -> None:
        owner = _owner(body)
        namespace = body.get("metadata", {}).get("namespace")
        if owner is None or namespace is None or (namespace, owner) not in index:
            return
        agent = next(iter(index[(namespace, owner)]), None)
        if agent is None or agent["deleting"]:
            return
        ref = AgentRef(namespace, owner, agent["uid"])
        try:
            desired = reconciler.desired(ref, _spec(agent["spec"]))
        except kopf.PermanentError:
            return
        wanted = next(o for o in desired.all if o["kind"] == kind)
        if event.get("type") == "DELETED":
            changed = ["(deleted)"]
        else:
            changed = drifted_fields(wanted, dict(body))
            if kind == "Deployment":
                try:
                    await replicas_changed(ref, agent, body)
                except KubeApiError as exc:
                    logger.warning("status of %s/%s not refreshed: %s", namespace, owner, exc)
        if not changed:
            return
        logger.info(
            "%s %s/%s drifted (%s): applying it again",
            kind,
            namespace,
            owner,
            ", ".join(changed[:5]),
        )
        try:
            await reconciler.api.apply(wanted)
        except KubeApiError as exc:
            raise kopf.TemporaryError(str(exc), delay=RETRY_SECONDS) from exc

    drift = {"id": "drift", "labels": dict(MANAGED_BY), "registry": registry}

    @kopf.on.event("apps", "v1", "deployments", **drift)  # type: ignore[arg-type]
    async def deployment_changed(
        event: Mapping[str, Any], body: Mapping[str, Any], logger: Any, agent_index: Any, **_: Any
    ) -> None:
        await owned_changed("Deployment", event, body, logger, agent_index)

    @kopf.on.event("keda.sh", "v1alpha1", "scaledobjects", **drift)  # type: ignore[arg-type]
    async def scaled_object_changed(
        event: Mapping[str, Any], body: Mapping[str, Any], logger: Any, agent_index: Any, **_: Any
    ) -> None:
        await owned_changed("ScaledObject", event, body, logger, agent_index)

    @kopf.on.delete(id="drain", **agents)  # type: ignore[arg-type]
    async def agent_deleted(
        name: str,
        namespace: str,
        uid: str,
        meta: Any,
        status: Mapping[str, Any],
        patch: kopf.Patch,
        **_: Any,
    ) -> None:
        ref = AgentRef(namespace, name, uid)
        try:
            remaining = await reconciler.drain(namespace, name)
        except KubeApiError as exc:
            raise kopf.TemporaryError(str(exc), delay=settings.drain_poll_seconds) from exc
        message = (
            f"draining: {remaining} worker pod(s) left" if remaining else "drained: no pod left"
        )
        await write_status(
            ref,
            patch,
            status,
            generation=meta.get("generation"),
            reconciled=True,
            message=message,
            terminating=True,
        )
        if remaining:
            raise kopf.TemporaryError(message, delay=settings.drain_poll_seconds)

    @kopf.on.cleanup(id="close-kafka", registry=registry)
    async def close_kafka(**_: Any) -> None:
        await reconciler.close_kafka()

    @kopf.on.probe(id="kafka", registry=registry)
    def kafka_probe(**_: Any) -> str:
        # Informational: liveness must not fail (and restart the operator) on a Kafka outage.
        return reconciler.kafka.bootstrap

    return registry
