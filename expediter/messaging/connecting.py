"""Turning :class:`KafkaSettings` into aiokafka clients, and connect failures into clear errors.

aiokafka reports a refused password and an unreachable broker alike, as "Unable to bootstrap".
A user needs to know which one happened, so :func:`connected` starts a client and, when the
start fails, asks the broker once more over a single connection to tell the two apart.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, SaslAuthenticationFailed

from expediter.errors import AuthenticationError, BrokerUnavailableError, ConfigurationError
from expediter.settings import KafkaSettings

log = logging.getLogger("expediter.messaging")

__all__ = ["client_options", "connected"]


class _Startable(Protocol):
    async def start(self) -> None: ...


ClientT = TypeVar("ClientT", bound=_Startable)


def _ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    tls = settings.tls
    try:
        context = ssl.create_default_context(cafile=str(tls.cafile) if tls.cafile else None)
        if tls.certfile:
            context.load_cert_chain(
                str(tls.certfile),
                str(tls.keyfile) if tls.keyfile else None,
                tls.password.get_secret_value() if tls.password else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load TLS material ({exc}): check EXPEDITER_SSL_CAFILE, "
            "EXPEDITER_SSL_CERTFILE and EXPEDITER_SSL_KEYFILE"
        ) from exc
    context.check_hostname = tls.check_hostname
    return context


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """The keyword arguments every aiokafka client (producer, consumer, admin) takes."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "request_timeout_ms": settings.request_timeout_ms,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if settings.security_protocol.startswith("SASL_"):
        sasl = settings.sasl
        options["sasl_mechanism"] = sasl.mechanism
        options["sasl_plain_username"] = sasl.username
        options["sasl_plain_password"] = sasl.password.get_secret_value() if sasl.password else None
    return options


async def _diagnose(settings: KafkaSettings, options: dict[str, Any]) -> Exception:
    """Open one raw connection to learn why a client could not bootstrap."""
    sasl_options = {k: v for k, v in options.items() if k.startswith(("sasl_", "ssl_"))}
    for server in settings.bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            conn = await create_conn(
                host,
                int(port),
                client_id=settings.client_id,
                request_timeout_ms=settings.request_timeout_ms,
                security_protocol=settings.security_protocol,
                **sasl_options,
            )
        except SaslAuthenticationFailed as exc:
            return AuthenticationError(
                f"the broker at {server} refused the {settings.sasl.mechanism} credentials of "
                f"user {settings.sasl.username!r}: check EXPEDITER_SASL_USERNAME, "
                "EXPEDITER_SASL_PASSWORD and EXPEDITER_SASL_MECHANISM"
                f" ({exc})"
            )
        except (KafkaError, OSError):
            continue
        else:
            conn.close()
    return BrokerUnavailableError(
        f"no Kafka broker answered at {settings.bootstrap} over {settings.security_protocol}: "
        "start one (`expediter dev kafka start`) or set EXPEDITER_BOOTSTRAP"
    )


@asynccontextmanager
async def connected(
    client: ClientT, settings: KafkaSettings, *, stop_seconds: float | None = None
) -> AsyncIterator[ClientT]:
    """Start ``client``, yield it, and always stop it.

    A failed start raises :class:`AuthenticationError` (permanent) or
    :class:`BrokerUnavailableError` (retriable) instead of aiokafka's generic error.
    ``stop_seconds`` bounds the stop: a consumer's stop waits for a JoinGroup in flight, which
    the broker holds until every member of the group rejoined or timed out (a member killed
    with -9: its whole session timeout). Past the bound the stop is abandoned, and the broker
    drops the member after its session timeout; the worker uses it so that SIGTERM during a
    rebalance still ends within the drain budget.
    """
    try:
        await client.start()
    except KafkaConnectionError as exc:
        await _stop(client)
        raise await _diagnose(settings, client_options(settings)) from exc
    try:
        yield client
    finally:
        if stop_seconds is None:
            await _stop(client)
        else:
            try:
                await asyncio.wait_for(_stop(client), stop_seconds)
            except TimeoutError:
                log.warning(
                    "the Kafka client did not stop within %.0fs (a group rebalance in flight); "
                    "left to the broker's session timeout", stop_seconds,
                )  # fmt: skip


async def _stop(client: _Startable) -> None:
    # Producers and consumers stop(); aiokafka's admin client close()s.
    closer = getattr(client, "stop", None) or client.close  # type: ignore[attr-defined]
    await closer()
