"""A small HTTP/1.1 server on asyncio streams for the worker's probes and scrapes.

The worker answers three GET endpoints (/metrics, /healthz, /readyz) with bodies built in
memory. A web framework for that costs a worker about 11 MB of its memory (aiohttp), which is
what an image without a model is sized by; this serves the same answers from the standard
library. It speaks what the kubelet, Prometheus and curl send: GET and HEAD, keep-alive (the
HTTP/1.1 default, HTTP/1.0 on request), ``Connection: close``. Anything else gets a plain
status: 400 for a malformed request, 404 for another path, 405 for another method, 413 for a
body, 431 for oversized headers, 500 if a route raises (logged). An idle connection is closed
after :data:`IDLE_SECONDS`, and one that trickles its headers after :data:`HEADER_SECONDS`.

Used by :class:`~expediter.worker.observing.ObservabilityServer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

__all__ = ["HEADER_SECONDS", "IDLE_SECONDS", "HttpServer", "Reply", "Route"]

log = logging.getLogger(__name__)

IDLE_SECONDS = 75.0
"""A keep-alive connection with no new request for this long is closed (aiohttp's default);
Prometheus scrapes every 15-60 s on one connection."""
HEADER_SECONDS = 10.0
"""A request's line and headers must arrive within this, once its first byte has."""
_HEADER_LIMIT = 16 * 1024


@dataclass(frozen=True)
class Reply:
    """A response: status, body and content type (plus any other headers)."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)


Route = Callable[[Mapping[str, str]], Reply]
"""A handler: the request's headers (lower-case names) in, a :class:`Reply` out. It runs on
the event loop, so it must be quick."""


class _BadRequest(Exception):
    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(status.phrase)
        self.status = status


class HttpServer:
    """Serves ``routes`` (path -> :data:`Route`) on ``host:port`` until :meth:`stop`."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self.routes = dict(routes)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}

    async def start(self, host: str, port: int) -> int:
        """Bind and listen; returns the bound port (``port`` 0 picks a free one). Raises
        OSError when the address cannot be bound."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=_HEADER_LIMIT)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and close every open connection (idle keep-alives included)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._connections):
            writer.close()  # the connection's reader sees the end, and its task returns
        if self._connections:
            await asyncio.wait(list(self._connections.values()), timeout=1.0)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[writer] = task
        try:
            while await self._answer_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or stalled: nothing to answer
        finally:
            self._connections.pop(writer, None)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _answer_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; False when the connection should close."""
        first = await asyncio.wait_for(reader.read(1), IDLE_SECONDS)
        if not first:
            return False
        try:
            head = first + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_SECONDS)
        except asyncio.LimitOverrunError:
            await _write(writer, _plain(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE), keep=False)
            return False
        try:
            method, path, version, headers = _parse(head)
        except _BadRequest as exc:
            await _write(writer, _plain(exc.status), keep=False)
            return False
        reply = self._reply(method, path, headers)
        # After a refused body the stream holds bytes that are no request: close.
        keep = _keep_alive(version, headers) and reply.status != HTTPStatus.REQUEST_ENTITY_TOO_LARGE
        await _write(writer, reply, keep=keep, head_only=method == "HEAD")
        return keep

    def _reply(self, method: str, path: str, headers: Mapping[str, str]) -> Reply:
        route = self.routes.get(path)
        if route is None:
            return _plain(HTTPStatus.NOT_FOUND)
        if method not in ("GET", "HEAD"):
            return Reply(405, b"method not allowed\n", headers={"Allow": "GET, HEAD"})
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            return _plain(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)  # a probe sends no body
        try:
            return route(headers)
        except Exception:
            log.exception("GET %s failed", path)
            return _plain(HTTPStatus.INTERNAL_SERVER_ERROR)


def _parse(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise _BadRequest(HTTPStatus.BAD_REQUEST) from None
    if version not in ("HTTP/1.0", "HTTP/1.1") or not target.startswith("/"):
        raise _BadRequest(HTTPStatus.BAD_REQUEST)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(HTTPStatus.BAD_REQUEST)
        headers[name.lower()] = value.strip()
    return method, target.partition("?")[0], version, headers


def _keep_alive(version: str, headers: Mapping[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


def _plain(status: HTTPStatus) -> Reply:
    return Reply(int(status), f"{status.phrase.lower()}\n".encode())


async def _write(
    writer: asyncio.StreamWriter, reply: Reply, *, keep: bool, head_only: bool = False
) -> None:
    phrase = HTTPStatus(reply.status).phrase
    lines = [
        f"HTTP/1.1 {reply.status} {phrase}",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {len(reply.body)}",
        *(f"{name}: {value}" for name, value in reply.headers.items()),
        "Connection: keep-alive" if keep else "Connection: close",
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    writer.write(head if head_only else head + reply.body)
    await writer.drain()
