"""Points in time as the history tools take them and print them.

``--since``/``--until`` accept ISO 8601, epoch milliseconds or a duration ago
(:func:`parse_when`); everything printed is UTC with milliseconds and a ``Z`` (:func:`iso`);
Kafka's timestamps are epoch milliseconds (:func:`to_ms`, :func:`from_ms`).

Called by the selection and planning of a read (:mod:`expediter.replaying.selecting`,
:mod:`expediter.replaying.planning`), the renderers, the trace, the DLQ tool and
``expediter replay|trace`` (expediter.cli.replay).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from expediter.errors import ConfigurationError
from expediter.messaging.catalogs import parse_duration_ms

__all__ = ["duration_text", "from_ms", "iso", "parse_when", "to_ms"]


def to_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def iso(when: datetime) -> str:
    """UTC, milliseconds, ``Z``: sortable and unambiguous in logs and JSON."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_when(text: str, *, now: datetime | None = None, option: str = "--since") -> datetime:
    """A point in time from ISO 8601 (``2025-06-01T12:00``, UTC when no offset is given), epoch
    milliseconds, or a duration ago (``90s``, ``15m``, ``2h``, ``7d``)."""
    value = text.strip()
    now = now or datetime.now(UTC)
    if value.isdigit() and len(value) >= 10:
        return from_ms(int(value))
    try:
        return now - timedelta(milliseconds=parse_duration_ms(value))
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"{option} {text!r} is not a time: write ISO 8601 (2025-06-01T12:00:00Z), epoch "
            "milliseconds, or a duration ago such as 15m, 2h or 7d"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration_text(ms: int) -> str:
    """``ms`` in the largest whole unit (``7d``, ``90m``), as a retention.ms reads to people."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
