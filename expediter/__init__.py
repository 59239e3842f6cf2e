"""Expediter: AI agents as event-driven consumers on Apache Kafka, autoscaled by KEDA.

The public surface is small and re-exported here; everything else is private to its module.
"""

from expediter.errors import (
    AuthenticationError,
    BrokerError,
    BrokerUnavailableError,
    ConfigurationError,
    DecodeError,
    ExpediterError,
    LocalBrokerError,
    SchemaCompatibilityError,
    ToolMissingError,
)
from expediter.events import (
    AgentCard,
    DeadLetter,
    Producer,
    ResultEvent,
    TaskError,
    TaskEvent,
    WorkflowEvent,
    decode,
    encode,
    to_record,
)
from expediter.settings import DevSettings, KafkaSettings, SaslSettings, TlsSettings

__all__ = [
    "AgentCard",
    "AuthenticationError",
    "BrokerError",
    "BrokerUnavailableError",
    "ConfigurationError",
    "DeadLetter",
    "DecodeError",
    "DevSettings",
    "ExpediterError",
    "KafkaSettings",
    "LocalBrokerError",
    "Producer",
    "ResultEvent",
    "SaslSettings",
    "SchemaCompatibilityError",
    "TaskError",
    "TaskEvent",
    "TlsSettings",
    "ToolMissingError",
    "WorkflowEvent",
    "__version__",
    "decode",
    "encode",
    "to_record",
]

__version__ = "0.1.0"
"""The one place the version is written: pyproject.toml reads it from here (CHANGELOG.md)."""
