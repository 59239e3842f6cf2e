"""The exceptions Expediter raises, and whether each is worth retrying.

Every error the runtime raises on purpose derives from :class:`ExpediterError` and carries
``retriable``: a caller (the worker's retry loop, a CLI, a test) can decide what to do without
matching on types. The tree::

    ExpediterError                      retriable: depends on the subclass
    ├── ConfigurationError              permanent: a setting, a file or an argument is wrong
    ├── DecodeError                     permanent: a record is not a valid event (has .reason)
    ├── SchemaCompatibilityError        permanent: a schema change breaks existing readers
    ├── TaskFailure                     raised by agent handlers and tools; has .code
    │   ├── RetriableError              retriable: retried with backoff, up to max attempts
    │   └── PermanentError              permanent: a failure result plus a DLQ record at once
    │       └── ToolError               a tool is not allowlisted, or its arguments are invalid
    ├── EngineError                     a reasoning engine failed (.retriable set per failure)
    ├── BrokerError                     a problem talking to Kafka
    │   ├── BrokerUnavailableError      retriable: nothing answered at the bootstrap address
    │   └── AuthenticationError         permanent: the broker refused the credentials
    └── LocalBrokerError                a problem starting or stopping the dev broker
        └── ToolMissingError            permanent: Java or Maven is not installed

Who raises them: agent handlers raise TaskFailure (anything else they raise counts as
retriable); ``tools`` raises ToolError; ``reasoning`` raises EngineError; ``settings`` and the CLI
raise ConfigurationError; ``events`` raises
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
    "EngineError",
    "ExpediterError",
    "LocalBrokerError",
    "PermanentError",
    "RetriableError",
    "SchemaCompatibilityError",
    "TaskFailure",
    "ToolError",
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


class TaskFailure(ExpediterError):
    """A task failed. ``code`` is a short stable word (``timeout``, ``invalid-input``) that
    ends up in the failure ResultEvent's ``error.code``."""

    def __init__(self, message: str, *, code: str = "failed") -> None:
        super().__init__(message)
        self.code = code


class RetriableError(TaskFailure):
    """The same task may succeed later: a timeout, a rate limit, a dependency down."""

    retriable = True


class PermanentError(TaskFailure):
    """The task can never succeed as given: retrying would waste the attempts."""


class ToolError(PermanentError):
    """A tool call was refused: the tool is not allowlisted, or its arguments do not validate."""

    def __init__(self, message: str, *, code: str = "tool-refused") -> None:
        super().__init__(message, code=code)


class EngineError(ExpediterError):
    """A reasoning engine failed to produce a valid output."""

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


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
