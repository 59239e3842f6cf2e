"""The local supervisor's KEDA and HPA on the work-based trigger (issue 18): keda/ read with
the work trigger alone or next to lag; alone, the replicas follow pending work as on a cluster
(WorkSimulation's arithmetic); next to the lag trigger, KEDA is active on either and the HPA
takes the larger proposal."""

from __future__ import annotations

from pathlib import Path

import pytest

from expediter.errors import ConfigurationError
from expediter.messaging import TopicNames
from expediter.scaling import KafkaTrigger
from expediter.scaling.simulating import ScaledObjectSpec
from expediter.scaling.working import ExternalTrigger, WorkMeter
from expediter.scaling.worksimulating import WorkSimulation
from expediter.settings import KafkaSettings
from expediter.supervising import Supervisor, SupervisorOptions, read_scaled_agents
from expediter.supervising.workreading import WorkReading, WorkStepper

WORK = ExternalTrigger(capability="planning", target_drain_seconds=10, tokens_per_second=100)
LAG = KafkaTrigger(lag_threshold=10)
SPEC = ScaledObjectSpec(max_replica_count=20, polling_interval=1, cooldown_period=30)
PARTITIONS = 20


def _reading(tokens: float, records: int) -> WorkReading:
    metric = WorkMeter(WORK).metric(tokens, records=records)
    return WorkReading(tokens, records, metric.throughput, metric.metric, metric.active)


def _lag(records: int) -> tuple[list[int], list[int | None]]:
    # ``records`` pending, spread over the partitions, from committed offsets at 0.
    latest = [records // PARTITIONS + (1 if p < records % PARTITIONS else 0)
              for p in range(PARTITIONS)]  # fmt: skip
    return latest, [0] * PARTITIONS


def test_work_alone_scales_as_the_cluster_engine_does() -> None:
    stepper = WorkStepper(WORK, None, SPEC)
    engine = WorkSimulation(WORK, SPEC)
    timeline = [(0, 0.0, 0), (1, 900.0, 200), (2, 900.0, 200), (3, 8900.0, 204),
                (4, 8900.0, 204), (5, 8900.0, 204), (40, 0.0, 0), (80, 0.0, 0)]  # fmt: skip
    seen = []
    for t, tokens, records in timeline:
        latest, committed = _lag(records)
        step = stepper.step(t, latest, committed, _reading(tokens, records))
        expected = engine.step(t, tokens, records=records)
        assert step.replicas == expected.replicas, t
        assert step.reading.active == expected.reading.active
        seen.append(step.replicas)
    # 200 tiny tasks (lag 200: 20 replicas at lagThreshold 10) are 9 s of work: one replica;
    # 8,900 tokens are 89 s: 9 replicas; idle past the cooldown: back to zero.
    assert seen[:3] == [0, 1, 1]
    assert max(seen) == 9
    assert seen[-1] == 0


def test_next_to_lag_the_larger_proposal_wins_and_either_activates() -> None:
    stepper = WorkStepper(WORK, LAG, SPEC)
    # 4 huge tasks: lag 4 (1 replica at lagThreshold 10), 8,000 tokens (8 replicas' work).
    latest, committed = _lag(4)
    first = stepper.step(0, latest, committed, _reading(8000, 4))
    assert first.reading.active
    assert first.replicas == 1  # KEDA 0 -> 1
    # One replica a pending task: the work metric caps at 4 tasks x 10 s, so 4 replicas.
    second = stepper.step(1, latest, committed, _reading(8000, 4))
    assert second.replicas == 4
    assert second.reading.metric == 40  # 4 replicas' worth in lag units (4 x lagThreshold)

    # Many tiny tasks: lag 150 asks for 15, their work (1.5 s) for one: lag wins.
    stepper = WorkStepper(WORK, LAG, SPEC, replicas=1)
    latest, committed = _lag(150)
    step = stepper.step(0, latest, committed, _reading(150, 150))
    assert step.reading.metric == 150
    assert step.hpa is not None
    assert step.hpa.proposal == 15  # then the HPA's own rate limit: max(2 x 1, 4)
    assert step.replicas == 4

    # No lag to speak of but work pending (a task the lag side cannot see yet): KEDA wakes.
    stepper = WorkStepper(WORK, LAG, SPEC)
    latest, committed = _lag(0)
    assert stepper.step(0, latest, committed, _reading(500, 1)).replicas == 1


def test_a_reading_reads_for_people() -> None:
    reading = WorkReading(8900, 204, 100.0, 89.0, True, capped=True)
    assert reading.text() == "89.0 s (8,900 tokens, capped)"


def _repo(tmp_path: Path, triggers: str) -> Path:
    (tmp_path / "agents").mkdir(parents=True)
    (tmp_path / "agents" / "probe.py").write_text("")
    (tmp_path / "keda").mkdir()
    (tmp_path / "keda" / "probe.yaml").write_text(
        "kind: ScaledObject\nmetadata: {name: probe, labels: {expediter.io/capability: probe}}\n"
        f"spec:\n  triggers:\n{triggers}"
    )
    return tmp_path


_WORK = (
    "    - type: external\n      metadata: {scalerAddress: 'h:1', capability: probe,"
    " targetDrainSeconds: '10'}\n"
)
_LAG = (
    "    - type: kafka\n      metadata: {topic: tasks.probe, consumerGroup: agents.probe,"
    " lagThreshold: '4', bootstrapServers: 'b:1'}\n"
)


def test_up_reads_the_work_trigger_alone_or_next_to_lag(tmp_path: Path) -> None:
    (alone,) = read_scaled_agents(_repo(tmp_path / "a", _WORK), TopicNames("p."))
    assert alone.work is not None
    assert alone.work.target_drain_seconds == 10
    assert not alone.uses_lag
    assert (alone.topic, alone.group) == ("p.tasks.probe", "p.agents.probe")
    (both,) = read_scaled_agents(_repo(tmp_path / "b", _LAG + _WORK), TopicNames())
    assert both.uses_lag
    assert both.trigger.lag_threshold == 4
    assert both.work_metadata["capability"] == "probe"


def test_a_supervisor_without_a_work_reader_refuses_a_work_agent(tmp_path: Path) -> None:
    agents = read_scaled_agents(_repo(tmp_path, _WORK), TopicNames())
    options = SupervisorOptions(root=tmp_path, state_dir=tmp_path / "state")
    with pytest.raises(ConfigurationError, match="probe scale on pending work"):
        Supervisor(agents, KafkaSettings(), options)
