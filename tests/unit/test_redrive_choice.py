"""Which dead letters `expediter dlq redrive` will act on, decided before anything is published."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from expediter.errors import ConfigurationError
from expediter.events import DeadLetter, Producer
from expediter.replaying.deadletters import Letter, choose

PRODUCER = Producer(name="soil-analyzer", version="1")


def letter(offset: int, *, truncated: bool) -> Letter:
    value = b'{"type": "task", "input": {"blob": "' + b"x" * 100
    dead = DeadLetter(
        producer=PRODUCER,
        reason="oversized",
        detail="800000 bytes > max_record_bytes",
        source_topic="tasks.soil-analysis",
        source_partition=0,
        source_offset=offset,
        original_value=base64.b64encode(value).decode(),
        truncated=truncated,
        original_value_bytes=800_000 if truncated else len(value),
    )
    return Letter("dlq.soil-analysis", 0, offset, datetime.now(UTC), {}, dead)


def test_a_truncated_dead_letter_is_refused_naming_it_and_the_way_out() -> None:
    letters = [letter(0, truncated=False), letter(1, truncated=True)]
    with pytest.raises(ConfigurationError) as refused:
        choose(letters, "dlq.soil-analysis", everything=True)
    message = str(refused.value)
    assert "dlq.soil-analysis/0/1" in message
    assert "dlq.soil-analysis/0/0" not in message
    assert "only a prefix" in message
    assert "re-produce the original" in message


def test_whole_dead_letters_are_chosen() -> None:
    letters = [letter(0, truncated=False), letter(1, truncated=False)]
    assert choose(letters, "dlq.soil-analysis", everything=True) == letters
