"""The local supervisor's parts without a broker: manifests, decisions, replicas, state file.

Replica tests run real (tiny) child processes; nothing is mocked.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from expediter.errors import ConfigurationError
from expediter.messaging import TopicNames
from expediter.supervising import (
    AgentScaler,
    AgentState,
    LagSample,
    ReplicaSet,
    ScaleEvent,
    SupervisorState,
    read_scaled_agents,
    read_state,
    select_agents,
    worker_env,
    write_state,
)
from tests.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]


def agents(prefix: str = "") -> dict[str, object]:
    return {a.name: a for a in read_scaled_agents(ROOT, TopicNames(prefix))}


def test_reads_every_scaled_object_of_keda_with_the_prefix_applied() -> None:
    found = read_scaled_agents(ROOT, TopicNames("t1."))
    assert {a.name for a in found} == {
        "action", "crop-mapper", "perception", "pest-detector", "reasoning", "soil-analyzer"
    }  # fmt: skip
    soil = next(a for a in found if a.name == "soil-analyzer")
    assert soil.capability == "soil-analysis"
    assert soil.agent_file == "agents/soil_analyzer.py"
    assert (soil.topic, soil.group) == ("t1.tasks.soil-analysis", "t1.agents.soil-analysis")
    assert soil.trigger.lag_threshold == 8
    assert soil.trigger.offset_reset_policy == "earliest"
    assert soil.spec.max_replica_count == 6
    assert soil.spec.behavior is not None
    assert soil.spec.behavior.scale_down.stabilization_window_seconds == 300
    # From its Deployment: the kubelet's grace period and the pod's drain settings.
    assert soil.grace_seconds == 80
    assert soil.pod_env["EXPEDITER_DRAIN_SECONDS"] == "65"


def test_select_by_stem_name_or_capability_and_refuse_unknown() -> None:
    found = read_scaled_agents(ROOT, TopicNames())
    chosen = select_agents(found, ["soil_analyzer", "pest-detector", "crop-mapping"])
    assert [a.name for a in chosen] == ["soil-analyzer", "pest-detector", "crop-mapper"]
    assert select_agents(found, []) == found
    with pytest.raises(ConfigurationError, match="no agent named nope; choose from"):
        select_agents(found, ["nope"])


def test_overrides_shorten_polling_and_cooldown_and_lower_max() -> None:
    soil = read_scaled_agents(ROOT, TopicNames())[-1]
    fast = soil.with_overrides(polling_interval=1, cooldown=5, max_replicas=3)
    assert (fast.spec.polling_interval, fast.spec.cooldown_period) == (1, 5)
    assert fast.spec.max_replica_count == 3
    assert soil.with_overrides(max_replicas=50).spec.max_replica_count == 6  # lowered only


def test_a_bad_manifest_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "keda").mkdir()
    (tmp_path / "keda" / "x.yaml").write_text(
        "kind: ScaledObject\nmetadata: {name: x, labels: {expediter.io/capability: x}}\n"
        "spec:\n  triggers:\n  - type: kafka\n    metadata: {topic: tasks.x, consumerGroup: g,"
        " lagThreshold: '0'}\n"
    )
    with pytest.raises(ConfigurationError) as caught:
        read_scaled_agents(tmp_path, TopicNames())
    assert "keda/x.yaml" in str(caught.value)
    assert "lagThreshold must be > 0" in str(caught.value)


def sample(t: float, latest: list[int], committed: list[int | None]) -> LagSample:
    return LagSample("tasks.soil-analysis", "agents.soil-analysis", t, tuple(latest),
                     tuple(committed))  # fmt: skip


def test_decisions_scale_up_on_lag_and_back_to_zero_after_cooldown() -> None:
    soil = read_scaled_agents(ROOT, TopicNames())[-1].with_overrides(polling_interval=1, cooldown=3)
    scaler = AgentScaler(soil)
    assert scaler.due(0)
    first = scaler.decide(0, sample(0, [20] * 6, [None] * 6))
    assert (first.previous, first.desired, first.changed) == (0, 1, True)
    assert first.reason.startswith("KEDA: active at 0 replicas")
    assert not scaler.due(0.5)
    assert scaler.due(1.0)
    # metric capped at 6 partitions x lagThreshold 8 = 48: wants 6, the scaleUp policy allows +4.
    second = scaler.decide(1, sample(1, [20] * 6, [0] * 6))
    assert second.desired == 5
    assert second.reason.startswith("HPA: metric 48")
    # Drained: the HPA's down window (300 s) holds 5; KEDA's cooldown then goes to 0 at once.
    held = scaler.decide(2, sample(2, [20] * 6, [20] * 6))
    assert held.desired == 5
    assert not held.reading.active
    # Last active at t=1: at t=4, 1 + 3 is not < 4 yet (KEDA waits strictly after).
    assert scaler.decide(4, sample(4, [20] * 6, [20] * 6)).desired == 5
    last = scaler.decide(5, sample(5, [20] * 6, [20] * 6))
    assert (last.previous, last.desired) == (5, 0)
    assert "cooldownPeriod" in last.reason


SLEEPER = "import time\nwhile True: time.sleep(0.05)\n"
STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + SLEEPER


def replica_set(tmp_path: Path, code: str, grace: float = 30.0) -> ReplicaSet:
    return ReplicaSet("probe", lambda _name: [sys.executable, "-c", code], dict(os.environ),
                      tmp_path / "logs", grace)  # fmt: skip


def test_replicas_start_and_the_newest_stops_first(tmp_path: Path) -> None:
    replicas = replica_set(tmp_path, SLEEPER)
    try:
        started, _ = replicas.scale_to(3)
        assert [r.name for r in started] == ["probe-1", "probe-2", "probe-3"]
        _, stopping = replicas.scale_to(1)
        assert [r.name for r in stopping] == ["probe-3", "probe-2"]
        assert [r.name for r in replicas.running] == ["probe-1"]
        ended: list[object] = []
        wait_for(
            "both replicas reaped",
            lambda: ended.extend(replicas.reap()) or len(ended) == 2,
            timeout=10,
            poll=0.05,
        )
        assert all(e.expected for e in ended)  # type: ignore[attr-defined]
        # Names are never reused within a run (transactional ids must not fence a drainer).
        started, _ = replicas.scale_to(2)
        assert [r.name for r in started] == ["probe-4"]
    finally:
        replicas.terminate_all()
        replicas.escalate(grace=0)
        for r in replicas.replicas:
            r.process.wait(5)


def test_a_replica_that_ignores_sigterm_is_killed_after_its_grace(tmp_path: Path) -> None:
    replicas = replica_set(tmp_path, STUBBORN, grace=0.3)
    replica = replicas.start_one()
    time.sleep(0.5)  # let it install its handler
    replicas.scale_to(0)
    assert replicas.escalate() == []  # within the grace period
    time.sleep(0.4)
    assert replicas.escalate() == [replica]
    replica.process.wait(5)
    (ended,) = replicas.reap()
    assert ended.expected
    assert ended.code == -9


def test_a_crash_is_reported_as_unexpected(tmp_path: Path) -> None:
    replicas = replica_set(tmp_path, "import sys; print('boom'); sys.exit(3)")
    replicas.scale_to(1)
    ended: list[object] = []
    wait_for("a replica reaped", lambda: ended.extend(replicas.reap()) or ended, 10, 0.05)
    (crash,) = ended
    assert crash.code == 3
    assert not crash.expected
    assert "boom" in crash.log.read_text()  # type: ignore[attr-defined]


def test_worker_env_gives_each_replica_a_free_port_and_the_pods_drain() -> None:
    soil = read_scaled_agents(ROOT, TopicNames())[-1]
    env = worker_env({"EXPEDITER_HTTP_PORT": "8080", "EXPEDITER_DRAIN_SECONDS": "3"}, soil)
    assert env["EXPEDITER_HTTP_PORT"] == "0"
    assert env["EXPEDITER_DRAIN_SECONDS"] == "3"  # the environment wins over the Deployment
    assert env["EXPEDITER_HARD_DEADLINE_SECONDS"] == "5"


def test_state_file_round_trips_and_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state" / "supervisor.json"
    assert read_state(path) is None
    state = SupervisorState(pid=os.getpid(), started_at=1.0, updated_at=2.0, prefix="p.")
    state.agents.append(AgentState("soil-analyzer", "soil-analysis", "agents/soil_analyzer.py",
                                   "p.tasks.soil-analysis", "p.agents.soil-analysis", 0, 6, 1, 5,
                                   replicas=2, desired=2, lag=40, pids=[11, 12]))  # fmt: skip
    for n in range(60):
        state.record(ScaleEvent(float(n), "soil-analyzer", "soil-analysis", n, n + 1, "why"))
    write_state(path, state)
    document = json.loads(path.read_text())
    assert document["agents"][0]["replicas"] == 2
    assert len(document["events"]) == 50
    assert document["events"][-1]["to"] == 60
    assert document["events"][0].keys() == {"time", "agent", "capability", "from", "to", "reason"}
    again = read_state(path)
    assert again is not None
    assert again.as_dict() == state.as_dict()
    assert [p.name for p in path.parent.iterdir()] == ["supervisor.json"]  # no temporary left
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="not a supervisor state file"):
        read_state(path)
