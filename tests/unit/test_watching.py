"""``expediter watch`` without a broker: snapshots, rates, actual replicas, rendering.

The cluster path is tested on plain dicts shaped like the API server's answers; the kubernetes
client itself meets the real cluster in tests/cluster/test_watch_cluster.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.console import Console

from expediter.messaging import TopicNames
from expediter.supervising import (
    AgentState,
    LagSample,
    ScaledAgent,
    ScaleEvent,
    SupervisorState,
    read_scaled_agents,
)
from expediter.watching import (
    Actual,
    Watcher,
    actual_from_supervisor,
    cluster_actual,
    hpa_name,
    keda_metric,
    metric_name,
    parse_quantity,
    render,
    scale_events,
)

ROOT = Path(__file__).resolve().parents[2]


def soil() -> ScaledAgent:
    return next(a for a in read_scaled_agents(ROOT, TopicNames()) if a.name == "soil-analyzer")


def sample(at: float, latest: int, committed: int | None) -> LagSample:
    return LagSample("tasks.soil-analysis", "agents.soil-analysis", at, (latest,) * 6,
                     (committed,) * 6)  # fmt: skip


def test_rows_carry_offsets_lag_rates_metric_and_replicas() -> None:
    agent = soil()
    watcher = Watcher([agent])
    seen = {agent.name: Actual(2, "supervisor", 2)}
    first = watcher.observe({agent.name: sample(100.0, 10, 4)}, seen, t=0)
    (row,) = first.rows
    assert (row.capability, row.partitions, row.lag) == ("soil-analysis", 6, 36)
    assert row.in_rate is None
    assert row.out_rate is None
    assert row.metric == 36
    assert row.active
    assert row.desired == 2  # the supervisor's engine is in charge
    second = watcher.observe({agent.name: sample(102.0, 20, 10)}, seen, t=2)
    (row,) = second.rows
    assert (row.in_rate, row.out_rate) == (30.0, 18.0)  # 60 written, 36 committed in 2 s
    assert row.engine_desired >= 2
    document = json.loads(json.dumps(second.as_dict()))
    capability = document["capabilities"][0]
    assert capability["committed"] == [10] * 6
    assert capability["actual"] == {"replicas": 2, "source": "supervisor", "desired": 2}


def test_no_committed_offset_is_null_and_a_failed_read_is_a_note() -> None:
    agent = soil()
    snapshot = Watcher([agent]).observe({}, {}, errors=["soil-analyzer: no broker"], t=0)
    assert snapshot.rows == ()
    assert snapshot.errors == ("soil-analyzer: no broker",)
    row = Watcher([agent]).observe({agent.name: sample(1.0, 3, None)}, {}, t=0).rows[0]
    assert row.committed == (None,) * 6
    assert row.actual.source == "none"
    assert row.desired == row.engine_desired


def state(*, running: bool = True, pid: int | None = None, prefix: str = "") -> SupervisorState:
    s = SupervisorState(pid=pid or os.getpid(), started_at=1.0, updated_at=2.0, running=running,
                        prefix=prefix)  # fmt: skip
    s.agents.append(AgentState("soil-analyzer", "soil-analysis", "agents/soil_analyzer.py",
                               "tasks.soil-analysis", "agents.soil-analysis", 0, 6, 1, 5,
                               replicas=3, desired=4, pids=[7, 8, 9],
                               stopping_pids=[6]))  # fmt: skip
    s.record(ScaleEvent(5.0, "soil-analyzer", "soil-analysis", 0, 1, "KEDA: active"))
    s.record(ScaleEvent(6.0, "other", "other", 0, 1, "not watched"))
    return s


def test_actual_replicas_from_the_supervisor_state() -> None:
    agents = [soil()]
    actual, events, notes = actual_from_supervisor(state(), agents, "")
    assert actual["soil-analyzer"].replicas == 3
    assert actual["soil-analyzer"].desired == 4
    assert actual["soil-analyzer"].detail["stopping"] == 1
    assert [e["to"] for e in events] == [1]
    assert notes == []
    stopped, _, _ = actual_from_supervisor(state(running=False), agents, "")
    assert stopped["soil-analyzer"] == Actual(0, "supervisor (stopped)", 0)
    gone, _, notes = actual_from_supervisor(state(pid=2**22 + 12345), agents, "")
    assert gone["soil-analyzer"].replicas == 0
    assert "gone without a clean stop" in notes[0]
    other, events, notes = actual_from_supervisor(state(prefix="x."), agents, "")
    assert other["soil-analyzer"].replicas is None
    assert events == []
    assert "prefix" in notes[0]
    none, _, _ = actual_from_supervisor(None, agents, "")
    assert none["soil-analyzer"].source == "none"


# Shaped like what the API server returns (camelCase), trimmed to the fields that are read.
DEPLOYMENT = {
    "spec": {"replicas": 3},
    "status": {"replicas": 4, "readyReplicas": 2, "updatedReplicas": 4},
}
HPA = {
    "status": {"currentReplicas": 4, "desiredReplicas": 5, "lastScaleTime": "2025-01-01T10:00:00Z"}
}
SCALED_OBJECT = {"status": {
    "hpaName": "keda-hpa-soil-analyzer", "lastActiveTime": "2025-01-01T10:00:05Z",
    "conditions": [{"type": "Ready", "status": "True"}, {"type": "Active", "status": "True"},
                   {"type": "Fallback", "status": "False"}]}}  # fmt: skip


def test_cluster_status_objects_give_actual_replicas() -> None:
    actual = cluster_actual(DEPLOYMENT, HPA, SCALED_OBJECT, (40, None))
    # Desired is what KEDA and the HPA set on the Deployment; the HPA's own figure lags KEDA.
    assert (actual.replicas, actual.desired, actual.source) == (4, 3, "kubernetes")
    assert (actual.detail["hpa_desired"], actual.metric) == (5, 40)
    assert actual.detail["ready_replicas"] == 2
    assert actual.detail["active"] is True
    assert actual.detail["ready"] is True
    assert actual.detail["fallback"] is False
    assert actual.detail["last_scale_time"] == "2025-01-01T10:00:00Z"
    assert cluster_actual(DEPLOYMENT, None, None).desired == 3  # no HPA: the spec's count
    assert cluster_actual(None, HPA, SCALED_OBJECT).replicas is None
    assert hpa_name(SCALED_OBJECT, "x") == "keda-hpa-soil-analyzer"
    assert hpa_name(None, "soil-analyzer") == "keda-hpa-soil-analyzer"  # KEDA's default name


def test_keda_metric_is_read_as_the_external_metrics_api_writes_it() -> None:
    hpa = {"spec": {"metrics": [{"type": "External", "external": {
        "metric": {"name": "s0-kafka-tasks.soil-analysis"}}}]}}  # fmt: skip
    assert metric_name(hpa) == "s0-kafka-tasks.soil-analysis"
    assert metric_name({"spec": {}}) is None
    assert [parse_quantity(q) for q in ("40", "40500m", "1k", "2500m", "0")] == [40, 40.5, 1000,
                                                                             2.5, 0]  # fmt: skip
    assert keda_metric({"items": [{"metricName": "x", "value": "1200"}]}) == (1200, None)
    assert keda_metric({"items": []}) == (None, "KEDA returned no metric value")
    assert keda_metric({"items": [{"value": "12Ki"}]})[1] == "not a decimal quantity: '12Ki'"


def test_on_a_cluster_the_row_shows_kedas_metric_and_the_deployments_counts() -> None:
    agent = soil()
    pending = {"spec": {"replicas": 3}, "status": {"replicas": 3}}  # pods Pending: none ready
    seen = {agent.name: cluster_actual(pending, HPA, SCALED_OBJECT, (30, None))}
    snapshot = Watcher([agent]).observe({agent.name: sample(1.0, 12, 7)}, seen, t=0)
    row = snapshot.rows[0]
    assert (row.keda_metric, row.metric, row.desired) == (30, 30, 3)
    assert snapshot.as_dict()["capabilities"][0]["actual"]["metric"] == 30
    console = Console(width=200, record=True)
    console.print(render(snapshot))
    text = console.export_text()
    assert "3 (0 ready)" in text
    assert "metric: KEDA's, from the external metrics API" in text
    unread = {agent.name: cluster_actual(pending, HPA, SCALED_OBJECT, (None, "HTTP 500"))}
    row = Watcher([agent]).observe({agent.name: sample(1.0, 12, 7)}, unread, t=0).rows[0]
    assert row.keda_metric is None
    assert row.actual.detail["metric_error"] == "HTTP 500"


def test_scale_events_are_picked_from_kubernetes_events() -> None:
    events = [
        {"reason": "SuccessfulRescale", "message": "New size: 4; reason: external metric above "
         "target", "lastTimestamp": "2025-01-01T10:00:10Z"},
        {"reason": "Pulled", "message": "image pulled", "lastTimestamp": "2025-01-01T10:00:00Z"},
        {"reason": "KEDAScaleTargetActivated", "message": "Scaled apps/v1.Deployment from 0 to 1",
         "eventTime": "2025-01-01T09:59:00Z"},
    ]  # fmt: skip
    picked = scale_events(events, "soil-analyzer")
    assert [e["reason"].split(":")[0] for e in picked] == [
        "KEDAScaleTargetActivated", "SuccessfulRescale"
    ]  # fmt: skip
    assert picked[1]["time"] == 1735725610.0


def test_render_shows_one_row_per_capability_and_the_events() -> None:
    agent = soil()
    actual, events, notes = actual_from_supervisor(state(), [agent], "")
    snapshot = Watcher([agent]).observe({agent.name: sample(1.0, 12, None)}, actual, events,
                                        notes, t=0)  # fmt: skip
    console = Console(width=160, record=True)
    console.print(render(snapshot, title="watch"))
    text = console.export_text()
    assert "soil-analysis" in text
    assert "12 12 12 12 12 12" in text
    assert "- - - - - -" in text
    assert "last scale events" in text
    assert "KEDA: active" in text
    assert "actual replicas from: supervisor" in text
