"""The raw ApiVersions probe: it must recognise Kafka and refuse anything else."""

from __future__ import annotations

import asyncio
import struct

import pytest

from expediter.errors import BrokerUnavailableError
from expediter.messaging import api_versions
from expediter.messaging.probing import _CORRELATION_ID, _decode_reply, _encode_request


def test_request_frame_is_api_versions_v0() -> None:
    frame = _encode_request("probe")
    size, key, version, _corr, client_len = struct.unpack_from(">ihhih", frame)
    assert size == len(frame) - 4
    assert (key, version) == (18, 0)
    assert frame[14 : 14 + client_len] == b"probe"


def test_reply_decodes_the_api_ranges() -> None:
    body = struct.pack(">ihi", _CORRELATION_ID, 0, 2) + struct.pack(">hhhhhh", 0, 3, 11, 18, 0, 4)
    reply = _decode_reply(body)
    assert reply.ok
    assert reply.apis == {0: (3, 11), 18: (0, 4)}


async def _serve_once(payload: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(64)
        writer.write(payload)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_an_http_server_is_not_kafka() -> None:
    server, port = await _serve_once(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    async with server:
        with pytest.raises(BrokerUnavailableError, match="ApiVersions"):
            await api_versions("127.0.0.1", port, timeout=2)


async def test_a_closed_port_is_unavailable_and_retriable() -> None:
    server, port = await _serve_once(b"")
    server.close()
    await server.wait_closed()
    with pytest.raises(BrokerUnavailableError) as info:
        await api_versions("127.0.0.1", port, timeout=2)
    assert info.value.retriable
