"""``expediter watch``: lag, KEDA's metric and desired vs actual replicas, per capability.

On a cluster (``--kubeconfig``) the metric is KEDA's own, read from the external metrics API,
and desired and actual come from the Deployment (:mod:`~.cluster`).

:mod:`~.snapshot` builds one view from offsets (the scaling engine gives metric, activity and
desired replicas); :mod:`~.refreshing` samples the broker and reads the actual replicas, from
the local supervisor's state file or from a cluster (:mod:`~.cluster`); :mod:`~.rendering` draws
it with rich. Called by the CLI (``watch``, ``demo``).
"""

from expediter.watching.cluster import (
    ClusterReader,
    KedaMetric,
    cluster_actual,
    hpa_name,
    keda_metric,
    metric_name,
    parse_quantity,
    scale_events,
)
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
    "KedaMetric",
    "Row",
    "Snapshot",
    "Watcher",
    "actual_from_supervisor",
    "cluster_actual",
    "cluster_source",
    "hpa_name",
    "keda_metric",
    "metric_name",
    "offsets_text",
    "parse_quantity",
    "refresh",
    "render",
    "scale_events",
    "supervisor_alive",
    "supervisor_source",
]
