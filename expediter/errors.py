"""The exceptions Expediter raises, and whether each is worth retrying.

Every error the runtime raises on purpose derives from :class:`ExpediterError` and carries
``retriable``: a caller (the worker's retry loop, a CLI, a test) can decide what to do without
matching on types. The tree::

    ExpediterError                      retriable: depends on the subclass
    ├── ConfigurationError              permanent: a setting, a file or an argument is wrong
    ├── DecodeError                     permanent: a record is not a valid event (has .reason)
    ├── SchemaCompatibilityError        permanent: a schema change breaks existing readers
    ├── BrokerError                     a problem talking to Kafka
    │   ├── BrokerUnavailableError      retriable: nothing answered at the bootstrap address
    │   └── AuthenticationError         permanent: the broker refused the credentials
    └── LocalBrokerError                a problem starting or stopping the dev broker
        └── ToolMissingError            permanent: Java or Maven is not installed

Who raises them: ``settings`` and the CLI raise ConfigurationError; ``events`` raises
DecodeError and SchemaCompatibilityError; ``messaging`` raises the BrokerError family; ``dev``
raises LocalBrokerError.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "AuthenticationError",
    "BrokerError",
    "BrokerUnavailableError",
    "ConfigurationError",
    "DecodeError",
    "DecodeReason",
    "ExpediterError",
    "LocalBrokerError",
    "SchemaCompatibilityError",
    "ToolMissingError",
]


class ExpediterError(Exception):
    """The root of the tree. ``retriable`` says whether the same call may succeed later."""

    retriable: bool = False


class ConfigurationError(ExpediterError):
    """A setting, file or argument is wrong. The message names it and the fix."""


DecodeReason = Literal["oversized", "undecodable", "invalid", "unsupported-version"]
"""Why a record is not a valid event; the DLQ's ``reason`` header carries the same word."""


class DecodeError(ExpediterError):
    """A record could not be turned into an event. Retrying the same bytes cannot help.

    ``reason`` is one of :data:`DecodeReason`; ``detail`` says what exactly was wrong.
    """

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: DecodeReason = reason
        self.detail = detail


class SchemaCompatibilityError(ExpediterError):
    """The current schemas break readers of the schemas they are compared with.

    ``changes`` names each breaking change, one line each.
    """

    def __init__(self, changes: list[str]) -> None:
        super().__init__(
            f"{len(changes)} backward-incompatible schema change(s):\n" + "\n".join(changes)
        )
        self.changes = changes


class BrokerError(ExpediterError):
    """Talking to Kafka failed."""


class BrokerUnavailableError(BrokerError):
    """No broker answered at the bootstrap address within the timeout."""

    retriable = True


class AuthenticationError(BrokerError):
    """The broker answered but refused the credentials; retrying cannot help."""


class LocalBrokerError(ExpediterError):
    """The local development broker could not be fetched, formatted, started or stopped."""


class ToolMissingError(LocalBrokerError):
    """A program the local broker needs (java, mvn) is not on PATH."""
