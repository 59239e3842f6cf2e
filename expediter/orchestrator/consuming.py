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

A record may then be handled twice in one transaction (fetched before the seek, and again
after it). The orchestrator's handling is idempotent: a result seen before is counted as a
duplicate (:func:`~expediter.orchestrator.stepping.apply_result`), a second ``start`` is
ignored, and a stale ``expire`` does nothing.

It overrides private methods of faust-streaming's consumer (``getmany``, ``_new_offset``,
``_filter_tps_with_pending_acks``), as pinned in pyproject.toml; tests/unit/test_consuming.py
and the orchestrator's kill -9 test hold them to this rule. Called by
:func:`expediter.orchestrator.running.build_app`, through :class:`OrchestratorApp`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from expediter.orchestrator.delivering import Producer

__all__ = ["Consumer", "OrchestratorApp"]


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

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        fetched = self._fetched
        acking = self.app.topics.acks_enabled_for  # changelogs are read, never committed
        async for tp, message in super().getmany(timeout):
            if acking(message.topic):
                fetched[tp].add(message.offset)
            yield tp, message

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
        offset = min(waiting) if waiting else max(fetched | handled) + 1
        fetched.difference_update([o for o in fetched if o < offset])
        handled.difference_update([o for o in handled if o < offset])
        return offset

    async def on_partitions_revoked(self, revoked: set[Any]) -> None:
        for tp in revoked:
            self._fetched.pop(tp, None)
            self._handled.pop(tp, None)
        await super().on_partitions_revoked(revoked)


class _Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer  # commits a transaction only once every record in it was delivered


class OrchestratorApp(faust.App):
    """A Faust app whose consumer is :class:`Consumer` and whose producer is
    :class:`~expediter.orchestrator.delivering.Producer`."""

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)
