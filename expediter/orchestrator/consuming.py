"""Faust's Kafka consumer, with its own rule for which offset of a partition may commit.

Why: the orchestrator's kill -9 test stopped committing a partition for good about one run in
three, and it came from Faust's bookkeeping around a rebalance:

- Faust resumes a newly assigned partition before it seeks it to its committed offset
  (faust-streaming#216). Records fetched in between reach the streams, and some of them are
  then cleared from the streams' buffers (or skipped, as fetched before the rebalance).
- The seek rewinds the partition, but Faust drops every record it reads again below the
  highest offset it has read, so a cleared record is never handled.
- Faust commits up to the first offset it has neither seen acked nor noted as a gap between
  the records it read (transaction markers take offsets). A record never handled is never
  acked, so the partition never commits again: its transaction (the table's changelog, the
  next tasks, the completions) is aborted when it times out, and the app is fenced.

The rule here: a partition commits up to its first record that was fetched and not yet
handled; with none, past the last record fetched. Offsets never fetched below a fetched one are
markers, since a partition is fetched in order from its committed offset. So:

- every record fetched is handed on, even one read a second time after a seek (Faust's read
  offsets are not kept, so it drops nothing and notes no gaps);
- a record counts as handled when the app's agent says so (:meth:`Consumer.handled`), in the
  generation that fetched it and with the flow running. Not Faust's acks: its pure-Python
  stream (one of its two) acks the records it skips during a rebalance as if handled.

A record fetched and then dropped before it was handled makes its partition read again from
the committed offset, in the same generation (a rebalance seeks anyway): Faust's getmany drops
the rest of a round when the flow pauses, and the records of a partition not active at that
moment; its drain loop cancels a record's delivery when the flow is suspended; its stream skips
(and acks) a record read while the flow is suspended; and only a getmany called while the flow
is still suspended seeks back. Under those, a record that waits unhandled behind handled ones for
5 s does the same. Without this, such a partition could not commit past the record, and its
transactions stayed open until the broker aborted them (the orchestrator's restart and kill -9
tests, one run in three and one in four).

A record may then be handled twice in one transaction (fetched before the seek, and again
after it). The orchestrator's handling is idempotent: a result seen before is counted as a
duplicate (:func:`~expediter.orchestrator.stepping.apply_result`), a second ``start`` is
ignored, and a stale ``expire`` does nothing.

When to commit: as soon as every record handed on has been handled (the app is idle), and at
the latest every ``broker_commit_interval`` while records keep coming (batched under load).
What the orchestrator produces becomes visible to workers and clients (read_committed) only
when its transactions commit; on Faust's fixed timer alone, a result that arrived just after a
commit waited almost a whole interval, once per stage of a workflow (about 80% of a
workflow's round trip).

It overrides private methods of faust-streaming's consumer (``getmany``,
``_wait_next_records``, ``ack``, ``_new_offset``, ``_filter_tps_with_pending_acks``,
``_commit_handler``) and turns
off its Cython stream iterator, as pinned in pyproject.toml; tests/unit/test_consuming.py
and the orchestrator's kill -9 test hold them to this rule. Called by
:func:`expediter.orchestrator.running.build_app`, through :class:`OrchestratorApp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import faust
import faust.streams as faust_streams
import mode
from faust.transport.drivers import aiokafka as faust_aiokafka

from expediter.orchestrator.delivering import Producer

# Faust's Cython stream iterator drops a record it reads while the flow is suspended (or of an
# older generation) without acking it and without the seek back to the committed offsets that
# the pure-Python one's path leads to; the record was never handled, so the partition could not
# commit past it and its transactions stayed open until the broker aborted them (the
# orchestrator's restart test, about one run in three; 0 in 7 with the Python iterator). The
# orchestrator's streams carry a few hundred records a second: the Python one is enough.
faust_streams._CStreamIterator = None  # type: ignore[attr-defined]

__all__ = ["Consumer", "OrchestratorApp"]

_STUCK_SECONDS = 5.0
"""How long a record may wait unhandled behind handled ones before its partition is read
again; far above a handling (milliseconds), far below the transaction timeout (60 s)."""


class _NoReadOffsets(dict[Any, Any]):
    """Faust's read offsets, which this consumer does not keep: each lookup answers None."""

    def __getitem__(self, key: Any) -> None:
        return None


