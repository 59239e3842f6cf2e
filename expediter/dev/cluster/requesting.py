"""Asking the local API server (and the local etcd) something, as the admin, with the stdlib.

Enough for start-up and health checks: ``/readyz``, an object's JSON, etcd's ``/health``.
Anything that changes objects goes through kubectl (:mod:`~expediter.dev.cluster.installing`).
Called by :mod:`~expediter.dev.cluster.running`, the CLI's ``status`` and the tests.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ApiServer", "Reply", "etcd_healthy", "probe_ok"]


@dataclass(frozen=True)
class Reply:
    """An HTTP reply: 0 as the status when nothing answered, with the reason as the body."""

    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)


class ApiServer:
    """The API server at ``server``, reached with the admin certificate from ``pki``."""

    def __init__(self, server: str, pki: Path) -> None:
        self.server = server.rstrip("/")
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._context = context

    def get(self, path: str, timeout: float = 5.0) -> Reply:
        return _get(self.server + path, timeout, self._context)

    def ready(self) -> bool:
        """True when ``/readyz`` says every check passes."""
        return self.get("/readyz").ok

    def apiservice_available(self, name: str) -> bool:
        """True when the APIService ``name`` has the condition Available=True."""
        reply = self.get(f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
        if not reply.ok:
            return False
        conditions = reply.json().get("status", {}).get("conditions", [])
        return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)

    def version(self) -> str | None:
        """The server's ``gitVersion``, or None when it does not answer."""
        reply = self.get("/version")
        return str(reply.json().get("gitVersion")) if reply.ok else None


def etcd_healthy(client_url: str) -> bool:
    reply = _get(client_url.rstrip("/") + "/health", 2.0, None)
    return reply.ok and reply.json().get("health") == "true"


def probe_ok(url: str) -> bool:
    """True when a plain-HTTP health probe (KEDA's operator has one) answers 2xx."""
    return _get(url, 2.0, None).ok


def _get(url: str, timeout: float, context: ssl.SSLContext | None) -> Reply:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:  # noqa: S310
            return Reply(response.status, response.read().decode(errors="replace"))
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.read().decode(errors="replace"))
    except (OSError, ValueError) as exc:
        return Reply(0, str(exc))
