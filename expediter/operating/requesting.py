"""The operator's own calls to the Kubernetes API: server-side apply, get, list, merge-patch.

kopf watches and patches the Agents; everything the operator makes (Deployments, Services,
PodDisruptionBudgets, ScaledObjects, TriggerAuthentications, KafkaTopics) goes through
:class:`KubeApi`, an aiohttp client on the same credentials kopf logs in with
(:func:`connection_info`: the pod's service account in cluster, else the kubeconfig). Every
write is a server-side apply under one field manager, so applying the same object again is a
no-op and applying it after someone edited it takes the operator's fields back.

Called by :mod:`~expediter.operating.reconciling`, :mod:`~.observing` and :mod:`~.topicking`.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf

from expediter.errors import ConfigurationError, ExpediterError
from expediter.operating.resources import GROUP, PLURAL, VERSION
from expediter.operating.settings import FIELD_MANAGER

__all__ = ["KINDS", "KubeApi", "KubeApiError", "connection_info", "object_path"]

Object = dict[str, Any]

KINDS: Mapping[str, tuple[str, str]] = {
    "Deployment": ("apps/v1", "deployments"),
    "Service": ("v1", "services"),
    "Pod": ("v1", "pods"),
    "PodDisruptionBudget": ("policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("autoscaling/v2", "horizontalpodautoscalers"),
    "ScaledObject": ("keda.sh/v1alpha1", "scaledobjects"),
    "TriggerAuthentication": ("keda.sh/v1alpha1", "triggerauthentications"),
    "KafkaTopic": ("kafka.strimzi.io/v1beta2", "kafkatopics"),
    "Agent": (f"{GROUP}/{VERSION}", PLURAL),
    "CustomResourceDefinition": ("apiextensions.k8s.io/v1", "customresourcedefinitions"),
}
"""The kinds the operator touches: API version and plural, so no discovery is needed."""


class KubeApiError(ExpediterError):
    """The API server refused a request; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def object_path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    """The REST path of ``kind`` (a collection without ``name``)."""
    api_version, plural = KINDS[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{plural}"
    return base + (f"/{quote(name, safe='')}" if name else "")


def connection_info(kubeconfig: Path | None) -> kopf.ConnectionInfo:
    """The credentials kopf itself logs in with: ``kubeconfig`` when given, else the pod's
    service account, else $KUBECONFIG or ~/.kube/config."""
    settings = kopf.OperatorSettings()
    if kubeconfig is not None:
        if not kubeconfig.is_file():
            raise ConfigurationError(
                f"--kubeconfig {kubeconfig}: no such file; pass the kubeconfig of the cluster "
                "(`expediter dev cluster start` prints it)"
            )
        os.environ["KUBECONFIG"] = str(kubeconfig)
        info = kopf.login_with_kubeconfig(settings=settings)
    else:
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
            settings=settings
        )
    if info is None:
        raise ConfigurationError(
            "no Kubernetes credentials: run in a pod with a service account, or pass "
            "--kubeconfig FILE (or set KUBECONFIG)"
        )
    return info


@dataclass(frozen=True)
class _Material:
    ssl: ssl.SSLContext | bool
    headers: Mapping[str, str]


def _pem(data: str | bytes) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return raw if raw.lstrip().startswith(b"-----") else base64.b64decode(raw)


def _material(info: kopf.ConnectionInfo, scratch: Path) -> _Material:
    headers: dict[str, str] = {}
    if info.token:
        headers["Authorization"] = f"Bearer {info.token}"
    elif info.username and info.password:
        pair = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
        headers["Authorization"] = f"Basic {pair}"
    if info.insecure:
        return _Material(ssl=False, headers=headers)
    context = ssl.create_default_context()
    if info.ca_path:
        context.load_verify_locations(cafile=os.fsdecode(info.ca_path))
    if info.ca_data:
        context.load_verify_locations(cadata=_pem(info.ca_data).decode())
    cert = os.fsdecode(info.certificate_path) if info.certificate_path else None
    key = os.fsdecode(info.private_key_path) if info.private_key_path else None
    # ssl only loads a client certificate from files: the kubeconfig's inline data goes to a
    # private scratch folder.
    if info.certificate_data:
        cert = str(scratch / "client.crt")
        Path(cert).write_bytes(_pem(info.certificate_data))
    if info.private_key_data:
        key = str(scratch / "client.key")
        Path(key).write_bytes(_pem(info.private_key_data))
    if cert:
        context.load_cert_chain(cert, key)
    return _Material(ssl=context, headers=headers)


class KubeApi:
    """An async Kubernetes REST client; use it as an async context manager."""

    def __init__(self, kubeconfig: Path | None = None, *, timeout: float = 30.0) -> None:
        self.kubeconfig = kubeconfig
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._server = ""
        self._material: _Material | None = None

    async def __aenter__(self) -> KubeApi:
        self._login()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
        if self._scratch is not None:
            self._scratch.cleanup()

    def _login(self) -> None:
        info = connection_info(self.kubeconfig)
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="expediter-operator-")
        self._server = info.server.rstrip("/")
        self._material = _material(info, Path(self._scratch.name))

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Object | None:
        """The decoded reply; None for a 404. Other errors raise :class:`KubeApiError`."""
        assert self._session is not None, "use KubeApi as an async context manager"
        for attempt in (1, 2):
            assert self._material is not None
            headers = {**self._material.headers, "Accept": "application/json"}
            data = None
            if body is not None:
                headers["Content-Type"] = content_type
                data = json.dumps(body)
            try:
                async with self._session.request(
                    method,
                    self._server + path,
                    params=params,
                    data=data,
                    headers=headers,
                    ssl=self._material.ssl,
                ) as reply:
                    text = await reply.text()
                    status = reply.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise KubeApiError(0, f"{method} {path}: {exc!r}") from exc
            if status == 401 and attempt == 1:
                self._login()  # a rotated service-account token: read it again
                continue
            if status == 404 and method == "GET":
                return None
            if status >= 400:
                raise KubeApiError(status, f"{method} {path}: {status} {_message(text)}")
            return json.loads(text) if text else {}
        raise AssertionError("unreachable")

    async def apply(self, obj: Object) -> Object:
        """Server-side apply ``obj`` (create or update) as the operator's field manager."""
        meta = obj["metadata"]
        path = object_path(obj["kind"], meta.get("namespace"), meta["name"])
        applied = await self.request(
            "PATCH",
            path,
            body=obj,
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml",
        )
        assert applied is not None
        return applied

    async def get(self, kind: str, namespace: str | None, name: str) -> Object | None:
        return await self.request("GET", object_path(kind, namespace, name))

    async def list(self, kind: str, namespace: str | None, selector: str) -> list[Object]:
        listed = await self.request(
            "GET", object_path(kind, namespace), params={"labelSelector": selector}
        )
        return list((listed or {}).get("items", []))

    async def patch_status(
        self, kind: str, namespace: str | None, name: str, status: Object
    ) -> Object | None:
        """A merge patch of the status subresource; None when the object is gone."""
        try:
            return await self.request(
                "PATCH",
                object_path(kind, namespace, name) + "/status",
                body={"status": status},
                content_type="application/merge-patch+json",
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def merge_patch(
        self, kind: str, namespace: str | None, name: str, patch: Object
    ) -> Object | None:
        """A JSON merge patch; None when the object is gone."""
        try:
            return await self.request(
                "PATCH",
                object_path(kind, namespace, name),
                body=patch,
                content_type="application/merge-patch+json",
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise


def _message(text: str) -> str:
    try:
        return str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        return text[:500]
