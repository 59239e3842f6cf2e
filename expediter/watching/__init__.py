"""``expediter watch``: lag, KEDA's metric and desired vs actual replicas, per capability.

:mod:`~.snapshot` builds one view from offsets (the scaling engine gives metric, activity and
desired replicas); :mod:`~.refreshing` samples the broker and reads the actual replicas, from
the local supervisor's state file or from a cluster (:mod:`~.cluster`); :mod:`~.rendering` draws
it with rich. Called by the CLI (``watch``, ``demo``).
"""

from expediter.watching.cluster import ClusterReader, cluster_actual, hpa_name, scale_events
from expediter.watching.refreshing import (
    ActualSource,
    cluster_source,
    refresh,
    supervisor_source,
)
from expediter.watching.rendering import offsets_text, render
from expediter.watching.snapshot import (
    Actual,
    Row,
    Snapshot,
    Watcher,
    actual_from_supervisor,
    supervisor_alive,
)

__all__ = [
    "Actual",
    "ActualSource",
    "ClusterReader",
    "Row",
    "Snapshot",
    "Watcher",
    "actual_from_supervisor",
    "cluster_actual",
    "cluster_source",
    "hpa_name",
    "offsets_text",
    "refresh",
    "render",
    "scale_events",
    "supervisor_alive",
    "supervisor_source",
]
