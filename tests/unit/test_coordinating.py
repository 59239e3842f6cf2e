"""The orchestrator's producers retry a coordinator lookup only when its cause was retriable.

aiokafka wraps a closed connection during a coordinator lookup as a plain ``KafkaError``; the
chaos tier (tests/chaos/test_outage_orchestrator.py) shows the whole path on a real broker.
"""

from __future__ import annotations

from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    NodeNotReadyError,
)

from expediter.messaging.coordinating import is_retriable_lookup_failure


def wrapped(cause: BaseException) -> KafkaError:
    try:
        try:
            raise cause
        except KafkaError as err:
            raise KafkaError(repr(err)) from err
    except KafkaError as exc:
        return exc


def test_a_closed_connection_wrapped_by_the_sender_is_retried() -> None:
    assert is_retriable_lookup_failure(wrapped(KafkaConnectionError("closed")))
    assert is_retriable_lookup_failure(wrapped(NodeNotReadyError("not ready")))


def test_a_refusal_or_a_bare_error_is_not_retried() -> None:
    assert not is_retriable_lookup_failure(wrapped(GroupAuthorizationFailedError("g")))
    assert not is_retriable_lookup_failure(KafkaError("no cause"))
    assert not is_retriable_lookup_failure(KafkaConnectionError("retriable itself"))
