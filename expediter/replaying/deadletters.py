"""The DLQ tool: list dead letters, show one whole, and redrive chosen ones to their source topic.

A dead letter keeps its original record whole (key, value, headers, base64) with the reason and
the origin. Redrive puts the original back on ``source_topic``, in its original partition, with:

- the attempt reset to 1 when the value is a task (other fields, unknown ones included, kept as
  they were; a value that is not a task goes back byte for byte);
- a task's deadline moved: a redrive is a new attempt at the work, so it gets a fresh deadline
  of the original length (``deadline - created_at``) from the moment of the redrive, not the
  original one that has usually passed (the worker would answer ``expired`` without running).
  ``keep_deadline`` (``--keep-deadline``) keeps the original. See
  :mod:`expediter.replaying.deadlines`; the original goes in ``expediter-original-deadline``;
- a header ``expediter-redrive-of: <dlq topic>/<partition>/<offset>`` naming the dead letter.

It is idempotent: before writing, it reads the source partitions from the time of the earliest
chosen dead letter and skips every letter whose redrive header is already there (and says
where). Everything is checked before anything is written, and the records go out in one Kafka
transaction, so bad input or a crash writes nothing. The transactional id is fixed per DLQ topic,
so a second redrive of the same DLQ fences the first: two of them cannot both publish one letter.
The DLQ itself is only read: a dead letter is never removed or changed.

Called by ``expediter dlq`` (expediter.cli.dlq).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from expediter.errors import BrokerError, ConfigurationError, DecodeError
from expediter.events import DLQ_REASON_HEADER, DeadLetter, TaskEvent, decode
from expediter.messaging import client_options, connected
from expediter.messaging.partitionreading import Progress
from expediter.replaying.deadlines import (
    ORIGINAL_DEADLINE_HEADER,
    fresh_deadline,
    iso_deadline,
    with_deadline,
)
from expediter.replaying.reading import HistoryReader
from expediter.replaying.rendering import headers_of, parse_value
from expediter.replaying.selecting import Selection
from expediter.replaying.times import from_ms, iso
from expediter.settings import KafkaSettings

__all__ = [
    "REDRIVE_HEADER",
    "Letter",
    "RedriveReport",
    "Redriven",
    "Skipped",
    "choose",
    "parse_offsets",
    "parse_ref",
    "read_letters",
    "redrive",
    "ref_text",
]

REDRIVE_HEADER = "expediter-redrive-of"
"""On a redriven record: the dead letter it came from, ``<dlq topic>/<partition>/<offset>``."""

_CLOCK_MARGIN = timedelta(minutes=15)


def ref_text(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}/{offset}"


def parse_ref(text: str) -> tuple[str, int, int] | None:
    """``topic/partition/offset`` (topic names cannot hold ``/``); None when malformed."""
    parts = text.rsplit("/", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


@dataclass(frozen=True)
class Letter:
    """One record of a DLQ topic."""

    topic: str
    partition: int
    offset: int
    timestamp: datetime
    headers: dict[str, str]
    letter: DeadLetter | None
    problem: str | None = None
    """Why the record is not a readable dead letter; such a record cannot be redriven."""

    @property
    def ref(self) -> str:
        return ref_text(self.topic, self.partition, self.offset)

    @property
    def reason(self) -> str:
        if self.letter is not None:
            return self.letter.reason
        return self.headers.get(DLQ_REASON_HEADER, "unreadable")

    def original(self) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
        """(key, value, headers) of the record that was dead-lettered."""
        assert self.letter is not None
        letter = self.letter
        key = _b64(letter.original_key) if letter.original_key is not None else None
        headers = [(name, _b64(value)) for name, value in letter.original_headers]
        return key, _b64(letter.original_value), headers

    def as_dict(self, *, full: bool = False) -> dict[str, Any]:
        letter = self.letter
        document: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "ref": self.ref,
            "timestamp": iso(self.timestamp),
            "reason": self.reason,
            "problem": self.problem,
        }
        if letter is not None:
            document.update(
                detail=letter.detail if full else letter.detail[:200],
                source_topic=letter.source_topic,
                source_partition=letter.source_partition,
                source_offset=letter.source_offset,
                workflow_id=letter.workflow_id,
                step_id=letter.step_id,
                capability=letter.capability,
                attempt=letter.attempt,
            )
        if full and letter is not None:
            key, value, headers = self.original()
            parsed = parse_value(value)
            document["original"] = {
                "key": key.decode(errors="replace") if key is not None else None,
                "value": parsed,
                "value_base64": None if parsed is not None else letter.original_value,
                "headers": headers_of(headers),
            }
            document["headers"] = self.headers
        return document


async def read_letters(
    reader: HistoryReader,
    topic: str,
    *,
    progress: Callable[[str, int], Progress] | None = None,
) -> list[Letter]:
    """Every record of the DLQ ``topic``, decoded where it is a dead letter.

    ``progress(topic, offsets)`` may return a callback for the read.
    """
    plan = await reader.plan(Selection(topic=topic, allow_empty=True))
    callback = progress(topic, plan.total) if progress is not None else None
    letters = []
    async for record in reader.read(plan, progress=callback):
        headers = headers_of(record.headers)
        try:
            letter: DeadLetter | None = decode(record.value, DeadLetter)
            problem = None
        except DecodeError as exc:
            letter, problem = None, str(exc)
        letters.append(
            Letter(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                timestamp=from_ms(record.timestamp),
                headers=headers,
                letter=letter,
                problem=problem,
            )
        )
    return letters


def parse_offsets(texts: Sequence[str], topic: str, partitions: int) -> list[tuple[int, int]]:
    """``OFFSET`` (on a one-partition DLQ) or ``PARTITION:OFFSET`` to (partition, offset)."""
    chosen = []
    for text in texts:
        part, sep, off = text.strip().rpartition(":")
        try:
            partition = int(part) if sep else 0
            offset = int(off)
        except ValueError:
            raise ConfigurationError(
                f"--offset {text!r}: write OFFSET or PARTITION:OFFSET, e.g. 12 or 0:12"
            ) from None
        if not sep and partitions > 1:
            raise ConfigurationError(
                f"--offset {text!r}: {topic} has {partitions} partitions; write "
                f"PARTITION:OFFSET, e.g. 0:{offset}"
            )
        if not 0 <= partition < partitions or offset < 0:
            raise ConfigurationError(
                f"--offset {text!r}: {topic} has partitions 0..{partitions - 1} and offsets "
                "start at 0; pick one `expediter dlq list` shows"
            )
        chosen.append((partition, offset))
    return list(dict.fromkeys(chosen))


def choose(
    letters: Sequence[Letter],
    topic: str,
    *,
    offsets: Sequence[tuple[int, int]] = (),
    everything: bool = False,
    reason: str | None = None,
) -> list[Letter]:
    """The letters to act on, or ConfigurationError saying why there are none."""
    if not letters:
        raise ConfigurationError(f"the DLQ {topic} is empty: there is nothing to redrive")
    if offsets:
        at = {(letter.partition, letter.offset): letter for letter in letters}
        missing = [f"{p}:{o}" for p, o in offsets if (p, o) not in at]
        if missing:
            raise ConfigurationError(
                f"no dead letter at {', '.join(missing)} in {topic} (it holds {_held(letters)}); "
                "pick offsets that `expediter dlq list` shows"
            )
        chosen = [at[p_o] for p_o in offsets]
    elif everything or reason is not None:
        chosen = list(letters)
    else:
        raise ConfigurationError(
            "say which dead letters to redrive: --offset N (repeatable), --reason REASON, or --all"
        )
    if reason is not None:
        chosen = [letter for letter in chosen if letter.reason == reason]
        if not chosen:
            reasons = sorted({letter.reason for letter in letters})
            raise ConfigurationError(
                f"no chosen dead letter in {topic} has reason {reason!r} (reasons there: "
                f"{', '.join(reasons)}); pick one of those"
            )
    unreadable = [letter.ref for letter in chosen if letter.letter is None]
    if unreadable:
        raise ConfigurationError(
            f"{', '.join(unreadable)}: not readable dead letters, so their source is unknown "
            "and they cannot be redriven; leave them out (`expediter dlq show` prints them)"
        )
    truncated = [
        letter.ref for letter in chosen if letter.letter is not None and letter.letter.truncated
    ]
    if truncated:
        raise ConfigurationError(
            f"{', '.join(truncated)}: the dead letter keeps only a prefix of the original record "
            "(it was too big to keep whole), so redriving it would publish a broken task; leave "
            "it out, and re-produce the original from its source (`expediter dlq show` prints "
            "the source topic, partition and offset)"
        )
    return chosen


def _held(letters: Sequence[Letter]) -> str:
    spans: dict[int, tuple[int, int]] = {}
    for letter in letters:
        low, high = spans.get(letter.partition, (letter.offset, letter.offset))
        spans[letter.partition] = (min(low, letter.offset), max(high, letter.offset))
    return ", ".join(f"{p}:{low}..{p}:{high}" for p, (low, high) in sorted(spans.items()))


@dataclass(frozen=True)
class Redriven:
    letter: str
    """The dead letter, ``<dlq topic>/<partition>/<offset>``."""
    topic: str
    partition: int | None
    offset: int | None
    """Where the record went; None on a dry run."""
    attempt_reset: bool
    """True when the value is a task whose attempt was reset to 1."""
    deadline: str | None = None
    """The task's deadline as redriven (ISO-8601): fresh, or the original with keep_deadline;
    None when it has none."""


@dataclass(frozen=True)
class Skipped:
    letter: str
    earlier: str
    """Where the earlier redrive of it is, ``<topic>/<partition>/<offset>``."""


@dataclass(frozen=True)
class RedriveReport:
    dlq: str
    dry_run: bool
    redriven: tuple[Redriven, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dlq": self.dlq,
            "dry_run": self.dry_run,
            "redriven": [r.__dict__ for r in self.redriven],
            "skipped": [s.__dict__ for s in self.skipped],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class _Outgoing:
    letter: Letter
    topic: str
    partition: int | None
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    attempt_reset: bool
    deadline: datetime | None = None


def _outgoing(
    letter: Letter, partitions: int, *, now: datetime, keep_deadline: bool = False
) -> _Outgoing:
    assert letter.letter is not None
    dead = letter.letter
    key, value, headers = letter.original()
    reset = False
    deadline = None
    headers = [
        (n, data) for n, data in headers if n not in (REDRIVE_HEADER, ORIGINAL_DEADLINE_HEADER)
    ]
    try:
        task = decode(value, TaskEvent)
    except DecodeError:
        pass
    else:
        # Edit the JSON rather than re-encode the model, so fields this reader does not know
        # (a newer minor version) go back untouched.
        document = json.loads(value)
        document["attempt"] = 1
        deadline = task.deadline if keep_deadline else fresh_deadline(task, now)
        if task.deadline is not None and not keep_deadline:
            headers.append((ORIGINAL_DEADLINE_HEADER, iso_deadline(task.deadline).encode()))
            value = with_deadline(document, deadline)
        else:
            value = json.dumps(document, separators=(",", ":")).encode()
        reset = True
    headers.append((REDRIVE_HEADER, letter.ref.encode()))
    partition = dead.source_partition if dead.source_partition < partitions else None
    return _Outgoing(letter, dead.source_topic, partition, key, value, headers, reset, deadline)


async def redrive(
    settings: KafkaSettings,
    reader: HistoryReader,
    letters: Sequence[Letter],
    *,
    dlq: str,
    dry_run: bool = False,
    keep_deadline: bool = False,
) -> RedriveReport:
    """Re-publish ``letters`` (from :func:`choose`) to their sources, once each.

    A task gets a fresh deadline of its original length from now, or with ``keep_deadline``
    the original one (which the worker answers with ``expired`` once it has passed).
    """
    topics = await reader.topics()
    sources = {letter.letter.source_topic for letter in letters if letter.letter is not None}
    missing = sorted(sources - set(topics))
    if missing:
        raise ConfigurationError(
            f"the source topic(s) {', '.join(missing)} of the chosen dead letters do not exist; "
            "create them (`expediter topics apply`) before redriving"
        )
    now = datetime.now(UTC)
    outgoing = [
        _outgoing(letter, topics[letter.letter.source_topic], now=now, keep_deadline=keep_deadline)
        for letter in letters
        if letter.letter is not None
    ]
    if dry_run:
        done = await _already_redriven(reader, outgoing)
        return _report(dlq, outgoing, done, {}, dry_run=True)
    producer = AIOKafkaProducer(
        **client_options(settings),
        transactional_id=f"expediter-redrive.{dlq}",
        acks="all",
        enable_idempotence=True,
    )
    async with connected(producer, settings):
        # Started first: initialising the transactional id fences any other redrive of this
        # DLQ and aborts what it left open, so the scan below sees every committed redrive.
        done = await _already_redriven(reader, outgoing)
        todo = [out for out in outgoing if out.letter.ref not in done]
        placed: dict[str, tuple[int, int]] = {}
        if todo:
            try:
                async with producer.transaction():
                    futures = [
                        (out.letter.ref, await producer.send(
                            out.topic, out.value, key=out.key, headers=out.headers,
                            partition=out.partition,
                        ))
                        for out in todo
                    ]  # fmt: skip
                    # Delivered before the commit, inside the transaction: aiokafka commits
                    # over a batch it failed, so a failure seen only after the commit would
                    # leave part of the redrive published and the rest lost.
                    for ref, future in futures:
                        meta = await future
                        placed[ref] = (meta.partition, meta.offset)
            except KafkaError as exc:
                raise BrokerError(
                    f"redriving from {dlq} failed and nothing was published ({exc!r}); check "
                    "the broker and run the same command again"
                ) from exc
    return _report(dlq, outgoing, done, placed, dry_run=False)


def _report(
    dlq: str,
    outgoing: Sequence[_Outgoing],
    done: dict[str, str],
    placed: dict[str, tuple[int, int]],
    *,
    dry_run: bool,
) -> RedriveReport:
    redriven = tuple(
        Redriven(
            letter=out.letter.ref,
            topic=out.topic,
            partition=placed[out.letter.ref][0] if out.letter.ref in placed else out.partition,
            offset=placed[out.letter.ref][1] if out.letter.ref in placed else None,
            attempt_reset=out.attempt_reset,
            deadline=iso_deadline(out.deadline) if out.deadline is not None else None,
        )
        for out in outgoing
        if out.letter.ref not in done
    )
    skipped = tuple(
        Skipped(letter=out.letter.ref, earlier=done[out.letter.ref])
        for out in outgoing
        if out.letter.ref in done
    )
    return RedriveReport(dlq=dlq, dry_run=dry_run, redriven=redriven, skipped=skipped)


async def _already_redriven(reader: HistoryReader, outgoing: Sequence[_Outgoing]) -> dict[str, str]:
    """{dead letter ref: where its redrive is} for the letters already redriven.

    A redrive is written after its dead letter, so each source partition is read from the time
    of the earliest chosen letter on, not from its start.
    """
    wanted = {out.letter.ref for out in outgoing}
    targets: dict[str, set[int]] = {}
    for out in outgoing:
        partitions = targets.setdefault(out.topic, set())
        if out.partition is not None:
            partitions.add(out.partition)
    # The margin covers a redriving host whose clock is behind the worker's that wrote the DLQ.
    since = min(out.letter.timestamp for out in outgoing) - _CLOCK_MARGIN
    found: dict[str, str] = {}
    for topic, partitions in sorted(targets.items()):
        plan = await reader.plan(
            Selection(
                topic=topic, partitions=tuple(sorted(partitions)), since=since,
                clamp=True, allow_empty=True,
            )
        )  # fmt: skip
        async for record in reader.read(plan):
            for name, value in record.headers or ():
                if name == REDRIVE_HEADER:
                    ref = value.decode(errors="replace")
                    if ref in wanted:
                        where = ref_text(record.topic, record.partition, record.offset)
                        found.setdefault(ref, where)
    return found
