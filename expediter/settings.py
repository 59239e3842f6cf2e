"""Typed connection settings, read from ``EXPEDITER_*`` environment variables.

Settings are grouped by concern rather than piled into one class: :class:`KafkaSettings` says
where the cluster is and how to speak to it, and composes :class:`SaslSettings` and
:class:`TlsSettings`. Every layer above (messaging, dev, cli) receives a settings object; nothing
below the CLI reads the environment itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from expediter.errors import ConfigurationError

__all__ = ["DevSettings", "KafkaSettings", "SaslSettings", "SecurityProtocol", "TlsSettings"]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class SaslSettings(BaseSettings):
    """SASL credentials, used when the protocol is SASL_PLAINTEXT or SASL_SSL.

    On Kubernetes these come from a Secret (see k8s/ and keda/'s TriggerAuthentication), never
    from a committed file.
    """

    model_config = SettingsConfigDict(env_prefix="EXPEDITER_SASL_", extra="ignore")

    mechanism: SaslMechanism = "SCRAM-SHA-512"
    """SCRAM-SHA-512 by default: it is what Strimzi and most managed clusters issue."""
    username: str | None = None
    password: SecretStr | None = None


class TlsSettings(BaseSettings):
    """TLS material, used when the protocol is SSL or SASL_SSL."""

    model_config = SettingsConfigDict(env_prefix="EXPEDITER_SSL_", extra="ignore")

    cafile: Path | None = None
    """The CA bundle that signed the brokers' certificates; None trusts the system store."""
    certfile: Path | None = None
    """A client certificate, for clusters that authenticate clients by mTLS."""
    keyfile: Path | None = None
    password: SecretStr | None = None
    """The passphrase of ``keyfile``, if it has one."""
    check_hostname: bool = True
    """Off only for test clusters with self-signed certificates issued to another name."""


class KafkaSettings(BaseSettings):
    """Where the Kafka cluster is and how to connect to it."""

    model_config = SettingsConfigDict(env_prefix="EXPEDITER_", extra="ignore")

    bootstrap: str = "127.0.0.1:9092"
    """Comma-separated host:port list. When ``EXPEDITER_BOOTSTRAP`` is set, the tests and
    ``expediter dev kafka`` use that cluster instead of starting one."""
    security_protocol: SecurityProtocol = "PLAINTEXT"
    client_id: str = "expediter"
    request_timeout_ms: int = Field(default=30_000, gt=0)
    """How long one request may wait for the broker; also bounds how long a connect may hang."""
    sasl: SaslSettings = Field(default_factory=SaslSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)

    @model_validator(mode="after")
    def _credentials_present(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl.username and self.sasl.password
        ):
            raise ConfigurationError(
                f"security protocol {self.security_protocol} needs SASL credentials: "
                "set EXPEDITER_SASL_USERNAME and EXPEDITER_SASL_PASSWORD"
            )
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        return [part.strip() for part in self.bootstrap.split(",") if part.strip()]


class DevSettings(BaseSettings):
    """The local development broker that ``expediter dev kafka`` and the tests start."""

    model_config = SettingsConfigDict(env_prefix="EXPEDITER_DEV_", extra="ignore")

    dir: Path = Path(".expediter")
    """Where the broker keeps its state file, config, data and log; relative to the working
    directory, so that each checkout has its own broker. The data is wiped at each start."""
    kafka_heap_mb: int = Field(default=512, ge=128)
    """The broker's JVM heap. 512 MiB is plenty for tests and leaves room on a 2-core box."""
    start_timeout: float = Field(default=120.0, gt=0)
    """How long a start may take before it is killed: a cold JVM on 2 cores needs ~10 s."""
