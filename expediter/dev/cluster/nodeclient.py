"""The local node's client of the API server: JSON requests and watches, async, over aiohttp.

The node (:mod:`~expediter.dev.cluster.kubelet`) does a kubelet's part for many pods at once
on one event loop, next to the container processes it runs, so its client is async: a watch
is a streamed GET whose lines are events, and every other call is one request. It speaks as
the local cluster's admin (the certificate in its ``pki``), as ``kubectl`` does there; a real
kubelet would hold a ``system:node:<name>`` certificate. Called by the node's modules only.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp

from expediter.dev.cluster.errors import ClusterError

__all__ = ["MERGE_PATCH", "STRATEGIC_PATCH", "ApiError", "NodeClient"]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class ApiError(ClusterError):
    """The API server answered with an error status (or did not answer: status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NodeClient:
    """Requests to the API server at ``server`` as the admin whose certificate is in ``pki``.

    Use it as an async context manager (one connection pool for the node's life).
    """

    def __init__(self, server: str, pki: Path, *, timeout: float = 10.0) -> None:
        self.server = server.rstrip("/")
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._ssl = context
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> NodeClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=16)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("NodeClient used outside `async with`")
        return self._session

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        return self.server + path + (f"?{urlencode(params)}" if params else "")

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request; the decoded JSON answer, or :class:`ApiError` with the server's reason."""
        data = None if body is None else json.dumps(body)
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        try:
            async with self.session.request(
                method,
                self.url(path, params),
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(0, f"{method} {path}: the API server did not answer ({exc!r})") from exc
        if status >= 400:
            raise ApiError(status, f"{method} {path}: {status} {_reason(text)}")
        decoded: dict[str, Any] = json.loads(text) if text else {}
        return decoded

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        return await self.request("GET", path, params=params or None)

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body)

    async def patch(
        self, path: str, body: Mapping[str, Any], *, content_type: str = MERGE_PATCH
    ) -> dict[str, Any]:
        return await self.request("PATCH", path, body, content_type=content_type)

    async def delete(self, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self.request("DELETE", path, body)

    async def watch(
        self,
        path: str,
        resource_version: str,
        *,
        timeout_seconds: int = 60,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of a watch from ``resource_version`` until the server ends it.

        An ``ERROR`` event (e.g. 410 Gone: the version is too old) is raised as
        :class:`ApiError`: the caller lists again.
        """
        query = {
            **(params or {}),
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout, sock_read=timeout_seconds + 30
        )
        try:
            async with self.session.get(self.url(path, query), timeout=timeout) as response:
                if response.status >= 400:
                    raise ApiError(
                        response.status, f"watch {path}: {_reason(await response.text())}"
                    )
                pending = b""
                # Lines can be longer than aiohttp's line limit (a pod is several KB): split here.
                async for chunk in response.content.iter_any():
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if not line.strip():
                            continue
                        event: dict[str, Any] = json.loads(line)
                        if event.get("type") == "ERROR":
                            status = event.get("object") or {}
                            raise ApiError(
                                int(status.get("code") or 0), _reason(json.dumps(status))
                            )
                        yield event
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(0, f"watch {path}: {exc!r}") from exc


def _reason(text: str) -> str:
    """The ``message`` of a Kubernetes Status, or the text itself."""
    try:
        decoded = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(decoded, dict) and decoded.get("message"):
        return str(decoded["message"])
    return text.strip()[:500]
