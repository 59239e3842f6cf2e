"""The one dead-letter builder (worker and orchestrator): the original kept whole when it fits,
a bounded prefix flagged ``truncated`` when not, so that a dead letter always fits the broker's
message limit."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from expediter.errors import DecodeError
from expediter.events import DeadLetter, Producer, decode, encode
from expediter.events.deadletters import KEPT_BYTES, dead_letter
from expediter.orchestrator import deadlettering
from expediter.worker import failing
from tests.support import task

PRODUCER = Producer(name="probe", version="1")
BROKER_LIMIT = 1_048_588
"""Kafka's default message.max.bytes."""


@dataclass
class Consumed:
    """What the worker (an aiokafka ConsumerRecord) and the orchestrator (a Faust message) have."""

    value: bytes | None
    key: bytes | None = b"wf-1"
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)
    topic: str = "tasks.probe"
    partition: int = 2
    offset: int = 41


def original(letter: DeadLetter) -> tuple[bytes | None, list[tuple[str, bytes]], bytes]:
    key = base64.b64decode(letter.original_key) if letter.original_key is not None else None
    headers = [(name, base64.b64decode(value)) for name, value in letter.original_headers]
    return key, headers, base64.b64decode(letter.original_value)


def test_a_record_that_fits_is_kept_whole_with_its_origin() -> None:
    record = Consumed(b'{"not": "a task"}', headers=[("traceparent", b"00-ab-cd-01")])
    letter = dead_letter(record, PRODUCER, reason="invalid", detail="no type")
    assert original(letter) == (record.key, record.headers, record.value)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "tasks.probe",
        2,
        41,
    )
    assert not letter.truncated
    assert letter.original_value_bytes == len(b'{"not": "a task"}')


def test_a_record_near_the_broker_limit_is_cut_to_a_prefix_and_flagged() -> None:
    record = Consumed(b"x" * 1_000_000, headers=[("traceparent", b"00-ab-cd-01")])
    letter = dead_letter(record, PRODUCER, reason="oversized", detail="d" * 20_000)
    key, headers, value = original(letter)
    assert letter.truncated
    assert letter.original_value_bytes == 1_000_000
    assert (key, headers) == (record.key, record.headers), "key and headers come first"
    assert value == b"x" * len(value)
    assert len(key or b"") + sum(len(n) + len(v) for n, v in headers) + len(value) == KEPT_BYTES
    assert len(letter.detail) == 10_000
    assert len(encode(letter)) < BROKER_LIMIT // 2


def test_huge_keys_and_headers_count_against_the_same_bound() -> None:
    record = Consumed(b"{}", key=b"k" * 300_000, headers=[("h", b"v" * 10), ("h2", None)], offset=0)
    letter = dead_letter(record, PRODUCER, reason="undecodable", detail="")
    key, headers, value = original(letter)
    assert letter.truncated
    assert len(key or b"") == KEPT_BYTES
    assert headers == [("", b""), ("", b"")]
    assert value == b""
    assert len(encode(letter)) < BROKER_LIMIT // 2


def test_the_worker_and_the_orchestrator_build_the_same_letter() -> None:
    big = Consumed(b"y" * 600_000, topic="workflows.commands")
    error = DecodeError("undecodable", "not JSON")
    from_orchestrator = deadlettering.dead_letter(big, error, PRODUCER)
    from_worker = failing.dead_letter(big, PRODUCER, reason=error.reason, detail=str(error))
    keep = {"event_id", "created_at"}
    assert from_orchestrator.model_dump(exclude=keep) == from_worker.model_dump(exclude=keep)
    assert from_orchestrator.truncated, "the orchestrator's letters say they were cut too"


def test_a_letter_names_the_task_it_held() -> None:
    held = task(3, "wf-9")
    letter = dead_letter(
        Consumed(encode(held)), PRODUCER, reason="exhausted", detail="boom", task=held
    )
    assert (letter.workflow_id, letter.step_id, letter.capability, letter.attempt) == (
        "wf-9",
        "step-3",
        "probe",
        1,
    )
    assert decode(base64.b64decode(letter.original_value), type(held)).event_id == held.event_id
