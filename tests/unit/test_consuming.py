"""The orchestrator's committable offsets (expediter.orchestrator.consuming).

A partition commits up to its first record fetched and not yet handled. The cases are the ones
Faust's own rule gets wrong around a rebalance: offsets taken by transaction markers, records
cleared from a stream's buffer before they were handled, and records handled while the flow
was stopped or in the generation before.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from expediter.orchestrator import consuming
from expediter.orchestrator.consuming import Consumer

RESULTS = TP("results", 5)


class App(SimpleNamespace):
    """What the rule reads of a Faust app: the flow and the consumer generation."""

    def __init__(self) -> None:
        super().__init__(consumer_generation_id=1, active=True)
        self.flow_control = SimpleNamespace(is_active=lambda: self.active)


def consumer(committed: int | None) -> Any:
    # Only the bookkeeping the rule touches: no broker, no Faust app.
    bare: Any = object.__new__(Consumer)
    bare.app = App()
    bare._fetched, bare._handled = defaultdict(set), defaultdict(set)
    bare._acked, bare._acked_index = defaultdict(list), defaultdict(set)
    bare._committed_offset = defaultdict(lambda: None, {RESULTS: committed})
    bare._stuck, bare._refetch = {}, set()
    bare._idle = asyncio.Event()
    return bare


def fetch(bare: Any, *offsets: int) -> list[ConsumerMessage]:
    bare._fetched[RESULTS].update(offsets)
    generation = bare.app.consumer_generation_id
    fields = ("results", 5)
    return [
        ConsumerMessage(
            *fields, o, 0.0, 0, [], b"k", b"v", None, 1, 1, RESULTS, generation_id=generation
        )
        for o in offsets
    ]


def handle(bare: Any, messages: list[ConsumerMessage]) -> None:
    for message in messages:
        bare.handled(message)


def committable(bare: Any) -> dict[TP, int]:
    offsets: dict[TP, int] = bare._filter_committable_offsets([RESULTS])
    bare._committed_offset.update(offsets)
    return offsets


def test_commits_past_transaction_markers() -> None:
    # Committed at 96; 96-98 hold transaction markers (never fetched); 99-101 were handled.
    bare = consumer(committed=96)
    handle(bare, fetch(bare, 99, 100, 101))
    assert committable(bare) == {RESULTS: 102}
    assert committable(bare) == {}, "nothing more was handled"


def test_a_record_fetched_and_not_handled_holds_the_partition_back() -> None:
    bare = consumer(committed=10)
    messages = fetch(bare, 10, 11, 12, 13, 14)
    handle(bare, [m for m in messages if m.offset != 12])  # 12 was cleared from a buffer
    assert committable(bare) == {RESULTS: 12}
    handle(bare, fetch(bare, 12, 13, 14))  # read again after the seek: handled, twice for some
    assert committable(bare) == {RESULTS: 15}


def test_records_skipped_around_a_rebalance_do_not_count() -> None:
    bare = consumer(committed=20)
    skipped_while_paused = fetch(bare, 20, 21)
    bare.app.active = False
    handle(bare, skipped_while_paused)
    bare.app.active = True
    assert committable(bare) == {}
    old_generation = fetch(bare, 22)
    bare.app.consumer_generation_id = 2
    handle(bare, old_generation)
    assert committable(bare) == {}
    handle(bare, fetch(bare, 20, 21, 22))  # the seek to the committed offset reads them again
    assert committable(bare) == {RESULTS: 23}


class Thread:
    """The consumer thread's seek, recorded (aiokafka's own only moves the position)."""

    def __init__(self) -> None:
        self.seeks: list[tuple[TP, int]] = []

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


def seeking(bare: Any) -> Thread:
    bare._thread = Thread()
    bare._refetch, bare._round = set(), {}
    bare.assignment = lambda: {RESULTS}
    bare._unacked_messages, bare._n_acked, bare._waiting_for_ack = set(), 0, None
    bare.app.topics = SimpleNamespace(acks_enabled_for=lambda topic: True)
    return bare._thread  # type: ignore[no-any-return]


def test_a_record_the_stream_skipped_is_read_again_from_the_committed_offset() -> None:
    bare = consumer(committed=10)
    thread = seeking(bare)
    handled_one, skipped_one, _ = fetch(bare, 10, 11, 12)
    handle(bare, [handled_one])
    assert bare.ack(handled_one)
    bare._read_again()
    assert thread.seeks == [], "a handled record is not read again"
    bare.ack(skipped_one)  # what the stream does with a record it skips
    bare._read_again()
    assert thread.seeks == [(RESULTS, 10)]
    assert committable(bare) == {RESULTS: 11}, "nothing past the skipped record commits"
    handle(bare, fetch(bare, 10, 11, 12))  # read again: handled (10 twice, idempotently)
    assert committable(bare) == {RESULTS: 13}


def test_records_fetched_and_not_handed_on_make_the_partition_read_again() -> None:
    bare = consumer(committed=10)
    thread = seeking(bare)
    bare._round = {RESULTS: [10, 11, 12]}
    bare._check_round({RESULTS: 10}, bare.app.consumer_generation_id)
    bare._read_again()
    assert thread.seeks == [(RESULTS, 10)]


def test_a_round_handed_on_whole_reads_nothing_again() -> None:
    bare = consumer(committed=10)
    thread = seeking(bare)
    bare._round = {RESULTS: [10, 11]}
    bare._check_round({RESULTS: 11}, bare.app.consumer_generation_id)
    bare._read_again()
    assert thread.seeks == []


def test_nothing_is_read_again_across_a_rebalance() -> None:
    bare = consumer(committed=10)
    thread = seeking(bare)
    bare._round = {RESULTS: [10, 11]}
    generation = bare.app.consumer_generation_id
    bare.app.consumer_generation_id += 1  # the rebalance seeks to the committed offsets itself
    bare._check_round({}, generation)
    bare._read_again()
    assert thread.seeks == []


def test_a_record_left_behind_handled_ones_makes_the_partition_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(consuming.time, "monotonic", lambda: clock[0])
    bare = consumer(committed=10)
    thread = seeking(bare)
    messages = fetch(bare, 10, 11, 12)
    handle(bare, [messages[0], messages[2]])  # 11 was dropped somewhere
    assert committable(bare) == {RESULTS: 11}
    clock[0] += 1
    handle(bare, fetch(bare, 13))
    committable(bare)
    bare._read_again()
    assert thread.seeks == [], "a moment behind is normal"
    clock[0] += consuming._STUCK_SECONDS
    handle(bare, fetch(bare, 14))
    committable(bare)
    bare._read_again()
    assert thread.seeks == [(RESULTS, 11)]


def test_commits_as_soon_as_every_record_handed_on_was_handled() -> None:
    # What the orchestrator produced becomes visible only when it commits: waiting for the
    # timer while idle added most of a commit interval to every stage of a workflow.
    bare = consumer(committed=10)
    messages = fetch(bare, 10, 11, 12)
    handle(bare, messages[:2])
    assert not bare._idle.is_set()  # 12 is still on its way: batch, under load
    handle(bare, messages[2:])
    assert bare._idle.is_set()
