"""How a worker's log lines look: one JSON object per line for log shippers, or plain text.

:func:`configure_logging` installs one handler on the root logger, writing to stderr. Fields
passed with ``extra=`` (capability, workflow_id, task_id, trace_id, ...) appear in both formats,
so a line can be traced to its task and its trace::

    log.info("task done", extra={"capability": "soil-analysis", "task_id": str(task.event_id)})

Called by the worker at start-up (``WorkerSettings.json_logs`` picks the format).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from expediter.errors import ConfigurationError

__all__ = ["JsonFormatter", "PlainFormatter", "configure_logging", "extra_fields"]

_HANDLER_NAME = "expediter"

# Whatever a LogRecord carries on its own; anything else on it came from ``extra=``. Taken from
# a live record rather than listed, so new attributes (taskName in 3.12) are never mistaken.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a call added with ``extra=``, in the order given."""
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: timestamp (ISO-8601, UTC), level, logger, message, the
    ``extra`` fields, and ``exc_info`` / ``stack_info`` as formatted text when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        # Extras never overwrite the four fields above: a shipper relies on them.
        for key, value in extra_fields(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        # default=str: a UUID or a datetime in extra= must not cost the log line.
        return json.dumps(entry, default=str, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """``2025-01-02T03:04:05.678Z INFO    expediter.worker: message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = " ".join(f"{k}={v}" for k, v in extra_fields(record).items())
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


def configure_logging(*, json_logs: bool, level: str = "INFO") -> None:
    """Send the root logger's records at ``level`` and above to stderr, as JSON or plain text.

    Idempotent: a second call replaces the handler the first installed instead of adding
    another, so the format can be switched and lines are never doubled. Handlers installed by
    others (pytest's capture, say) are left alone.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigurationError(
            f"unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if json_logs else PlainFormatter())
    root.addHandler(handler)
    root.setLevel(numeric)