class Consumer(faust_aiokafka.Consumer):
    """Commits a partition up to its first record fetched and not yet handled."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = _NoReadOffsets()
        self._fetched: defaultdict[Any, set[int]] = defaultdict(set)
        self._handled: defaultdict[Any, set[int]] = defaultdict(set)
        self._round: dict[Any, list[int]] = {}
        self._stuck: dict[Any, tuple[int, float]] = {}
        """Per partition, its first record fetched and not handled, and since when."""
        self._refetch: set[Any] = set()
        """Partitions with a record that was fetched and will not be handled: they are read
        again from their committed offset before the next fetch."""
        self._idle = asyncio.Event()
        """Set when every record handed on has been handled: time to commit."""

    @mode.Service.task
    async def _commit_handler(self) -> None:
        interval = self.commit_interval
        await self.sleep(interval)
        while not self.should_stop:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), interval)
            self._idle.clear()
            await self.commit()

    def _all_handled(self) -> bool:
        handled = self._handled
        return all(fetched <= handled[tp] for tp, fetched in self._fetched.items())

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        records, active = await super()._wait_next_records(timeout)
        # What Kafka gave this round, in order per partition: getmany compares it with what it
        # handed on.
        self._round = {tp: [r.offset for r in batch] for tp, batch in (records or {}).items()}
        return records, active

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        self._read_again()
        fetched = self._fetched
        acking = self.app.topics.acks_enabled_for  # changelogs are read, never committed
        handed: dict[Any, int] = {}
        generation = self.app.consumer_generation_id
        message: Any = None
        try:
            async for tp, message in super().getmany(timeout):
                if acking(message.topic):
                    fetched[tp].add(message.offset)
                handed[tp] = message.offset
                yield tp, message
                self._check_delivered(message)
                message = None
        finally:
            if message is not None:
                self._check_delivered(message)
            self._check_round(handed, generation)

    def _check_delivered(self, message: Any) -> None:
        # Back from the yield, Faust's drain loop has passed the record to the streams, unless a
        # flow suspension cancelled that first: then no stream holds it (refcount 0, not acked).
        if message.refcount == 0 and not message.acked:
            self._dropped(message.tp, message.generation_id)

    def _check_round(self, handed: dict[Any, int], generation: int) -> None:
        # Faust's getmany drops the rest of a round once the flow pauses, and the records of a
        # partition not active at that moment; the position is past them all the same.
        round_, self._round = self._round, {}
        for tp, offsets in round_.items():
            last = handed.get(tp)
            if offsets and (last is None or offsets[-1] > last):
                self._dropped(tp, generation)

    def _dropped(self, tp: Any, generation: int) -> None:
        """A record of ``tp`` was fetched and will not be handled: read ``tp`` again."""
        # Another generation: the rebalance seeks every partition to its committed offset.
        if generation == self.app.consumer_generation_id and self.app.topics.acks_enabled_for(
            tp.topic
        ):
            self._refetch.add(tp)

    def _read_again(self) -> None:
        """Seek the partitions with a dropped record back to their committed offsets.

        The committed offset, not the dropped record's: it is never past anything not yet
        handled, so it is safe whatever else sought meanwhile (recovery, a rebalance), and what
        is read twice is handled idempotently (see the module docstring).
        """
        refetch, self._refetch = self._refetch, set()
        if not refetch:
            return
        assigned = self.assignment()
        for tp in refetch:
            if tp not in assigned:
                continue
            committed = self._committed_offset[tp]
            fetched = self._fetched[tp]
            start = committed if committed is not None else min(fetched, default=None)
            if start is not None:
                self._thread.seek(tp, start)

    def handled(self, message: Any) -> None:
        """Called by the app's agents once a record's handling has returned.

        Counted only in the generation that fetched it, with the flow running: a record handled
        across a rebalance is read again after the seek rather than trusted.
        """
        app = self.app
        if app.flow_control.is_active() and message.generation_id == app.consumer_generation_id:
            committed = self._committed_offset[message.tp]
            if committed is None or message.offset >= committed:
                self._handled[message.tp].add(message.offset)
                if self._all_handled():
                    self._idle.set()

    def ack(self, message: Any) -> bool:
        # Faust's stream acks what it skips (read while the flow was suspended, or of an older
        # generation) as well as what an agent handled.
        if message.offset not in self._handled[message.tp]:
            self._dropped(message.tp, message.generation_id)
        return bool(super().ack(message))

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[Any]:
        return (
            tp for tp, offsets in list(self._handled.items())
            if offsets and (topics is None or tp in topics or tp.topic in topics)
        )  # fmt: skip

    def _new_offset(self, tp: Any) -> int | None:
        # Faust's own acks are not used (its streams ack records they skip, in one of their two
        # implementations); they are cleared so that they do not pile up.
        self._acked[tp].clear()
        self._acked_index[tp].clear()
        fetched, handled = self._fetched[tp], self._handled[tp]
        committed = self._committed_offset[tp]
        if committed is not None:  # fetched before a seek to a later committed offset
            fetched.difference_update([o for o in fetched if o < committed])
        if not handled:
            return None
        waiting = fetched - handled
        if waiting:
            self._watch_stuck(tp, min(waiting), max(handled))
        offset = min(waiting) if waiting else max(fetched | handled) + 1
        fetched.difference_update([o for o in fetched if o < offset])
        handled.difference_update([o for o in handled if o < offset])
        return offset

    def _watch_stuck(self, tp: Any, first_waiting: int, last_handled: int) -> None:
        # The safety net under the paths above: a record fetched and not handled while later
        # ones were, for longer than a handling takes, was dropped somewhere in Faust. Until it
        # is handled, the partition cannot commit, and its transaction grows until the broker
        # aborts it; so the partition is read again from its committed offset.
        now = time.monotonic()
        if last_handled < first_waiting:
            self._stuck.pop(tp, None)
            return
        offset, since = self._stuck.get(tp, (first_waiting, now))
        if offset != first_waiting:
            offset, since = first_waiting, now
        if now - since >= _STUCK_SECONDS:
            self._refetch.add(tp)
            since = now
        self._stuck[tp] = (offset, since)

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        for tp in revoked:
            self._fetched.pop(tp, None)
            self._handled.pop(tp, None)
            self._refetch.discard(tp)
            self._stuck.pop(tp, None)
        await super().on_partitions_revoked(revoked)


class _Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer  # commits a transaction only once every record in it was delivered


class OrchestratorApp(faust.App):
    """A Faust app whose consumer is :class:`Consumer` and whose producer is
    :class:`~expediter.orchestrator.delivering.Producer`."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
