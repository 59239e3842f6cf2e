"""The worker's HTTP server as the kubelet, Prometheus and curl talk to it, over real sockets.

Probes and scrapes send GET (HEAD from some tools), keep connections alive between scrapes, and
must get a plain status for anything else; a stopped server frees its port and its idle
keep-alive connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import pytest
import pytest_asyncio

from expediter.worker.serving import HttpServer, Reply


def hello(headers: Mapping[str, str]) -> Reply:
    return Reply(200, f"hello {headers.get('accept', '-')}".encode())


def broken(headers: Mapping[str, str]) -> Reply:
    raise RuntimeError("a route bug")


@pytest_asyncio.fixture
async def port() -> AsyncIterator[int]:
    server = HttpServer({"/hello": hello, "/broken": broken})
    bound = await server.start("127.0.0.1", 0)
    yield bound
    await server.stop()


async def exchange(port: int, *requests: bytes) -> bytes:
    """Send ``requests`` on one connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for request in requests:
        writer.write(request)
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return reply


async def test_get_answers_with_length_and_type(port: int) -> None:
    reply = await exchange(port, b"GET /hello?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\n"
                                 b"Connection: close\r\n\r\n")  # fmt: skip
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 16" in head
    assert b"Content-Type: text/plain; charset=utf-8" in head
    assert body == b"hello text/plain"


async def test_keep_alive_answers_several_requests_on_one_connection(port: int) -> None:
    get = b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
    last = b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    reply = await exchange(port, get, get, last)
    assert reply.count(b"HTTP/1.1 200 OK") == 3
    assert reply.count(b"Connection: keep-alive") == 2


async def test_http_1_0_closes_unless_asked_to_keep_alive(port: int) -> None:
    reply = await exchange(port, b"GET /hello HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in reply


async def test_head_sends_the_headers_only(port: int) -> None:
    reply = await exchange(port, b"HEAD /hello HTTP/1.1\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"Content-Length: 7" in head
    assert body == b""


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /nope HTTP/1.1\r\n\r\n", b"404 Not Found"),
        (b"POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405 Method Not Allowed"),
        (b"GET /hello HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", b"413 Request Entity Too Large"),
        (b"GARBAGE\r\n\r\n", b"400 Bad Request"),
        (b"GET /hello HTTP/2.0\r\n\r\n", b"400 Bad Request"),
        (b"GET /hello HTTP/1.1\r\nno colon\r\n\r\n", b"400 Bad Request"),
        (b"GET /hello HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n",
         b"431 Request Header Fields Too Large"),
        (b"GET /broken HTTP/1.1\r\nConnection: close\r\n\r\n", b"500 Internal Server Error"),
    ],
)  # fmt: skip
async def test_what_is_not_a_probe_gets_a_plain_status(
    port: int, request_bytes: bytes, status: bytes
) -> None:
    reply = await exchange(port, request_bytes + b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 " + status), reply[:200]
    if status == b"405 Method Not Allowed":
        assert b"Allow: GET, HEAD" in reply


async def test_stop_closes_idle_connections_and_frees_the_port() -> None:
    server = HttpServer({"/hello": hello})
    port = await server.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /hello HTTP/1.1\r\n\r\n")
    await reader.readuntil(b"hello -")  # answered, and the connection stays open
    await asyncio.wait_for(server.stop(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
    writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    again = HttpServer({"/hello": hello})
    assert await again.start("127.0.0.1", port) == port
    await again.stop()
