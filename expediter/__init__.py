"""Expediter: AI agents as event-driven consumers on Apache Kafka, autoscaled by KEDA.

The public surface is small and re-exported here; everything else is private to its module.
"""

from expediter.errors import (
    AuthenticationError,
    BrokerError,
    BrokerUnavailableError,
    ConfigurationError,
    ExpediterError,
    LocalBrokerError,
    ToolMissingError,
)
from expediter.settings import DevSettings, KafkaSettings, SaslSettings, TlsSettings

__all__ = [
    "AuthenticationError",
    "BrokerError",
    "BrokerUnavailableError",
    "ConfigurationError",
    "DevSettings",
    "ExpediterError",
    "KafkaSettings",
    "LocalBrokerError",
    "SaslSettings",
    "TlsSettings",
    "ToolMissingError",
    "__version__",
]

__version__ = "0.1.0"
