"""Asking a broker whether it is really Kafka and ready, without a Kafka client library.

:func:`api_versions` speaks the ApiVersions request (key 18, version 0) over a plain socket:
the first request every Kafka client sends, so an answer proves that a Kafka broker, not some
other server, holds the port. :func:`wait_for_broker` then waits until a metadata request
through aiokafka succeeds too. Called by ``dev`` (local broker start-up), the CLI's ``status``
and the tests' broker fixture.
"""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from expediter.errors import BrokerUnavailableError
from expediter.messaging.connecting import client_options
from expediter.settings import KafkaSettings

__all__ = ["ApiVersionsReply", "api_versions", "wait_for_broker"]

_API_VERSIONS = 18
_CORRELATION_ID = 0x45585044  # "EXPD", to recognise our own reply


@dataclass(frozen=True)
class ApiVersionsReply:
    """A broker's answer to ApiVersions: its error code and {api key: (min, max) version}."""

    error_code: int
    apis: dict[int, tuple[int, int]]

    @property
    def ok(self) -> bool:
        return self.error_code == 0 and _API_VERSIONS in self.apis


def _encode_request(client_id: str) -> bytes:
    client = client_id.encode()
    header = struct.pack(">hhih", _API_VERSIONS, 0, _CORRELATION_ID, len(client)) + client
    return struct.pack(">i", len(header)) + header


def _decode_reply(body: bytes) -> ApiVersionsReply:
    correlation_id, error_code, count = struct.unpack_from(">ihi", body, 0)
    if correlation_id != _CORRELATION_ID:
        raise ValueError(f"correlation id {correlation_id} is not ours")
    apis: dict[int, tuple[int, int]] = {}
    offset = 10
    for _ in range(count):
        key, low, high = struct.unpack_from(">hhh", body, offset)
        apis[key] = (low, high)
        offset += 6
    return ApiVersionsReply(error_code=error_code, apis=apis)


async def api_versions(host: str, port: int, *, timeout: float = 5.0) -> ApiVersionsReply:
    """Send ApiVersions v0 to ``host:port`` over PLAINTEXT and decode the reply.

    Raises :class:`BrokerUnavailableError` when nothing answers or the answer is not Kafka.
    """
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(_encode_request("expediter-probe"))
                await writer.drain()
                (size,) = struct.unpack(">i", await reader.readexactly(4))
                if not 0 < size < 1 << 20:
                    raise ValueError(f"reply size {size} is not a Kafka frame")
                return _decode_reply(await reader.readexactly(size))
            finally:
                writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, struct.error) as exc:
        raise BrokerUnavailableError(
            f"{host}:{port} did not answer a Kafka ApiVersions request ({exc!r})"
        ) from exc


async def wait_for_broker(settings: KafkaSettings, *, timeout: float = 60.0) -> None:
    """Wait until the cluster at ``settings.bootstrap`` answers a metadata request."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        client = AIOKafkaClient(**client_options(settings))
        try:
            await client.bootstrap()
            return
        except KafkaError as exc:
            last = exc
        finally:
            await client.close()
        await asyncio.sleep(0.25)
    raise BrokerUnavailableError(
        f"no broker answered a metadata request at {settings.bootstrap} within {timeout:.0f}s"
        f" (last error: {last!r})"
    )
