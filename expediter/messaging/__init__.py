"""Kafka I/O: connecting clients from settings, and probing a broker.

Called by the worker, the orchestrator, the dev tooling and the CLI. Imports only ``settings``
and ``errors`` (and, later, ``events``).
"""

from expediter.messaging.connecting import client_options, connected
from expediter.messaging.probing import ApiVersionsReply, api_versions, wait_for_broker

__all__ = ["ApiVersionsReply", "api_versions", "client_options", "connected", "wait_for_broker"]
