"""SASL/SCRAM against the broker's SASL_PLAINTEXT listener (users added at format time)."""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from expediter.dev import Broker
from expediter.errors import AuthenticationError
from expediter.messaging import client_options, connected
from expediter.settings import KafkaSettings, SaslSettings
from tests.conftest import SCRAM_USER


def _sasl(kafka: Broker, password: str) -> KafkaSettings:
    if kafka.sasl_bootstrap is None:
        pytest.fail(
            f"the {kafka.kind} broker has no SCRAM listener; run the SASL tests against the "
            "local broker (unset EXPEDITER_BOOTSTRAP, or set EXPEDITER_NO_DOCKER=1)"
        )
    return KafkaSettings(
        bootstrap=kafka.sasl_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl=SaslSettings(
            mechanism=SCRAM_USER.mechanism, username=SCRAM_USER.name, password=password
        ),
    )


async def test_right_credentials_connect_and_produce(kafka: Broker, topic_name: str) -> None:
    settings = _sasl(kafka, SCRAM_USER.password)
    options = client_options(settings)
    async with connected(AIOKafkaAdminClient(**options), settings) as admin:
        await admin.create_topics([NewTopic(topic_name, 1, 1)])
    async with connected(AIOKafkaProducer(**options), settings) as producer:
        metadata = await producer.send_and_wait(topic_name, b"hello", key=b"k")
    assert metadata.offset == 0


async def test_wrong_password_is_a_clear_error_not_a_hang(kafka: Broker) -> None:
    settings = _sasl(kafka, "not-the-password")
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as info:
        async with connected(AIOKafkaProducer(**client_options(settings)), settings):
            pass
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert "refused" in message
    assert SCRAM_USER.name in message
    assert "EXPEDITER_SASL_PASSWORD" in message
    assert "not-the-password" not in message
    assert not info.value.retriable
