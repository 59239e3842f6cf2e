"""Event contracts: the pydantic models every Kafka record follows, and their JSON coding.

The bottom layer of the runtime that knows about Kafka data: it imports nothing of the runtime
but ``errors``. Called by messaging, the worker, the orchestrator and the CLI.
"""

from expediter.events.approvals import ApprovalDecision, ApprovalRequest
from expediter.events.coding import MAX_EVENT_BYTES, decode, encode
from expediter.events.envelope import SCHEMA_MAJOR, SCHEMA_VERSION, Event, Producer, StepEvent
from expediter.events.kinds import (
    AgentCard,
    AgentResources,
    DeadLetter,
    DeadLetterReason,
    EngineFailure,
    FallbackReason,
    ReasoningCall,
    ResultEvent,
    TaskError,
    TaskEvent,
    TokenUsage,
    WorkflowCommand,
    WorkflowEvent,
    WorkflowStatus,
)
from expediter.events.records import (
    DLQ_OFFSET_HEADER,
    DLQ_PARTITION_HEADER,
    DLQ_REASON_HEADER,
    DLQ_TOPIC_HEADER,
    EVENT_TYPE_HEADER,
    SCHEMA_VERSION_HEADER,
    OutgoingRecord,
    record_key,
    to_record,
)
from expediter.events.templating import ResultTemplate
from expediter.events.tracing import TRACEPARENT, TraceParent, continue_trace, trace_from_headers

__all__ = [
    "DLQ_OFFSET_HEADER",
    "DLQ_PARTITION_HEADER",
    "DLQ_REASON_HEADER",
    "DLQ_TOPIC_HEADER",
    "EVENT_TYPE_HEADER",
    "MAX_EVENT_BYTES",
    "SCHEMA_MAJOR",
    "SCHEMA_VERSION",
    "SCHEMA_VERSION_HEADER",
    "TRACEPARENT",
    "AgentCard",
    "AgentResources",
    "ApprovalDecision",
    "ApprovalRequest",
    "DeadLetter",
    "DeadLetterReason",
    "EngineFailure",
    "Event",
    "FallbackReason",
    "OutgoingRecord",
    "Producer",
    "ReasoningCall",
    "ResultEvent",
    "ResultTemplate",
    "StepEvent",
    "TaskError",
    "TaskEvent",
    "TokenUsage",
    "TraceParent",
    "WorkflowCommand",
    "WorkflowEvent",
    "WorkflowStatus",
    "continue_trace",
    "decode",
    "encode",
    "record_key",
    "to_record",
    "trace_from_headers",
]
