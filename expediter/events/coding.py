"""Encoding events to JSON bytes and decoding bytes to validated events, in one pass.

Decoding parses and validates at once (pydantic-core reads the bytes straight into the model),
and turns every failure into :class:`~expediter.errors.DecodeError` with a reason the DLQ
records. Nothing else escapes :func:`decode`: a worker can put any record through it without a
catch-all. Called by the worker, the orchestrator, the replay tools and the CLI.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from expediter.errors import DecodeError
from expediter.events.envelope import UNSUPPORTED_VERSION

__all__ = ["MAX_EVENT_BYTES", "decode", "encode"]

MAX_EVENT_BYTES = 1_000_000
"""Kafka's default max.message.bytes is 1 MB (1048588); a larger event would be refused by the
broker anyway, so a reader refuses it early, as ``oversized``."""

EventT = TypeVar("EventT", bound=BaseModel)


def encode(event: BaseModel) -> bytes:
    """Compact JSON bytes. Datetimes are ISO 8601 with offset, UUIDs strings."""
    # The serializer's own bytes: model_dump_json would decode them to str, for us to encode.
    return event.__pydantic_serializer__.to_json(event, by_alias=True)


def decode(data: bytes | None, model: type[EventT], *, max_bytes: int = MAX_EVENT_BYTES) -> EventT:
    """Parse and validate ``data`` as ``model``, or raise :class:`DecodeError`.

    Reasons: ``oversized`` (over ``max_bytes``), ``undecodable`` (no bytes, not UTF-8 JSON),
    ``unsupported-version`` (another schema major), ``invalid`` (the schema refuses it).
    """
    if data is None:
        raise DecodeError("undecodable", "the record has no value (a tombstone?)")
    if len(data) > max_bytes:
        raise DecodeError("oversized", f"{len(data)} bytes is over the limit of {max_bytes}")
    try:
        return model.__pydantic_validator__.validate_json(data)  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise _classify(exc) from None
    except (ValueError, RecursionError) as exc:  # defensive: pydantic-core wraps nearly all
        raise DecodeError("undecodable", str(exc)[:500]) from None


def _classify(exc: ValidationError) -> DecodeError:
    errors = exc.errors(include_url=False, include_input=False)
    for error in errors:
        if error["type"] == UNSUPPORTED_VERSION:
            return DecodeError("unsupported-version", error["msg"])
    if any(error["type"] in ("json_invalid", "json_type") for error in errors):
        return DecodeError("undecodable", _summary(errors))
    return DecodeError("invalid", _summary(errors))


def _summary(errors: list[Any], limit: int = 5) -> str:
    parts = [
        f"{'.'.join(str(p) for p in error['loc']) or '<root>'}: {error['msg']}"
        for error in errors[:limit]
    ]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "; ".join(parts) + more
