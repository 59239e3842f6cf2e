"""The envelope every event shares: identity, schema version, producer, timing.

Two layers of it: :class:`Event` is what every record carries (the registry's agent cards too);
:class:`StepEvent` adds the coordinates of one step of one workflow (workflow id, step id,
capability, attempt, deadline) and is the base of tasks, results and dead letters.

Schema versions are ``major.minor``. A reader accepts any minor version of its major (unknown
fields of a newer minor are ignored) and refuses another major with reason
``unsupported-version`` (see :mod:`expediter.events.coding`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

__all__ = [
    "SCHEMA_MAJOR",
    "SCHEMA_VERSION",
    "Event",
    "Producer",
    "SchemaVersion",
    "StepEvent",
    "utcnow",
]

SCHEMA_MAJOR = 1
SCHEMA_VERSION = f"{SCHEMA_MAJOR}.0"
"""Bump the minor for additive changes, the major for breaking ones (``schemas check`` says
which a change is)."""

UNSUPPORTED_VERSION = "unsupported_version"
"""The pydantic error type that :mod:`coding` turns into reason ``unsupported-version``."""


def _same_major(version: str) -> str:
    major = int(version.split(".", 1)[0])
    if major != SCHEMA_MAJOR:
        raise PydanticCustomError(
            UNSUPPORTED_VERSION,
            "schema version {version} has major {major}; this reader understands major {ours}",
            {"version": version, "major": major, "ours": SCHEMA_MAJOR},
        )
    return version


SchemaVersion = Annotated[
    str, Field(pattern=r"^[0-9]{1,4}\.[0-9]{1,4}$"), AfterValidator(_same_major)
]

# Ids travel in keys, topic names and headers: keep them printable and bounded.
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/@-]+$")]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Producer(BaseModel):
    """Who wrote the event: an agent, the orchestrator, or a CLI."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: Identifier
    version: Annotated[str, Field(min_length=1, max_length=64)]


class Event(BaseModel):
    """Fields every event carries."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: uuid.UUID = Field(
        default_factory=uuid.uuid4,
        description="Unique per event; consumers deduplicate on it. Producers should set it; a "
        "task without one gets a UUID 5 of its record's topic, partition and offset, the same "
        "on every redelivery.",
    )
    """Unique per event; consumers deduplicate on it. Producers should set it. A task record
    without one gets an id derived from the record's topic, partition and offset (a UUID 5), the
    same on every redelivery, so de-duplication and the tool ledger still hold."""
    schema_version: SchemaVersion = SCHEMA_VERSION
    created_at: AwareDatetime = Field(default_factory=utcnow)
    producer: Producer


class StepEvent(Event):
    """An event about one step of one workflow. Its Kafka key is ``workflow_id``."""

    workflow_id: Identifier
    step_id: Identifier
    capability: Identifier
    attempt: Annotated[int, Field(ge=1, le=1000)] = 1
    """1 for the first delivery of a step; a retry publishes the same step with attempt + 1."""
    deadline: AwareDatetime | None = None
    """When the orchestrator stops waiting for this step; None waits for ever."""
