"""Tasks waiting in a retry tier count for scaling: the rendered ScaledObject has a Kafka trigger
per tier (the worker's group, the tier topic), `keda check` accepts those and nothing else, and
the engine the supervisor runs wakes an agent at zero for a tier record alone and keeps it up
until the tier is drained, as KEDA does with several triggers; on pending work alone too, where
the tiers only wake and keep the agent and the work trigger sizes it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from expediter import AgentScaling, load_agent
from expediter.deploying import documents_of
from expediter.deploying.checking import check_documents
from expediter.deploying.manifests import AgentSource, build_manifests, load_sources
from expediter.deploying.rendering import write_manifests
from expediter.messaging import TopicNames, load_catalog
from expediter.scaling import ScaledObjectSpec, Simulation, parse_trigger
from expediter.supervising import AgentScaler, LagSample, ScaledAgent, read_scaled_agents
from expediter.supervising.workreading import WorkReading
from expediter.worker.delaying import RetryTiers

ROOT = Path(__file__).resolve().parents[2]


def _reasoning_triggers() -> list[dict[str, Any]]:
    documents = yaml.safe_load_all((ROOT / "keda" / "reasoning.yaml").read_text())
    (scaled,) = [d for d in documents if d and d.get("kind") == "ScaledObject"]
    triggers: list[dict[str, Any]] = scaled["spec"]["triggers"]
    return triggers


def test_the_rendered_scaled_object_has_a_trigger_per_tier_the_worker_reads() -> None:
    triggers = _reasoning_triggers()
    worker_tiers = [t.topic for t in RetryTiers(TopicNames(), "reasoning", [10, 60]).tiers]
    assert [t["name"] for t in triggers] == ["lag", "retry-10s", "retry-60s"]
    assert [t["metadata"]["topic"] for t in triggers[1:]] == worker_tiers
    # The worker reads its tiers in its own group: the same group as the task topic's trigger.
    assert {t["metadata"]["consumerGroup"] for t in triggers} == {"agents.reasoning"}
    lag = triggers[0]["metadata"]
    for tier in triggers[1:]:
        assert {k: v for k, v in tier["metadata"].items() if k != "topic"} == {
            k: v for k, v in lag.items() if k != "topic"
        }


def _checked(triggers: list[dict[str, Any]]) -> list[str]:
    catalog = load_catalog(ROOT / "topics" / "topics.yaml")
    agent = load_agent(ROOT / "agents" / "reasoning.py")
    manifests = build_manifests([AgentSource(agent, "agents/reasoning.py")], catalog)
    documents = documents_of(manifests)
    for document in documents:
        if document.kind == "ScaledObject":
            document.obj["spec"]["triggers"] = triggers
    return [r.problem for r in check_documents(documents, [agent], catalog)]


def test_check_passes_the_tier_triggers_and_refuses_another_topic_or_group() -> None:
    triggers = _reasoning_triggers()
    assert _checked(triggers) == []
    other_topic = [*triggers, {**triggers[1], "metadata": {**triggers[1]["metadata"],
                                                           "topic": "tasks.action"}}]  # fmt: skip
    assert any("only the retry tiers of tasks.reasoning" in p for p in _checked(other_topic))
    other_group = [*triggers[:2], {**triggers[2], "metadata": {
        **triggers[2]["metadata"], "consumerGroup": "agents.action"}}]  # fmt: skip
    assert any("group agents.action" in p for p in _checked(other_group))


def test_the_supervisor_reads_the_tiers_with_the_prefix() -> None:
    (reasoning,) = [a for a in read_scaled_agents(ROOT, TopicNames("p1.")) if a.name == "reasoning"]
    assert [topic for _, topic in reasoning.also] == [
        "p1.retry.reasoning.10s", "p1.retry.reasoning.60s",
    ]  # fmt: skip
    assert reasoning.group == "p1.agents.reasoning"


def _sample(topic: str, latest: list[int], committed: Sequence[int | None]) -> LagSample:
    return LagSample(topic=topic, group="g", at=time.time(), latest=tuple(latest),
                     committed=tuple(committed))  # fmt: skip


def test_a_task_waiting_in_a_tier_wakes_the_agent_from_zero_and_keeps_it_up() -> None:
    (soil,) = [a for a in read_scaled_agents(ROOT, TopicNames()) if a.name == "soil-analyzer"]
    assert soil.spec.min_replica_count == 0
    tiers = [topic for _, topic in soil.also]
    scaler = AgentScaler(soil, replicas=0)
    partitions = 6
    idle = _sample(soil.topic, [5] * partitions, [5] * partitions)
    empty_tier = _sample(tiers[1], [0] * partitions, [None] * partitions)
    # One task moved to the 10 s tier, not yet run: the task topic alone reads lag 0.
    waiting = _sample(tiers[0], [1] + [0] * (partitions - 1), [None] * partitions)
    assert scaler.decide(0, idle, [empty_tier, empty_tier]).desired == 0
    woke = scaler.decide(1, idle, [waiting, empty_tier])
    assert woke.desired == 1, woke.reason
    assert woke.reading.active
    assert woke.reading.lag == 1
    # While the task waits out its delay in the tier (uncommitted), the agent stays.
    cooldown = soil.spec.cooldown_period
    assert scaler.decide(cooldown + 10, idle, [waiting, empty_tier]).desired == 1
    # Once it ran (committed in the tier), the cooldown takes the agent back to zero.
    ran = _sample(tiers[0], [1] + [0] * (partitions - 1), [1] + [0] * (partitions - 1))
    assert scaler.decide(cooldown + 20, idle, [ran, empty_tier]).desired == 1
    assert scaler.decide(2 * cooldown + 30, idle, [ran, empty_tier]).desired == 0
    # Without the tiers' offsets (one trigger, as before) the waiting task wakes nothing.
    blind = AgentScaler(soil, replicas=0)
    assert blind.decide(0, idle).desired == 0
    assert blind.decide(1, idle).desired == 0


def test_the_hpa_takes_the_largest_metric_of_the_triggers() -> None:
    trigger = parse_trigger({"lagThreshold": "2", "offsetResetPolicy": "earliest"})
    simulation = Simulation(trigger, ScaledObjectSpec(max_replica_count=6), 1, also=[trigger])
    step = simulation.step(0, [1, 0, 0, 0], [0, 0, 0, 0], [([4, 4, 0, 0], [0, 0, 0, 0])])
    assert step.reading.metric == 8  # max(1, 8)
    assert step.reading.lag == 9  # every waiting task
    assert step.replicas == 4  # ceil(8 / 2), as the HPA's largest proposal


def _work_alone_soil(tmp_path: Path) -> ScaledAgent:
    # The committed agents, with soil-analyzer on pending work alone, rendered and read back as
    # `expediter up` reads them.
    sources = [
        replace(s, agent=replace(s.agent, scaling=AgentScaling(signal="work")))
        if s.agent.name == "soil-analyzer" else s
        for s in load_sources(ROOT / "agents")
    ]  # fmt: skip
    write_manifests(
        tmp_path, build_manifests(sources, load_catalog(ROOT / "topics" / "topics.yaml"))
    )
    (tmp_path / "agents").symlink_to(ROOT / "agents")
    (soil,) = [a for a in read_scaled_agents(tmp_path, TopicNames()) if a.name == "soil-analyzer"]
    return soil


def _no_work(metric: float = 0.0) -> WorkReading:
    return WorkReading(tokens=metric * 50, records=0, throughput=50.0, metric=metric,
                       active=metric > 0)  # fmt: skip


def test_work_alone_wakes_for_a_tier_task_and_lets_the_work_trigger_size_it(
    tmp_path: Path,
) -> None:
    soil = _work_alone_soil(tmp_path)
    assert soil.work is not None
    assert not soil.uses_lag
    assert soil.topic == "tasks.soil-analysis"  # the lag shown is the task topic's
    tiers = [topic for _, topic in soil.also]
    assert tiers == ["retry.soil-analysis.10s", "retry.soil-analysis.60s"]
    scaler = AgentScaler(soil, replicas=0)
    partitions = 6
    idle = _sample(soil.topic, [5] * partitions, [5] * partitions)
    empty_tier = _sample(tiers[1], [0] * partitions, [None] * partitions)
    waiting = _sample(tiers[0], [1] + [0] * (partitions - 1), [None] * partitions)
    assert scaler.decide(0, idle, [empty_tier, empty_tier], _no_work()).desired == 0
    # The scaler reads the task topic only (no pending work): the tier task wakes the agent.
    woke = scaler.decide(1, idle, [waiting, empty_tier], _no_work())
    assert woke.desired == 1, woke.reason
    assert woke.reading.active
    assert woke.reading.lag == 1
    # Many tasks waiting in a tier keep one replica; they wait out a delay, so no more.
    crowded = _sample(tiers[0], [40] * partitions, [None] * partitions)
    for t in (20, 40, 60):
        assert scaler.decide(t, idle, [crowded, empty_tier], _no_work()).desired == 1
    # Pending work still sizes it: 3 replicas' worth of drain time.
    target = soil.work.target_drain_seconds
    sized = scaler.decide(80, idle, [crowded, empty_tier], _no_work(3 * target))
    assert sized.desired == 3, sized.reason
    # Once the tier ran and no work is left, the cooldown takes it back to zero.
    ran = _sample(tiers[0], [40] * partitions, [40] * partitions)
    now = 100.0
    while scaler.replicas and now < 100 + 3 * soil.spec.cooldown_period + 1200:
        scaler.decide(now, idle, [ran, empty_tier], _no_work())
        now += soil.spec.polling_interval
    assert scaler.replicas == 0
    # Without the tiers' triggers (work alone, as before) the tier task woke nothing.
    blind = AgentScaler(replace(soil, also=()), replicas=0)
    assert blind.decide(0, idle, [], _no_work()).desired == 0
    assert blind.decide(1, idle, [], _no_work()).desired == 0
