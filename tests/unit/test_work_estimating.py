"""Task work estimates, pending-work running sums and the work-based metric (issue 18)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from expediter.errors import ConfigurationError
from expediter.scaling.estimating import (
    EXPECTED_TOKENS_HEADER,
    TokenEstimator,
    header_tokens,
)
from expediter.scaling.summing import PartitionSums, PendingWork
from expediter.scaling.working import WorkMeter, parse_external_trigger


def test_a_producer_header_wins_over_the_guess() -> None:
    estimator = TokenEstimator(tokens_per_byte=0.25)
    estimate = estimator.estimate(400, [("traceparent", b"x"), (EXPECTED_TOKENS_HEADER, b"4000")])
    assert (estimate.tokens, estimate.source) == (4000, "header")
    assert estimator.estimate(400).tokens == 100
    assert estimator.estimate(400).source == "estimator"


@pytest.mark.parametrize("value", [b"lots", b"-5", b"1e3", b"\xff", b"99999999999"])
def test_a_malformed_header_is_ignored_not_trusted(value: bytes) -> None:
    assert header_tokens([(EXPECTED_TOKENS_HEADER, value)]) is None


def test_calibration_converges_on_measured_tokens_per_byte() -> None:
    estimator = TokenEstimator(tokens_per_byte=0.25, warmup=10)
    for _ in range(200):
        estimator.observe(input_bytes=100, tokens=300)  # 3 tokens a byte, not 0.25
    assert estimator.tokens_per_byte == pytest.approx(3.0)
    assert estimator.guess(1000) == 3000


def test_early_observations_are_blended_with_the_prior() -> None:
    estimator = TokenEstimator(tokens_per_byte=1.0, warmup=10)
    estimator.observe(input_bytes=100, tokens=300)
    assert 1.0 < estimator.tokens_per_byte < 3.0


def test_estimator_refuses_a_nonpositive_prior() -> None:
    with pytest.raises(ConfigurationError, match="tokens_per_byte must be > 0"):
        TokenEstimator(tokens_per_byte=0)


def test_pending_is_one_subtraction_of_running_sums() -> None:
    sums = PartitionSums(base=10)
    for offset, tokens in [(10, 5), (11, 7), (12, 100), (13, 1)]:
        sums.append(offset, tokens)
    assert sums.end == 14
    assert sums.pending(None) == 113
    assert sums.pending(10) == 113
    assert sums.pending(12) == 101
    assert sums.pending(14) == 0
    assert sums.pending(3) == 113  # below base: everything indexed
    # two records past the indexed end, not read yet, count at the mean
    assert sums.pending(12, mean=10.0, latest=16) == 121


def test_skipped_offsets_cost_nothing_and_rereads_are_ignored() -> None:
    sums = PartitionSums()
    sums.append(0, 3)
    sums.append(5, 4)  # 1..4 were transaction markers or compacted away
    sums.append(5, 99)  # a re-read of 5
    assert sums.end == 6
    assert sums.pending(1) == 4
    assert sums.pending(0) == 7


def test_trimming_keeps_the_arithmetic_and_bounds_memory() -> None:
    rng = random.Random(7)
    sums = PartitionSums()
    costs = [rng.randint(1, 4000) for _ in range(20_000)]
    for offset, tokens in enumerate(costs):
        sums.append(offset, tokens)
    sums.trim(15_000)
    assert sums.base == 15_000
    assert sums.indexed == 5_000
    assert sums.pending(15_000) == sum(costs[15_000:])
    assert sums.pending(18_123) == sum(costs[18_123:])


def test_pending_work_matches_a_full_recount_at_every_poll() -> None:
    rng = random.Random(3)
    work = PendingWork(partitions=3)
    produced: list[list[int]] = [[], [], []]
    committed: dict[int, int | None] = {0: None, 1: None, 2: None}
    for _ in range(300):
        p = rng.randrange(3)
        tokens = rng.choice([20, 20, 20, 4000])
        work.add(p, len(produced[p]), tokens)
        produced[p].append(tokens)
        q = rng.randrange(3)
        if produced[q] and rng.random() < 0.3:
            done = committed[q] or 0
            committed[q] = min(len(produced[q]), done + rng.randint(0, 3))
        reading = work.read(committed)
        expected = sum(sum(costs[(committed[i] or 0) :]) for i, costs in enumerate(produced))
        assert reading.tokens == expected
        assert reading.records == sum(len(c) - (committed[i] or 0) for i, c in enumerate(produced))


def test_few_long_tasks_weigh_more_than_many_short_ones() -> None:
    work = PendingWork(partitions=1)
    for offset in range(4):
        work.add(0, offset, 4000)
    long_tasks = work.read({0: 0})
    short = PendingWork(partitions=1)
    for offset in range(400):
        short.add(0, offset, 20)
    short_tasks = short.read({0: 0})
    assert long_tasks.records < short_tasks.records
    assert long_tasks.tokens > short_tasks.tokens


def test_work_metric_is_pending_tokens_over_throughput() -> None:
    trigger = parse_external_trigger(
        {"capability": "planning", "targetDrainSeconds": "30", "tokensPerSecond": "100"}
    )
    meter = WorkMeter(trigger)
    reading = meter.metric(12_000)
    assert reading.metric == 120.0
    assert reading.replicas(trigger.target_drain_seconds) == 4
    assert reading.active
    measured = meter.metric(12_000, throughput=200)
    assert measured.metric == 60.0
    assert not meter.metric(0).active


def test_gpu_cap_limits_the_replicas_asked_for() -> None:
    trigger = parse_external_trigger(
        {"capability": "planning", "targetDrainSeconds": "10", "tokensPerSecond": "10",
         "gpus": "2", "replicasPerGpu": "3"}
    )  # fmt: skip
    reading = WorkMeter(trigger).metric(1_000_000)
    assert reading.capped
    assert reading.replicas(10) == 6


def test_cold_start_holds_the_metric_while_replicas_load() -> None:
    trigger = parse_external_trigger(
        {"capability": "planning", "targetDrainSeconds": "10", "tokensPerSecond": "10"}
    )
    meter = WorkMeter(trigger)
    assert meter.metric(400, loading=0).replicas(10) == 4
    # four replicas asked for, now loading; work keeps arriving that nobody serves yet
    first = meter.metric(400, loading=3)
    later = meter.metric(2_000, loading=3)
    assert later.held
    assert later.replicas(10) == first.replicas(10) == 4
    # work can lower the held value, and once ready the metric follows pending work again
    assert meter.metric(300, loading=1).metric == 30
    assert meter.metric(2_000, loading=0).replicas(10) == 20


def test_external_trigger_metadata_problems_are_listed_with_fixes() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_external_trigger(
            {"capability": "", "targetDrainSecond": "30", "gpus": "2", "tokensPerSecond": "x"}
        )
    message = str(caught.value)
    assert "did you mean targetDrainSeconds" in message
    assert "tokensPerSecond must be a number" in message


def test_throughput_is_measured_once_enough_tasks_finished() -> None:
    from expediter.scaling.measuring import ThroughputMeter

    meter = ThroughputMeter(minimum_tasks=2)
    meter.observe(tokens=100, seconds=2.0)
    assert meter.tokens_per_second is None
    meter.observe(tokens=0, seconds=1.0)  # a failure: no tokens, says nothing about the rate
    meter.observe(tokens=300, seconds=2.0)
    assert meter.tokens_per_second == pytest.approx(100.0, rel=0.01)


@pytest.mark.parametrize("estimate", [None, (4000, "header", 512), (37, "estimator", 150)])
def test_the_estimate_is_recorded_on_the_result_next_to_actual_tokens(
    estimate: tuple[int, str, int] | None,
) -> None:
    from datetime import UTC, datetime
    from uuid import uuid4

    from pydantic import BaseModel

    from expediter.events import (
        Producer,
        ResultEvent,
        ResultTemplate,
        TaskEvent,
        TokenUsage,
        TraceParent,
        decode,
        to_record,
    )

    class Plan(BaseModel):
        steps: list[str]

    producer = Producer(name="worker", version="0.1.0")
    task = TaskEvent(producer=producer, input={}, workflow_id="wf-1", step_id="plan",
                     capability="planning")  # fmt: skip
    usage = TokenUsage(prompt_tokens=120, completion_tokens=3900)
    trace, event_id, now = TraceParent.new(), uuid4(), datetime.now(UTC)
    fast = ResultTemplate(producer).record(
        task, Plan(steps=["a"]), attempt=1, usage=usage, duration_ms=5, trace=trace,
        event_id=event_id, created_at=now, estimate=estimate,
    )  # fmt: skip
    fields = {} if estimate is None else {
        "estimated_tokens": estimate[0], "estimate_source": estimate[1], "input_bytes": estimate[2]
    }  # fmt: skip
    model = ResultEvent[Plan](
        event_id=event_id, created_at=now, producer=producer, workflow_id="wf-1", step_id="plan",
        capability="planning", attempt=1, task_id=task.event_id, status="succeeded",
        output=Plan(steps=["a"]), usage=usage, duration_ms=5, **fields,
    )  # fmt: skip
    assert fast == to_record(model, trace=trace)
    decoded = decode(fast.value, ResultEvent[Plan])
    assert decoded.estimated_tokens == (None if estimate is None else estimate[0])


def test_a_task_runs_on_one_replica_so_few_huge_tasks_ask_for_few() -> None:
    trigger = parse_external_trigger(
        {"capability": "planning", "targetDrainSeconds": "10", "tokensPerSecond": "10"}
    )
    reading = WorkMeter(trigger).metric(16_000, records=4)
    assert reading.raw == 1600
    assert reading.capped
    assert reading.replicas(10) == 4


def test_the_engine_scales_on_the_work_metric_as_keda_and_the_hpa_would() -> None:
    from expediter.scaling import ScaledObjectSpec
    from expediter.scaling.worksimulating import WorkSimulation

    trigger = parse_external_trigger(
        {"capability": "planning", "targetDrainSeconds": "10", "tokensPerSecond": "100"}
    )
    simulation = WorkSimulation(trigger, ScaledObjectSpec(max_replica_count=20, cooldown_period=30))
    assert simulation.step(0, 0).replicas == 0
    assert simulation.step(1, 900, records=200).replicas == 1  # KEDA: active at 0 -> 1
    assert simulation.step(2, 900, records=200).replicas == 1  # 9 s of work: one replica
    # 8,900 tokens: 89 s of work, 9 replicas, reached under KEDA's default HPA rate limits
    seen = [simulation.step(t, 8900, records=204).replicas for t in range(3, 60, 15)]
    assert seen[-1] == 9
    assert seen == sorted(seen)


def test_keda_simulate_runs_the_external_work_trigger(tmp_path: Path) -> None:
    import json
    import os

    from tests.support import cli

    scenario = Path(__file__).resolve().parents[1] / "scenarios" / "work_external.json"
    done = cli(["keda", "simulate", "--scenario", str(scenario)], dict(os.environ))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["replicas"] for line in lines] == [0, 1, 4, 8, 9, 18]
    assert lines[4]["metric"] == 89.0  # held while three replicas load, though work grew
    assert lines[0] == {"t": 0, "tokens": 0, "metric": 0.0, "metric_name": "pending-work-seconds",
                        "active": False, "replicas": 0}  # fmt: skip
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"trigger": {"type": "external", "metadata": {"capability": "x"}},
                               "steps": [{"t": 0, "tokns": 5}]}))  # fmt: skip
    refused = cli(["keda", "simulate", "--scenario", str(bad)], dict(os.environ))
    assert refused.returncode == 2
    assert "steps[0].tokns is not a scenario key; did you mean tokens?" in refused.stderr


def test_offsets_past_no_record_cost_nothing_and_are_not_unread() -> None:
    sums = PartitionSums()
    sums.append(0, 10)
    sums.advance(3)  # a transaction marker at 1 and 2: the tail's position is 3
    assert sums.end == 3
    assert sums.pending(0, mean=50.0, latest=3) == 10  # no marker counted at the mean
    sums.advance(2)  # never backwards
    assert sums.end == 3


def test_tasks_that_spent_no_tokens_do_not_calibrate() -> None:
    estimator = TokenEstimator(tokens_per_byte=0.25, warmup=1)
    for _ in range(50):
        estimator.observe(input_bytes=400, tokens=0)  # a rule engine: no model, no tokens
    assert estimator.guess(400) == 100
