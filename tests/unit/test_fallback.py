"""KEDA's fallback in the engine: ``spec.fallback`` read as KEDA's CRD reads it, and what a failing
scaler does to the metric, KEDA's count and the HPA (``Simulation.fail``), step by step.

The rules are KEDA 2.21's (expediter/scaling/fallback.py cites the code); the two outage cases
are also what tests/cluster/test_conformance.py measures on the real KEDA.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from expediter.errors import ConfigurationError
from expediter.scaling import (
    Fallback,
    ScaledObjectSpec,
    Simulation,
    parse_fallback,
    parse_scenario,
    parse_trigger,
    read_scaled_object,
)

ROOT = Path(__file__).resolve().parents[2]
TRIGGER = parse_trigger({"lagThreshold": "10", "topic": "tasks"})


def simulation(fallback: Fallback | None, **spec: int) -> Simulation:
    return Simulation(TRIGGER, ScaledObjectSpec(max_replica_count=6, cooldown_period=5,
                                                fallback=fallback, **spec))  # fmt: skip


def at_two_replicas(sim: Simulation) -> None:
    """Lag 40 on 2 partitions, capped at 20: KEDA 0 -> 1, then the HPA 1 -> 2."""
    assert sim.step(0, [20, 20], [0, 0]).replicas == 1
    assert sim.step(1, [20, 20], [0, 0]).replicas == 2


def test_a_fallback_reads_as_keda_reads_it() -> None:
    assert parse_fallback(None) is None
    assert parse_fallback({"failureThreshold": 3, "replicas": 6}) == Fallback(3, 6, "static")
    assert parse_fallback(
        {"failureThreshold": 0, "replicas": 0, "behavior": "currentReplicasIfHigher"}
    ) == Fallback(0, 0, "currentReplicasIfHigher")


def test_a_bad_fallback_lists_every_problem_with_its_fix() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_fallback({"failureTreshold": 3, "replicas": -1, "behavior": "sometimes"},
                       where="spec.fallback")  # fmt: skip
    assert str(caught.value).splitlines() == [
        "spec.fallback.failureTreshold is not a fallback field; did you mean failureThreshold? "
        "use failureThreshold, replicas, behavior",
        "spec.fallback.failureThreshold is required (KEDA's CRD refuses a fallback without it)",
        "spec.fallback.replicas must be a whole number >= 0, got -1 (KEDA's CRD: int32, minimum 0)",
        "spec.fallback.behavior must be one of static, currentReplicas, currentReplicasIfHigher, "
        "currentReplicasIfLower, got 'sometimes' (KEDA's CRD refuses others; left out it is "
        '"static")',
    ]
    with pytest.raises(ConfigurationError, match="scalingModifiers formulas"):
        parse_fallback({"failureThreshold": 1, "replicas": 1, "behavior": "scalingModifiers"})
    with pytest.raises(ConfigurationError, match="must be an object"):
        parse_fallback(3)


@pytest.mark.parametrize(
    ("behavior", "current", "expected"),
    [
        ("static", 5, 3),
        ("currentReplicas", 5, 5),
        ("currentReplicasIfHigher", 5, 5),
        ("currentReplicasIfHigher", 1, 3),
        ("currentReplicasIfLower", 5, 3),
        ("currentReplicasIfLower", 1, 1),
    ],
)
def test_the_behavior_picks_the_fallback_count(behavior: str, current: int, expected: int) -> None:
    fallback = parse_fallback({"failureThreshold": 0, "replicas": 3, "behavior": behavior})
    assert fallback is not None
    assert fallback.replicas_for(current) == expected


def test_a_reachable_failure_counts_each_read_and_falls_back_after_the_threshold() -> None:
    sim = simulation(Fallback(2, 3))
    assert sim.step(0, [0, 0], [0, 0]).replicas == 0
    # At 0 replicas only KEDA's poll reads the metric (the HPA is disabled): one failure a step.
    first, second = (sim.fail(t, "partition 2 missing", reachable=True) for t in (1, 2))
    assert (first.failures, first.metric, first.replicas) == (1, None, 0)
    assert (second.failures, second.metric, second.replicas) == (2, None, 0)
    # 3 > failureThreshold 2: the fallback answers 3 x lagThreshold and counts as active.
    third = sim.fail(3, "partition 2 missing", reachable=True)
    assert third.as_line() == {"t": 3, "lag": None, "metric": 30, "active": True, "replicas": 1,
                               "error": "partition 2 missing", "failures": 3,
                               "fallback": True}  # fmt: skip
    # Above 0 the HPA's query is a read too: two failures a step; the HPA computes 3.
    fourth = sim.fail(4, "partition 2 missing", reachable=True)
    assert (fourth.failures, fourth.replicas) == (5, 3)
    assert fourth.hpa is not None
    assert fourth.hpa.proposal == 3
    # A good read sets the count to 0; the fallback made the trigger active until then.
    recovered = sim.step(5, [0, 0], [0, 0])
    assert (recovered.reading.metric, recovered.replicas) == (0, 3)
    assert sim.step(11, [0, 0], [0, 0]).replicas == 0  # lastActiveTime 4 + cooldown 5 < 11


def test_an_unreachable_broker_counts_one_failure_and_freezes_the_count() -> None:
    sim = simulation(Fallback(2, 3))
    at_two_replicas(sim)
    # The held scaler's read fails (1), KEDA drops it; every later build fails to connect.
    steps = [sim.fail(t, "connection refused") for t in range(2, 20)]
    assert {(s.failures, s.metric, s.replicas, s.fallback) for s in steps} == {(1, None, 2, False)}
    assert "cannot build the scaler" in (steps[-1].keda or "")
    assert "HPA keeps 2" in steps[-1].explain()
    # Back: lag 0, and lastActiveTime (1) + cooldown is long past: KEDA 2 -> 0 at once.
    assert sim.step(20, [20, 20], [20, 20]).replicas == 0


def test_an_unreachable_broker_falls_back_at_once_with_threshold_zero() -> None:
    sim = simulation(Fallback(0, 3))
    at_two_replicas(sim)
    # 1 > 0 at KEDA's poll: the fallback answers, KEDA keeps its scaler, and counting goes on.
    outage = [sim.fail(t, "connection refused") for t in (2, 3)]
    assert [(s.failures, s.metric, s.replicas) for s in outage] == [(2, 30, 3), (4, 30, 3)]
    assert all(s.active for s in outage)


def test_without_fallback_replicas_an_erroring_scaler_lets_keda_scale_to_zero() -> None:
    # RequestScale: with fallback.replicas 0 an error takes the not-active path (cooldown).
    sim = simulation(Fallback(5, 0))
    at_two_replicas(sim)
    waiting = sim.fail(6, "partition 2 missing", reachable=True)
    assert waiting.replicas == 2
    assert "cooling down" in (waiting.keda or "")
    assert sim.fail(7, "partition 2 missing", reachable=True).replicas == 0


def test_without_a_fallback_an_erroring_scaler_keeps_the_count() -> None:
    sim = simulation(None)
    at_two_replicas(sim)
    steps = [sim.fail(t, "partition 2 missing", reachable=True) for t in range(2, 30, 3)]
    assert {(s.replicas, s.failures, s.metric) for s in steps} == {(2, 0, None)}
    assert "Ready False" in (steps[0].keda or "")


def test_a_scenario_takes_failed_steps_and_a_fallback() -> None:
    scenario = parse_scenario({
        "trigger": {"lagThreshold": "10"},
        "scaledObject": {"cooldownPeriod": 5, "fallback": {"failureThreshold": 0, "replicas": 2}},
        "steps": [{"t": 0, "latest": [5], "committed": [0]},
                  {"t": 1, "error": "connection refused"},
                  {"t": 2, "error": "topic gone", "reachable": True}],
    })  # fmt: skip
    assert scenario.scaled_object.fallback == Fallback(0, 2)
    lines = [r.as_line() for r in scenario.run()]
    assert [(line["metric"], line["replicas"]) for line in lines] == [(5, 1), (20, 2), (20, 2)]


def test_a_bad_failed_step_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_scenario({
            "scaledObject": {"fallback": {"replicas": 2}},
            "steps": [{"t": 0, "error": "", "latest": [1]},
                      {"t": 1, "error": "down", "reachable": "no"}],
        })  # fmt: skip
    assert str(caught.value).splitlines() == [
        "scaledObject.fallback.failureThreshold is required (KEDA's CRD refuses a fallback "
        "without it)",
        "steps[0].latest is not a scenario key; use t, error, reachable",
        "steps[0].error must be a non-empty string saying what failed",
        "steps[1].reachable must be true or false (whether KEDA can still reach the broker to "
        "build a new scaler), got 'no'",
    ]


def test_keda_simulate_prints_failed_steps(tmp_path: Path) -> None:
    scenario = tmp_path / "outage.json"
    scenario.write_text(json.dumps({
        "trigger": {"lagThreshold": "10", "allowIdleConsumers": "true"},
        "scaledObject": {"fallback": {"failureThreshold": 1, "replicas": 4}},
        "steps": [{"t": 0, "latest": [30], "committed": [0]},
                  {"t": 15, "error": "topic deleted", "reachable": True},
                  {"t": 30, "error": "topic deleted", "reachable": True}],
    }))  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "expediter.cli", "keda", "simulate", "--scenario", str(scenario),
         "--explain"], capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"t": 0, "lag": 30, "metric": 30, "active": True, "replicas": 1},
        # KEDA's poll: 1 failure, not above 1; the HPA's query: 2 > 1, the fallback answers.
        {"t": 15, "lag": None, "metric": 40, "active": True, "replicas": 4,
         "error": "topic deleted", "failures": 2, "fallback": True},
        {"t": 30, "lag": None, "metric": 40, "active": True, "replicas": 4,
         "error": "topic deleted", "failures": 4, "fallback": True},
    ]  # fmt: skip
    assert "scaler failed (topic deleted), 2 failure(s), fallback metric 40" in result.stderr


def test_a_project_scaled_object_reads_with_its_fallback() -> None:
    document = yaml.safe_load((ROOT / "keda" / "action.yaml").read_text())
    document["spec"]["fallback"] = {"failureThreshold": 3, "replicas": 2}
    # The lag trigger: the engine reads one (the retry tiers' triggers follow it in keda/).
    assert [t["name"] for t in document["spec"]["triggers"]][1:] == ["retry-10s", "retry-60s"]
    document["spec"]["triggers"] = document["spec"]["triggers"][:1]
    manifest = read_scaled_object(document)
    assert (manifest.name, manifest.namespace) == ("action", "expediter")
    assert manifest.spec.fallback == Fallback(3, 2)
    assert manifest.spec.behavior is not None
    assert manifest.spec.behavior.scale_down.stabilization_window_seconds == 300
    assert manifest.trigger.lag_threshold == 8
    assert manifest.metadata["topic"] == "tasks.action"


def test_a_scaled_object_the_engine_cannot_model_is_refused() -> None:
    document = {"kind": "ScaledObject", "metadata": {"name": "x"},
                "spec": {"maxReplicaCount": "6", "fallback": {"failureThreshold": 1},
                         "triggers": [{"type": "kafka", "metricType": "Value",
                                       "metadata": {"lagThreshold": "0"}}]}}  # fmt: skip
    with pytest.raises(ConfigurationError) as caught:
        read_scaled_object(document)
    problems = str(caught.value).splitlines()
    assert problems[0] == "ScaledObject/x.spec.maxReplicaCount must be a whole number, got '6'"
    assert problems[1].startswith("ScaledObject/x.spec.fallback.replicas is required")
    assert problems[2].startswith("ScaledObject/x.spec.triggers[0].metricType must be AverageValue")
    assert problems[3].startswith("ScaledObject/x.trigger.lagThreshold must be > 0")
