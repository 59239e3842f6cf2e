"""The table's recovery, told where a transactional changelog really ends.

Faust restores the table from its changelog until it has read each partition's last offset,
which it takes as the log's end minus one. Every changelog write here is transactional
(:class:`~expediter.orchestrator.running.WorkflowTable`), so the last offset of a partition is
a transaction's commit marker, which a consumer never hands over: the last record is one
before it. Faust then sees one record missing per partition, and ends the recovery only after
two idle reads of 5 s each (its ``detect_aborted_tx``), which added 10 s to every start and
every rebalance that moved a partition, with nothing to read.

:class:`ChangelogRecovery` takes the marker into account. Where the last transaction on a
partition was aborted (a crash), its records and marker sit after the last committed record,
and Faust's own idle-read check still ends that partition's recovery, as before.

It overrides ``_build_highwaters`` of faust-streaming's ``Recovery`` (as pinned in
pyproject.toml). Used through the app's ``TableManager`` setting, by
:func:`expediter.orchestrator.running.build_app`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery

__all__ = ["ChangelogRecovery", "Tables"]


class ChangelogRecovery(Recovery):
    """Faust's recovery, with highwaters that skip the final commit marker."""

    async def _build_highwaters(
        self, consumer: Any, tps: Any, destination: Counter[Any], title: str
    ) -> None:
        await super()._build_highwaters(consumer, tps, destination, title)
        for tp, last in destination.items():
            # ``last`` is the marker's offset; a partition written once holds a record and a
            # marker (last >= 1). Anything shorter was not written transactionally: left as is.
            if last >= 1:
                destination[tp] = last - 1


class Tables(TableManager):
    """Faust's table manager, recovering with :class:`ChangelogRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = ChangelogRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
