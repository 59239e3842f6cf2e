"""The exceptions Expediter raises, and whether each is worth retrying.

Every error the runtime raises on purpose derives from :class:`ExpediterError` and carries
``retriable``: a caller (the worker's retry loop, a CLI, a test) can decide what to do without
matching on types. The tree::

    ExpediterError                      retriable: depends on the subclass
    ├── ConfigurationError              permanent: a setting, a file or an argument is wrong
    ├── BrokerError                     a problem talking to Kafka
    │   ├── BrokerUnavailableError      retriable: nothing answered at the bootstrap address
    │   └── AuthenticationError         permanent: the broker refused the credentials
    └── LocalBrokerError                a problem starting or stopping the dev broker
        └── ToolMissingError            permanent: Java or Maven is not installed

Who raises them: ``settings`` and the CLI raise ConfigurationError; ``messaging`` raises the
BrokerError family; ``dev`` raises LocalBrokerError.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BrokerError",
    "BrokerUnavailableError",
    "ConfigurationError",
    "ExpediterError",
    "LocalBrokerError",
    "ToolMissingError",
]


class ExpediterError(Exception):
    """The root of the tree. ``retriable`` says whether the same call may succeed later."""

    retriable: bool = False


class ConfigurationError(ExpediterError):
    """A setting, file or argument is wrong. The message names it and the fix."""


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
