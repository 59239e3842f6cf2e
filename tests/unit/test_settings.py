"""Connection settings: what EXPEDITER_* variables turn into for aiokafka."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from expediter.errors import ConfigurationError
from expediter.messaging import client_options
from expediter.settings import KafkaSettings


def test_defaults_are_plaintext_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPEDITER_BOOTSTRAP", raising=False)
    options = client_options(KafkaSettings())
    assert options["bootstrap_servers"] == ["127.0.0.1:9092"]
    assert options["security_protocol"] == "PLAINTEXT"
    assert "sasl_mechanism" not in options
    assert "ssl_context" not in options


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPEDITER_BOOTSTRAP", "k1:9092, k2:9092")
    monkeypatch.setenv("EXPEDITER_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("EXPEDITER_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("EXPEDITER_SASL_USERNAME", "alice")
    monkeypatch.setenv("EXPEDITER_SASL_PASSWORD", "wonderland")
    settings = KafkaSettings()
    options = client_options(settings)
    assert options["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert options["sasl_mechanism"] == "SCRAM-SHA-256"
    assert options["sasl_plain_username"] == "alice"
    assert options["sasl_plain_password"] == "wonderland"
    # The password must not leak through repr (logs, tracebacks).
    assert "wonderland" not in repr(settings)


def test_sasl_without_credentials_names_the_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EXPEDITER_SASL_USERNAME", raising=False)
    monkeypatch.delenv("EXPEDITER_SASL_PASSWORD", raising=False)
    with pytest.raises(ConfigurationError, match="EXPEDITER_SASL_USERNAME"):
        KafkaSettings(security_protocol="SASL_SSL")


def test_sasl_ssl_gets_a_verifying_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPEDITER_SASL_USERNAME", "alice")
    monkeypatch.setenv("EXPEDITER_SASL_PASSWORD", "pw")
    options = client_options(KafkaSettings(security_protocol="SASL_SSL"))
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"


def test_missing_ca_file_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EXPEDITER_SSL_CAFILE", str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigurationError, match="EXPEDITER_SSL_CAFILE"):
        client_options(KafkaSettings(security_protocol="SSL"))


def test_invalid_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPEDITER_SECURITY_PROTOCOL", "SASL_TLS")
    with pytest.raises(ValueError, match="security_protocol"):
        KafkaSettings()
