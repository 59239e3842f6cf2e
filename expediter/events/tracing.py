"""W3C trace context (``traceparent``) in Kafka headers.

Every record carries a ``traceparent`` header. A consumer continues the trace of the record it
handles: same trace id, new span id, the sampled flag kept. Called by every producer in the
runtime (worker, orchestrator, CLI). See https://www.w3.org/TR/trace-context/.
"""

from __future__ import annotations

import random
import re
import secrets
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["TRACEPARENT", "TraceParent", "continue_trace", "trace_from_headers"]

TRACEPARENT = "traceparent"
_PATTERN = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16

Headers = Sequence[tuple[str, bytes]]


class TraceParent(NamedTuple):
    """One ``traceparent``: a tuple, since one is built per record on a worker's hot path."""

    trace_id: str
    span_id: str
    flags: str = "01"

    @classmethod
    def new(cls) -> TraceParent:
        return cls(trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8))

    @classmethod
    def parse(cls, value: str | bytes) -> TraceParent | None:
        """The parsed header, or None when it is malformed (the spec says: start a new trace)."""
        if isinstance(value, str):
            try:
                value = value.encode("ascii")
            except UnicodeEncodeError:
                return None
        ids = _ids(value)
        return None if ids is None else cls(ids[0].decode(), ids[1].decode(), ids[2].decode())

    def child(self) -> TraceParent:
        return TraceParent(self.trace_id, _new_span(), self.flags)

    def header(self) -> tuple[str, bytes]:
        return (TRACEPARENT, f"00-{self.trace_id}-{self.span_id}-{self.flags}".encode())


def trace_from_headers(headers: Headers | None) -> TraceParent | None:
    value = _header(headers)
    return None if value is None else TraceParent.parse(value)


def continue_trace(headers: Headers | None) -> TraceParent:
    """A child of the incoming record's trace, or a new trace when it carries none.

    The same as ``trace_from_headers(headers).child()`` without the parent in between: a
    worker calls it once per record.
    """
    value = _header(headers)
    ids = _ids(value) if isinstance(value, bytes) else None
    if ids is None:
        return TraceParent.new()
    return TraceParent(ids[0].decode(), _new_span(), ids[2].decode())


def _header(headers: Headers | None) -> bytes | None:
    for name, value in headers or ():
        if name == TRACEPARENT or name.lower() == TRACEPARENT:
            return value
    return None


def _ids(value: bytes) -> tuple[bytes, bytes, bytes] | None:
    """Trace id, span id and flags of a well-formed header, else None."""
    # Headers as this runtime writes them match at once; others are tidied first.
    match = _PATTERN.fullmatch(value) or _PATTERN.fullmatch(value.strip().lower())
    if match is None or match[1] == _ZERO_TRACE or match[2] == _ZERO_SPAN:
        return None
    return match[1], match[2], match[3]


def _new_span() -> str:
    # A span id needs to be unique, not secret: random's generator spares the os.urandom
    # system call that secrets makes, once per record on a worker's hot path. Never zero.
    return f"{random.getrandbits(64) or 1:016x}"
