"""How a worker's log lines look: one JSON object per line for log shippers, or plain text.

:func:`configure_logging` installs one handler on the root logger, writing to stderr. Fields
passed with ``extra=`` (capability, workflow_id, task_id, trace_id, ...) appear in both formats,
so a line can be traced to its task and its trace::

    log.info("task done", extra={"capability": "soil-analysis", "task_id": str(task.event_id)})

The handler carries a :class:`RepeatFilter`: while the broker is away, aiokafka logs the same
warnings ("Unable connect to node", "Unable to update metadata", ...) many times a second, and a
45 s outage once wrote 12 MB. The first of each message goes through; then one summary line per
window says how often it came since (``... repeated 312 times in the last 10 s``).

Called by the worker at start-up (``WorkerSettings.json_logs`` picks the format).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from expediter.errors import ConfigurationError

__all__ = [
    "JsonFormatter",
    "PlainFormatter",
    "RepeatFilter",
    "configure_logging",
    "extra_fields",
]

_HANDLER_NAME = "expediter"
_SUMMARY = "_expediter_repeat_summary"
"""Marks a RepeatFilter's summary record, so that it passes the filter; never printed."""

# Whatever a LogRecord carries on its own; anything else on it came from ``extra=``. Taken from
# a live record rather than listed, so new attributes (taskName in 3.12) are never mistaken.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    _SUMMARY,
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


@dataclass
class _Seen:
    since: float
    """When the current window began (the clock's time)."""
    repeats: int = 0
    """Records of this message suppressed in the current window."""
    last: logging.LogRecord | None = None
    """The last one suppressed: the summary line says it."""


class RepeatFilter(logging.Filter):
    """Lets the first record of each message through, then one summary per ``window`` seconds.

    Applies to records of the loggers under ``prefixes`` (aiokafka's by default; the worker's own
    lines always pass). A message is its logger, level and format string, so a warning repeated
    for every partition is one message. A suppressed message is summarised once its window has
    passed, as soon as any record arrives: ``<the last one> ... repeated N times in the last
    10 s``, through ``sink`` (the handler's ``handle``), with the logger and level it had.
    """

    def __init__(
        self,
        window: float = 10.0,
        *,
        prefixes: tuple[str, ...] = ("aiokafka",),
        sink: Callable[[logging.LogRecord], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.window = window
        self.prefixes = prefixes
        self.sink = sink
        self._clock = clock
        self._seen: dict[tuple[str, int, str], _Seen] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SUMMARY, False):
            return True
        now = self._clock()
        summaries = self._sweep(now) if now >= self._next_sweep else []
        passes = True
        if record.name.startswith(self.prefixes):
            key = (record.name, record.levelno, str(record.msg))
            with self._lock:
                seen = self._seen.get(key)
                if seen is None or now - seen.since >= self.window:
                    if seen is not None and seen.repeats:
                        summaries.append(self._summary(seen, now))
                    self._seen[key] = _Seen(since=now)
                else:
                    seen.repeats += 1
                    seen.last = record
                    passes = False
        for summary in summaries:
            if self.sink is not None:
                self.sink(summary)
        return passes

    def _sweep(self, now: float) -> list[logging.LogRecord]:
        """Summaries of the windows that have passed; forgets messages that stopped."""
        with self._lock:
            self._next_sweep = now + min(1.0, self.window)
            summaries = []
            for key, seen in list(self._seen.items()):
                if now - seen.since >= self.window:
                    if seen.repeats:
                        summaries.append(self._summary(seen, now))
                    del self._seen[key]
            return summaries

    def _summary(self, seen: _Seen, now: float) -> logging.LogRecord:
        last = seen.last
        assert last is not None
        summary = logging.makeLogRecord(vars(last))
        summary.msg = (
            f"{last.getMessage()} ... repeated {seen.repeats} "
            f"time{'s' if seen.repeats != 1 else ''} in the last {now - seen.since:.0f} s"
        )
        summary.args = None
        summary.exc_info = summary.exc_text = None
        summary.created = time.time()
        setattr(summary, _SUMMARY, True)
        return summary


def configure_logging(*, json_logs: bool, level: str = "INFO", repeat_window: float = 10.0) -> None:
    """Send the root logger's records at ``level`` and above to stderr, as JSON or plain text.

    Idempotent: a second call replaces the handler the first installed instead of adding
    another, so the format can be switched and lines are never doubled. Handlers installed by
    others (pytest's capture, say) are left alone. aiokafka's repeated messages are summarised
    once per ``repeat_window`` seconds (:class:`RepeatFilter`).
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
    handler.addFilter(RepeatFilter(repeat_window, sink=handler.handle))
    root.addHandler(handler)
    root.setLevel(numeric)
