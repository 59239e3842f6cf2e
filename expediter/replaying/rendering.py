"""How a replayed record looks: one JSON line for scripts, or one row of a readable timeline.

A JSON line keeps everything a record has (topic, partition, offset, timestamp, key, headers,
the event type and the value as JSON), so that ``jq`` can filter it. A value that is not JSON
(a poison record) comes as ``value_base64``. :func:`atomic_output` writes a file whole or not at
all: a replay that fails half way leaves no half-written file behind.

Called by the replay command (expediter.cli.replay), the trace and dlq tools and the bench.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Any, TextIO

from pydantic_core import from_json

from expediter.errors import ConfigurationError
from expediter.events import EVENT_TYPE_HEADER
from expediter.messaging.partitionreading import Record
from expediter.replaying.times import from_ms, iso

__all__ = [
    "Row",
    "atomic_output",
    "check_writable",
    "headers_of",
    "json_line",
    "parse_value",
    "record_type",
    "row",
    "summary",
]

_SUMMARY_CHARS = 160


def headers_of(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """Header values as text; a value that is not UTF-8 comes as ``base64:<...>``."""
    found: dict[str, str] = {}
    for name, value in headers or ():
        try:
            found[name] = value.decode()
        except UnicodeDecodeError:
            found[name] = "base64:" + base64.b64encode(value).decode("ascii")
    return found


def parse_value(value: bytes | None) -> Any:
    """The value as JSON data; None for a tombstone or a value that is not JSON."""
    if value is None:
        return None
    try:
        # pydantic-core's parser: about three times as fast as json.loads, and strict (no NaN).
        return from_json(value, allow_inf_nan=False)
    except ValueError:
        return None


def record_type(headers: Mapping[str, str], document: Any, value: bytes | None) -> str:
    """``task``, ``result``, ``dead-letter``, ``workflow``...: the type header, else the value's
    ``type``; ``tombstone`` or ``record`` (not an event) otherwise."""
    kind = headers.get(EVENT_TYPE_HEADER)
    if kind:
        return kind
    if isinstance(document, dict) and isinstance(document.get("type"), str):
        return str(document["type"])
    return "tombstone" if value is None else "record"


def _key_fields(key: bytes | None) -> str:
    if key is None:
        return '"key": null'
    try:
        return '"key": ' + _quote(key.decode())
    except UnicodeDecodeError:
        return '"key": null, "key_base64": "' + base64.b64encode(key).decode("ascii") + '"'


@functools.lru_cache(maxsize=4096)
def _quoted_time(ms: int) -> str:
    # Records of one producer batch share their millisecond: formatting each once is enough.
    return '"' + iso(from_ms(ms)) + '"'


@functools.lru_cache(maxsize=1024)
def _quoted_name(name: str) -> str:
    return _quote(name)


def json_line(record: Record) -> str:
    """One line of JSON for ``record``, without the trailing newline.

    Written by hand rather than through ``json.dumps``: replaying is mostly this function, and
    the value, once parsed to check that it is JSON, is copied as it is instead of re-encoded.
    """
    value: bytes | None = record.value
    text: str | None = None
    document: Any = None
    if value is not None:
        try:
            text = value.decode()
            document = from_json(value, allow_inf_nan=False)
        except ValueError:  # UnicodeDecodeError included
            text = None
    fields = []
    kind: str | None = None
    for name, raw in record.headers or ():
        try:
            decoded = raw.decode()
        except UnicodeDecodeError:
            decoded = "base64:" + base64.b64encode(raw).decode("ascii")
        if name == EVENT_TYPE_HEADER:
            kind = decoded
        fields.append(f"{_quoted_name(name)}: {_quote(decoded)}")
    if not kind:
        kind = record_type({}, document, value)
    head = (
        f'{{"topic": {_quoted_name(record.topic)}, "partition": {record.partition}, '
        f'"offset": {record.offset}, "timestamp": {_quoted_time(record.timestamp)}, '
        f"{_key_fields(record.key)}, "
        f'"headers": {{{", ".join(fields)}}}, '
        f'"type": {_quoted_name(kind)}, '
    )
    if value is None:
        return head + '"value": null}'
    if text is None:
        return head + '"value": null, "value_base64": "' + base64.b64encode(value).decode() + '"}'
    if "\n" in text or "\r" in text:
        # Pretty-printed JSON would break the one-record-a-line contract.
        return head + '"value": ' + json.dumps(document) + "}"
    # The value parsed as JSON: its own text is a valid JSON value, and copying it is cheaper
    # than writing it again.
    return head + '"value": ' + text.strip() + "}"


@dataclass(frozen=True)
class Row:
    """One line of a readable timeline."""

    at: str
    where: str
    key: str
    type: str
    summary: str


def row(record: Record) -> Row:
    headers = headers_of(record.headers)
    document = parse_value(record.value)
    kind = record_type(headers, document, record.value)
    key = "" if record.key is None else record.key.decode(errors="replace")
    return Row(
        at=iso(from_ms(record.timestamp)),
        where=f"{record.topic}/{record.partition}@{record.offset}",
        key=key,
        type=kind,
        summary=summary(kind, document, record.value),
    )


def summary(kind: str, document: Any, value: bytes | None = None) -> str:
    """What a person wants to see of an event on one line."""
    if not isinstance(document, dict):
        if value is None:
            return "(tombstone)"
        if document is None:
            return f"(not JSON, {len(value)} bytes)"
        return _short(json.dumps(document))
    get = document.get
    step = f"step {get('step_id')}" if get("step_id") else ""
    if kind == "task":
        text = f"{get('capability')} {step} attempt {get('attempt', 1)}: {_compact(get('input'))}"
    elif kind == "result":
        outcome = get("output") if get("status") == "succeeded" else get("error")
        text = (
            f"{get('status')} {get('capability')} {step} attempt {get('attempt', 1)} "
            f"({get('duration_ms', 0)} ms){_engines(get('reasoning'))}: {_compact(outcome)}"
        )
    elif kind == "dead-letter":
        text = (
            f"{get('reason')} from {get('source_topic')}/{get('source_partition')}@"
            f"{get('source_offset')} {step}: {get('detail')}"
        )
    elif kind == "workflow":
        text = f"{get('workflow')} {get('status')} {step} {_compact(get('detail') or '')}"
    elif kind == "agent-card":
        text = f"{get('capability')} {get('name')} {get('version')} on {get('instance')}"
    else:
        text = _compact(document)
    return _short(" ".join(text.split()))


def _engines(calls: Any) -> str:
    """`` via local/gemma (fallback from hosted: timeout)`` for a result's reasoning calls."""
    if not isinstance(calls, list) or not calls:
        return ""
    parts = []
    for call in calls:
        if not isinstance(call, dict):
            continue
        engine = call.get("engine")
        text = f"{engine}/{call.get('model')}" if engine else "no engine"
        failures = [f for f in call.get("failures") or () if isinstance(f, dict)]
        if failures:
            why = ", ".join(f"{f.get('engine')}: {f.get('reason')}" for f in failures)
            text += f" (fallback from {why})" if engine else f" ({why})"
        parts.append(text)
    return " via " + "; ".join(parts) if parts else ""


def _compact(data: Any) -> str:
    if data is None or data == "":
        return ""
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def _short(text: str) -> str:
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"


def check_writable(path: Path) -> None:
    """Refuse an output file whose folder is missing before reading anything."""
    if not path.parent.is_dir():
        raise ConfigurationError(
            f"--output {path}: the folder {path.parent} does not exist; create it or pick "
            "another path"
        )
    if path.is_dir():
        raise ConfigurationError(f"--output {path} is a folder; give a file name")


@contextmanager
def atomic_output(path: Path) -> Iterator[TextIO]:
    """A file at ``path`` that appears only when the block finishes; on an error, none does
    (and a file that was there stays as it was)."""
    check_writable(path)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with partial.open("w", encoding="utf-8") as out:
            yield out
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
