"""How an event becomes a Kafka record: its key, its value and its headers.

The key decides the partition, so every event of one workflow lands in one partition, in order,
co-partitioned with the orchestrator's workflow table: the key is the workflow id. Agent cards
are keyed ``<capability>/<instance>`` (one registry entry per instance, compacted), and a dead
letter keeps its original record's key. Headers carry the W3C trace context and the event's
type and schema version, so that tools can route and filter without decoding the value.
Called by every producer in the runtime.
"""

from __future__ import annotations

import base64
import functools
from typing import NamedTuple

from pydantic import BaseModel

from expediter.events.coding import encode
from expediter.events.kinds import AgentCard, DeadLetter
from expediter.events.tracing import TraceParent

__all__ = [
    "EVENT_TYPE_HEADER",
    "SCHEMA_VERSION_HEADER",
    "OutgoingRecord",
    "event_headers",
    "record_key",
    "to_record",
]

EVENT_TYPE_HEADER = "expediter-type"
SCHEMA_VERSION_HEADER = "expediter-schema-version"
DLQ_REASON_HEADER = "expediter-dlq-reason"
DLQ_TOPIC_HEADER = "expediter-dlq-source-topic"
DLQ_PARTITION_HEADER = "expediter-dlq-source-partition"
DLQ_OFFSET_HEADER = "expediter-dlq-source-offset"
"""A dead letter's reason and origin travel in headers too, so that tools filter without
decoding the value."""


class OutgoingRecord(NamedTuple):
    """Arguments for ``AIOKafkaProducer.send(topic, value, key=..., headers=...)``.

    A tuple rather than a frozen dataclass: a worker builds one per task, and a frozen
    dataclass's ``__init__`` costs several times more.
    """

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


def record_key(event: BaseModel) -> bytes | None:
    if isinstance(event, AgentCard):
        return f"{event.capability}/{event.instance}".encode()
    if isinstance(event, DeadLetter):
        return base64.b64decode(event.original_key) if event.original_key else None
    workflow_id = getattr(event, "workflow_id", None)
    return workflow_id.encode() if isinstance(workflow_id, str) else None


@functools.lru_cache(maxsize=64)
def event_headers(event_type: str, schema_version: str) -> tuple[tuple[str, bytes], ...]:
    """The headers that name an event's type and schema version (all but the trace)."""
    return (
        (EVENT_TYPE_HEADER, event_type.encode()),
        (SCHEMA_VERSION_HEADER, schema_version.encode()),
    )


def to_record(event: BaseModel, *, trace: TraceParent | None = None) -> OutgoingRecord:
    """The record for ``event``; ``trace`` continues a trace (a new one starts when None)."""
    headers = [
        (trace or TraceParent.new()).header(),
        *event_headers(str(getattr(event, "type", type(event).__name__)),
                       str(getattr(event, "schema_version", ""))),
    ]  # fmt: skip
    if isinstance(event, DeadLetter):
        headers += [
            (DLQ_REASON_HEADER, event.reason.encode()),
            (DLQ_TOPIC_HEADER, event.source_topic.encode()),
            (DLQ_PARTITION_HEADER, str(event.source_partition).encode()),
            (DLQ_OFFSET_HEADER, str(event.source_offset).encode()),
        ]
    return OutgoingRecord(key=record_key(event), value=encode(event), headers=headers)
