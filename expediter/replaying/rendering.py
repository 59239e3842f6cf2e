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
from pathlib import Path
from typing import Any, TextIO

import msgspec
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
    "json_lines",
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


class _Line(msgspec.Struct, gc=False):
    """The usual line: a text key, and an event's value copied in as it is.

    ``gc=False``: a batch makes thousands, and none can be part of a cycle."""

    topic: str
    partition: int
    offset: int
    timestamp: str
    key: str | None
    headers: dict[str, str]
    type: str
    value: msgspec.Raw


_LINES = msgspec.json.Encoder()


@functools.lru_cache(maxsize=4096)
def _time(ms: int) -> str:
    # Records of one producer batch share their millisecond: formatting each once is enough.
    return iso(from_ms(ms))


def json_line(record: Record) -> str:
    """One line of JSON for ``record``, without the trailing newline (see :func:`json_lines`)."""
    return json_lines([record])[:-1]


def json_lines(records: Sequence[Record]) -> str:
    """One line of JSON for each record, each with its newline: ``replay --json``'s output.

    A value is copied into its line as it is, never parsed and written again. An event of this
    runtime (it carries the ``expediter-type`` header) is trusted to be JSON, as its writer
    encoded it: parsing it only to check was 42% of a replay's cost. What is cheap to check is
    still checked, for the whole batch at once (:func:`_plain`): UTF-8, no line break. Any
    other value is parsed once, and comes as ``value_base64`` when it is not JSON (a poison
    record). So a value that is not JSON under a forged type header is copied as it is.
    """
    plain = _plain([record.value for record in records])
    lines: list[_Line | dict[str, Any]] = []
    append, line, raw_value, time = lines.append, _Line, msgspec.Raw, _time  # per record
    for record in records:
        value = record.value
        headers: dict[str, str] = {}
        try:
            for name, raw in record.headers or ():  # a loop, not a comprehension's frame
                headers[name] = raw.decode()
            key = record.key
            text_key = None if key is None else key.decode()
        except UnicodeDecodeError:
            append(_checked(record))
            continue
        kind = headers.get(EVENT_TYPE_HEADER)
        if kind and value is not None and (plain or _plain([value])):
            append(
                line(
                    record.topic, record.partition, record.offset, time(record.timestamp),
                    text_key, headers, kind, raw_value(value),
                )
            )  # fmt: skip
        else:
            append(_checked(record))
    return _LINES.encode_lines(lines).decode()


def _plain(values: list[bytes | None]) -> bool:
    """Whether every value is UTF-8 without a line break, checked on the whole batch at once.

    Compact JSON, as :func:`expediter.events.encode` writes it, always is; a pretty-printed
    value is not, and would break the one-record-a-line contract if copied as it is.
    """
    if not values or None in values:
        return False
    joined = b"".join(values)  # type: ignore[arg-type]
    if b"\n" in joined or b"\r" in joined:
        return False
    if joined.isascii():
        return True
    try:
        joined.decode()
    except UnicodeDecodeError:
        return False
    return True


def _checked(record: Record) -> dict[str, Any]:
    """The line of a record that is not a plain event: its value parsed to check it is JSON."""
    value: bytes | None = record.value
    headers = headers_of(record.headers)
    kind = headers.get(EVENT_TYPE_HEADER)
    line: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": _time(record.timestamp),
        "key": None,
    }
    if record.key is not None:
        try:
            line["key"] = record.key.decode()
        except UnicodeDecodeError:
            line["key_base64"] = base64.b64encode(record.key).decode("ascii")
    line["headers"] = headers
    document: Any = None
    text: str | None = None
    if value is not None:
        try:
            text = value.decode()
            document = from_json(value, allow_inf_nan=False)
        except ValueError:  # UnicodeDecodeError included
            text = None
    line["type"] = kind or record_type({}, document, value)
    if value is None:
        line["value"] = None
    elif text is None:
        line["value"] = None
        line["value_base64"] = base64.b64encode(value).decode("ascii")
    elif "\n" in text or "\r" in text:
        # Pretty-printed JSON would break the one-record-a-line contract: written again.
        line["value"] = document
    else:
        # The value parsed as JSON: its own text is a valid JSON value, copied as it is.
        line["value"] = msgspec.Raw(value.strip())
    return line


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
