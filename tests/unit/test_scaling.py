"""The scaling engine against cases worked out by hand from KEDA's and Kubernetes' Go code.

Each test names the Go function it mirrors: kedacore/keda pkg/scalers/kafka_scaler.go,
pkg/scalers/scalersconfig/typed_config.go and pkg/scaling/executor/scale_scaledobjects.go;
kubernetes pkg/controller/podautoscaler/replica_calculator.go and horizontal.go, and
pkg/apis/autoscaling/v2/defaults.go. Quirks are asserted on purpose (keda#4483 among them).
"""

from __future__ import annotations

from typing import Any

import pytest

from expediter.errors import ConfigurationError
from expediter.scaling import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    HorizontalAutoscaler,
    KafkaTrigger,
    LagMeter,
    ScaledObjectSpec,
    Simulation,
    find_factors,
    parse_behavior,
    parse_scenario,
    parse_trigger,
    per_pod_replicas,
)
from expediter.scaling.lagging import go_quotient


def problems_of(metadata: dict[str, Any]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        parse_trigger(metadata)
    return str(caught.value)


def meter(**metadata: Any) -> LagMeter:
    return LagMeter(parse_trigger(metadata))


def hpa(
    behavior: dict[str, Any] | None = None, *, low: int = 1, high: int = 100
) -> HorizontalAutoscaler:
    parsed = parse_behavior(behavior) if behavior is not None else None
    return HorizontalAutoscaler(min_replicas=low, max_replicas=high, target=10, behavior=parsed)


# --- trigger metadata: kafka_scaler.go kafkaMetadata + Validate, typed_config.go ---------------


def test_omitted_metadata_takes_kedas_defaults() -> None:
    trigger = parse_trigger({})
    assert trigger == KafkaTrigger()
    assert (trigger.lag_threshold, trigger.activation_lag_threshold) == (10, 0)
    assert trigger.offset_reset_policy == "latest"
    assert not trigger.allow_idle_consumers
    assert not trigger.exclude_persistent_lag
    assert trigger.partition_limitation is None


def test_strings_numbers_and_booleans_are_read_like_a_scaledobjects_strings() -> None:
    trigger = parse_trigger(
        {"lagThreshold": "5", "activationLagThreshold": 3, "excludePersistentLag": True,
         "allowIdleConsumers": "false", "offsetResetPolicy": "earliest", "topic": "t"}
    )  # fmt: skip
    assert (trigger.lag_threshold, trigger.activation_lag_threshold) == (5, 3)
    assert trigger.exclude_persistent_lag
    assert not trigger.allow_idle_consumers
    assert trigger.offset_reset_policy == "earliest"


def test_values_are_trimmed_and_an_empty_value_counts_as_omitted() -> None:
    # typed_config.go configParamValue: strings.TrimSpace, then `ok && param != ""`.
    assert parse_trigger({"lagThreshold": " 7 "}).lag_threshold == 7
    assert parse_trigger({"lagThreshold": ""}).lag_threshold == 10
    assert parse_trigger({"lagThreshold": None}).lag_threshold == 10


@pytest.mark.parametrize("value", ["+10", "10.0", "1e1", "010", "ten", 10.5])
def test_integers_are_decoded_as_json_so_other_spellings_are_refused(value: object) -> None:
    # typed_config.go setConfigValueHelper: json.Unmarshal into int64.
    message = problems_of({"lagThreshold": value})
    assert "trigger.lagThreshold" in message
    assert "whole number" in message


@pytest.mark.parametrize("value", ["0", "-3", 0])
def test_lag_threshold_must_be_positive(value: object) -> None:
    # kafka_scaler.go Validate: LagThreshold <= 0 -> "must be positive number".
    message = problems_of({"lagThreshold": value})
    assert "trigger.lagThreshold must be > 0" in message
    assert '"10"' in message  # the fix


def test_activation_lag_threshold_may_be_zero_but_not_negative() -> None:
    assert parse_trigger({"activationLagThreshold": "0"}).activation_lag_threshold == 0
    assert "trigger.activationLagThreshold must be >= 0" in problems_of(
        {"activationLagThreshold": "-1"}
    )


@pytest.mark.parametrize("value", ["True", "1", "yes", "TRUE"])
def test_booleans_are_only_true_or_false(value: str) -> None:
    message = problems_of({"excludePersistentLag": value})
    assert "trigger.excludePersistentLag" in message
    assert '"true" or "false"' in message


def test_offset_reset_policy_is_latest_or_earliest_exactly() -> None:
    # The enum tag latest;earliest is compared as is.
    assert "trigger.offsetResetPolicy" in problems_of({"offsetResetPolicy": "Earliest"})


def test_forbidden_combinations_are_each_named() -> None:
    message = problems_of(
        {"allowIdleConsumers": "true", "limitToPartitionsWithLag": "true",
         "ensureEvenDistributionOfPartitions": "true"}
    )  # fmt: skip
    lines = message.splitlines()
    assert any("allowIdleConsumers and trigger.limitToPartitionsWithLag" in x for x in lines)
    assert any("limitToPartitionsWithLag needs trigger.topic" in x for x in lines)
    assert any("limitToPartitionsWithLag and trigger.ensureEven" in x for x in lines)
    assert any("ensureEvenDistributionOfPartitions needs trigger.topic" in x for x in lines)
    # allowIdleConsumers with ensureEvenDistributionOfPartitions is allowed.
    parse_trigger({"allowIdleConsumers": "true", "ensureEvenDistributionOfPartitions": "true",
                   "topic": "t"})  # fmt: skip


def test_an_unknown_key_is_refused_with_the_closest_known_one() -> None:
    assert "did you mean lagThreshold?" in problems_of({"lagTreshold": "5"})


def test_every_problem_is_listed_at_once() -> None:
    message = problems_of({"lagThreshold": "0", "offsetResetPolicy": "x", "sasl": "plaintext"})
    assert len(message.splitlines()) == 2  # sasl is a connection key: accepted, unused


def test_partition_limitation_ids_and_ranges_apply_only_with_a_topic() -> None:
    # kafka_scaler.go parsePartitionLimitation; Validate drops it when Topic == "".
    assert parse_trigger({"partitionLimitation": "0, 2-3", "topic": "t"}).partition_limitation == (
        0, 2, 3,
    )  # fmt: skip
    assert parse_trigger({"partitionLimitation": "0,2"}).partition_limitation is None
    assert parse_trigger({"partitionLimitation": "5-3", "topic": "t"}).partition_limitation == ()
    assert "partitionLimitation" in problems_of({"partitionLimitation": "1,x", "topic": "t"})


def test_a_trigger_built_in_code_is_validated_too() -> None:
    with pytest.raises(ConfigurationError, match="lagThreshold must be > 0"):
        KafkaTrigger(lag_threshold=0)


# --- lag of one partition: kafka_scaler.go getLagForPartition -----------------------------------


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({}, 1),  # latest: 1, so that a group with no offset still gets a replica
        ({"scaleToZeroOnInvalidOffset": "true"}, 0),
        ({"offsetResetPolicy": "earliest"}, 120),  # the whole partition
        ({"offsetResetPolicy": "earliest", "scaleToZeroOnInvalidOffset": "true"}, 0),
    ],
)
def test_no_committed_offset(metadata: dict[str, str], expected: int) -> None:
    reading = meter(lagThreshold="1000", **metadata).read([120], [None])
    assert (reading.lag, reading.lag_with_persistent, reading.metric) == (expected,) * 3


def test_lag_is_latest_minus_committed() -> None:
    assert meter(lagThreshold="1000").read([120, 80], [100, 40]).lag == 20 + 40


def test_exclude_persistent_lag_remembers_each_partitions_previous_poll() -> None:
    lags = meter(excludePersistentLag="true", lagThreshold="1000")
    first = lags.read([10, 20], [5, 7])  # nothing remembered yet: both count
    assert (first.lag, first.lag_with_persistent) == (5 + 13, 18)
    second = lags.read([12, 25], [5, 9])  # p0 stuck at 5: out of the metric, in activation
    assert (second.lag, second.lag_with_persistent) == (16, 7 + 16)
    assert [p.persistent for p in second.per_partition] == [True, False]
    third = lags.read([12, 25], [6, 9])  # p0 moved, p1 stuck at 9
    assert (third.lag, third.lag_with_persistent) == (6, 6 + 16)


def test_persistent_lag_alone_activates_but_asks_for_nothing() -> None:
    lags = meter(excludePersistentLag="true", activationLagThreshold="5")
    lags.read([50], [0])
    stuck = lags.read([50], [0])
    assert (stuck.lag, stuck.metric, stuck.lag_with_persistent, stuck.active) == (0, 0, 50, True)


def test_a_partition_without_offset_leaves_the_memory_alone() -> None:
    lags = meter(excludePersistentLag="true", lagThreshold="1000")
    lags.read([10], [None])
    assert lags.read([10], [4]).lag == 6  # first sighting of an offset: counts


# --- total lag and metric: kafka_scaler.go getTotalLag ------------------------------------------


@pytest.mark.parametrize(
    ("latest", "metric"),
    [
        ([10, 10, 15], 35),  # 35 // 10 = 3 is not > 3 partitions: uncapped, the HPA asks for 4
        ([13, 13, 13], 39),
        ([10, 10, 20], 30),  # 40 // 10 = 4 > 3: capped to 3 * 10
        ([100, 0, 0], 30),
    ],
)
def test_cap_uses_integer_division_keda_4483(latest: list[int], metric: int) -> None:
    assert meter().read(latest, [0, 0, 0]).metric == metric


def test_allow_idle_consumers_lifts_the_cap() -> None:
    assert meter(allowIdleConsumers="true").read([100, 0, 0], [0, 0, 0]).metric == 100


def test_limit_to_partitions_with_lag_caps_at_partitions_that_have_lag() -> None:
    lags = meter(limitToPartitionsWithLag="true", topic="t")
    assert lags.read([50, 0, 0, 0], [0, 0, 0, 0]).metric == 10  # 5 > 1 partition with lag
    assert lags.read([15, 5, 0, 0], [0, 0, 0, 0]).metric == 20  # 2 is not > 2
    assert lags.read([0, 0, 0, 0], [0, 0, 0, 0]).metric == 0


def test_a_persistent_partition_does_not_count_as_having_lag() -> None:
    lags = meter(limitToPartitionsWithLag="true", excludePersistentLag="true", topic="t")
    lags.read([30, 30], [0, 0])
    reading = lags.read([30, 60], [0, 10])  # p0 stuck: 1 partition with lag, 50 // 10 > 1
    assert (reading.partitions_with_lag, reading.metric) == (1, 10)


@pytest.mark.parametrize(
    ("partitions", "total", "metric"),
    [
        (6, 0, 10),  # the smallest factor, 1, already covers 0: a lag of 0 reads as 1 replica
        (6, 15, 20),  # factors 1, 2, 3, 6: 2 * 10 >= 15
        (6, 25, 30),
        (6, 35, 60),
        (6, 1000, 60),  # no factor covers it: the partition count
        (7, 11, 70),  # prime: 1 or 7
    ],
)
def test_ensure_even_distribution_rounds_to_a_factor(
    partitions: int, total: int, metric: int
) -> None:
    # getNextFactorThatBalancesConsumersToTopicPartitions, then the cap.
    lags = meter(ensureEvenDistributionOfPartitions="true", topic="t")
    latest = [total] + [0] * (partitions - 1)
    reading = lags.read(latest, [0] * partitions)
    assert (reading.lag, reading.metric) == (total, metric)
    assert reading.active is (total > 0)  # activation reads the lag, not the metric


def test_find_factors_and_go_division() -> None:
    assert find_factors(12) == [1, 2, 3, 4, 6, 12]
    assert find_factors(1) == [1]
    assert find_factors(0) == []
    assert go_quotient(-5, 10) == 0  # Go truncates toward zero, where Python's -5 // 10 is -1
    assert go_quotient(40, 10) == 4


def test_partition_limitation_counts_only_the_listed_partitions() -> None:
    reading = meter(partitionLimitation="0,2", topic="t", lagThreshold="1000").read(
        [10, 1000, 10], [0, 0, 0]
    )
    assert (reading.lag, reading.partitions) == (20, 2)
    with pytest.raises(ConfigurationError, match="selects none"):
        meter(partitionLimitation="7", topic="t").read([1, 1], [0, 0])


@pytest.mark.parametrize(("lag", "active"), [(5, False), (6, True)])
def test_activation_is_strictly_above_the_threshold(lag: int, active: bool) -> None:
    # GetMetricsAndActivity: totalLagWithPersistent > activationLagThreshold.
    assert meter(activationLagThreshold="5").read([lag], [0]).active is active


def test_default_activation_needs_any_lag() -> None:
    assert not meter().read([5], [5]).active
    assert meter().read([0], [None]).active  # no offset counts 1


# --- the HPA's proposal: replica_calculator.go GetExternalPerPodMetricReplicas ------------------


@pytest.mark.parametrize(
    ("current", "metric", "expected"),
    [
        (10, 89, 9),  # ratio 0.89: below the band, ceil(8.9)
        (10, 90, 10),  # ratio 0.9: the lower edge is inside
        (10, 110, 10),  # ratio 1.1: the upper edge is inside
        (10, 111, 12),  # ratio 1.11: ceil(11.1)
        (3, 33, 3),  # 33 / 30 is the same double as 1.0 + 0.1: inside
        (1, 41, 5),
        (4, 0, 0),
    ],
)
def test_tolerance_band_is_inclusive_at_both_edges(
    current: int, metric: int, expected: int
) -> None:
    assert per_pod_replicas(current, metric * 1000, 10 * 1000, 0.1, 0.1) == expected


# --- no behavior: horizontal.go stabilizeRecommendation, convertDesiredReplicasWithRules -------


@pytest.mark.parametrize(
    ("current", "high", "expected"), [(1, 100, 4), (3, 100, 6), (3, 5, 5), (10, 100, 20)]
)
def test_scale_up_limit_is_max_of_twice_current_and_4(
    current: int, high: int, expected: int
) -> None:
    assert hpa(high=high).sync(0, current, 1000).desired == expected


def test_no_behavior_keeps_the_max_of_the_last_300_seconds_inclusive() -> None:
    autoscaler = hpa()
    assert autoscaler.sync(0, 4, 40).desired == 4
    assert autoscaler.sync(15, 4, 10).desired == 4  # proposes 1, the window holds 4
    assert autoscaler.sync(300, 4, 10).desired == 4  # Before(cutoff) is strict: t=0 still in
    decision = autoscaler.sync(301, 4, 10)
    assert (decision.proposal, decision.desired) == (1, 1)


def test_the_first_sync_records_the_current_count_as_a_recommendation() -> None:
    # recordInitialRecommendation: a fresh HPA does not scale down for 300 s.
    autoscaler = hpa()
    assert autoscaler.sync(0, 5, 0).desired == 5
    assert autoscaler.sync(301, 5, 0).desired == 1


def test_hpa_clamps_a_count_outside_its_bounds_without_the_metric() -> None:
    assert hpa(high=3).sync(0, 5, 1000).desired == 3
    decision = hpa(low=2).sync(0, 1, 0)
    assert (decision.proposal, decision.desired) == (None, 2)


# --- behavior: horizontal.go stabilizeRecommendationWithBehaviors, rate limits ----------------


def test_behavior_defaults_are_the_api_servers() -> None:
    # defaults.go: up 0 s, max(+4 pods, +100%) per 15 s; down 300 s, -100% per 15 s.
    assert parse_behavior({}) == Behavior(DEFAULT_SCALE_UP, DEFAULT_SCALE_DOWN)
    partial = parse_behavior({"scaleUp": {"stabilizationWindowSeconds": 60}})
    assert partial is not None
    assert partial.scale_up.policies == DEFAULT_SCALE_UP.policies
    assert partial.scale_up.stabilization_window_seconds == 60
    assert partial.scale_down == DEFAULT_SCALE_DOWN
    assert parse_behavior(None) is None


def test_default_scale_up_policies_count_from_the_periods_start() -> None:
    autoscaler = hpa({})
    assert autoscaler.sync(0, 1, 200).desired == 5  # max(1 + 4, ceil(1 * 2))
    assert autoscaler.sync(15, 5, 200).desired == 10  # the t=0 event is not After(15 - 15)
    # t=20: the +5 at t=15 is inside the 15 s period, so it starts from 5: max(9, 10) = 10.
    assert autoscaler.sync(20, 10, 200).desired == 10


@pytest.mark.parametrize(("select", "expected"), [("Max", 5), ("Min", 2), ("Disabled", 1)])
def test_select_policy_up(select: str, expected: int) -> None:
    assert hpa({"scaleUp": {"selectPolicy": select}}).sync(0, 1, 200).desired == expected


def test_pods_policy_down_over_a_period() -> None:
    pods = [{"type": "Pods", "value": 1, "periodSeconds": 60}]
    rules = {"scaleDown": {"stabilizationWindowSeconds": 0, "policies": pods}}
    autoscaler = hpa(rules)
    assert autoscaler.sync(0, 5, 0).desired == 4
    assert autoscaler.sync(30, 4, 0).desired == 4  # the period started at 5: 5 - 1 = 4
    assert autoscaler.sync(61, 4, 0).desired == 3  # the t=0 event left the period


@pytest.mark.parametrize(("select", "expected"), [("Max", 3), ("Min", 6)])
def test_percent_down_truncates_and_select_policy_down(select: str, expected: int) -> None:
    # int32(7 * (1 - 50/100)) = 3; Pods 1 gives 6. Max picks the bigger change, Min the smaller.
    policies = [{"type": "Pods", "value": 1, "periodSeconds": 15},
                {"type": "Percent", "value": 50, "periodSeconds": 15}]  # fmt: skip
    rules = {"scaleDown": {"stabilizationWindowSeconds": 0, "selectPolicy": select,
                           "policies": policies}}  # fmt: skip
    assert hpa(rules).sync(0, 7, 0).desired == expected


def test_scale_down_window_is_exclusive_with_a_behavior() -> None:
    # After(cutoff) is strict here, where the no-behavior window's Before(cutoff) is not.
    rules = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    autoscaler = hpa(rules)
    assert autoscaler.sync(0, 4, 40).desired == 4
    assert autoscaler.sync(59, 4, 10).desired == 4
    assert autoscaler.sync(60, 4, 10).desired == 1


def test_scale_up_window_takes_the_min() -> None:
    autoscaler = hpa({"scaleUp": {"stabilizationWindowSeconds": 60}})
    assert autoscaler.sync(0, 2, 20).desired == 2
    assert autoscaler.sync(30, 2, 100).desired == 2  # the 2s of t=0 hold it
    assert autoscaler.sync(61, 2, 100).desired == 6  # 10 stands alone; +4 pods per 15 s


def test_tolerance_from_the_behavior() -> None:
    assert hpa({"scaleUp": {"tolerance": 0.5}}).sync(0, 2, 25).desired == 2
    parsed = parse_behavior({"scaleDown": {"tolerance": "50m"}})
    assert parsed is not None
    assert parsed.scale_down.tolerance == 0.05


def test_invalid_behaviors_name_the_field() -> None:
    for bad, field in [
        ({"scaleUp": {"selectPolicy": "Biggest"}}, "scaleUp.selectPolicy"),
        ({"scaleDown": {"stabilizationWindowSeconds": 3601}}, "stabilizationWindowSeconds"),
        ({"scaleUp": {"policies": []}}, "scaleUp.policies"),
        ({"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]}}, "value"),
        ({"scaleUp": {"policies": [{"type": "Pod", "value": 1, "periodSeconds": 15}]}}, "type"),
        ({"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 1801}]}},
         "periodSeconds"),
        ({"scaleUpp": {}}, "did you mean scaleUp"),
    ]:  # fmt: skip
        with pytest.raises(ConfigurationError, match=field):
            parse_behavior(bad)


# --- KEDA's part: scale_scaledobjects.go RequestScale, scaleToZeroOrIdle ----------------------


def simulation(
    replicas: int = 0,
    behavior: Behavior | None = None,
    trigger: KafkaTrigger | None = None,
    *,
    min_replica_count: int = 0,
    cooldown_period: int = 300,
    initial_cooldown_period: int = 0,
) -> Simulation:
    spec = ScaledObjectSpec(
        min_replica_count=min_replica_count,
        cooldown_period=cooldown_period,
        initial_cooldown_period=initial_cooldown_period,
        behavior=behavior,
    )
    return Simulation(trigger or KafkaTrigger(), spec, replicas)


def test_activation_at_zero_goes_to_one_and_the_hpa_waits_a_step() -> None:
    sim = simulation()
    first = sim.step(0, [100], [0])
    assert (first.replicas, first.keda_changed, first.hpa) == (1, True, None)
    no_offsets = simulation()
    assert no_offsets.step(0, [0, 0, 0, 0, 0], [None] * 5).replicas == 1  # lag 1 each: active
    big = simulation()
    assert big.step(0, [50, 50, 50], [0, 0, 0]).replicas == 1  # metric 30 asks for 3: HPA waits
    assert big.step(15, [50, 50, 50], [0, 0, 0]).replicas == 3


def test_activation_goes_to_min_replica_count() -> None:
    assert simulation(min_replica_count=2).step(0, [5], [0]).replicas == 2


def test_cooldown_to_zero_is_strictly_after_last_active_plus_cooldown() -> None:
    sim = simulation(replicas=1, cooldown_period=300)
    assert sim.step(0, [5], [0]).replicas == 1  # active: lastActiveTime = 0
    waiting = sim.step(300, [5], [5])
    assert (waiting.replicas, waiting.keda_changed) == (1, False)
    gone = sim.step(301, [5], [5])
    assert (gone.replicas, gone.keda_changed, gone.hpa) == (0, True, None)


def test_activity_with_replicas_moves_last_active_time() -> None:
    sim = simulation(replicas=1, cooldown_period=60)
    sim.step(0, [5], [0])
    sim.step(50, [9], [0])  # still active
    assert sim.last_active_time == 50
    assert sim.step(110, [9], [9]).replicas == 1
    assert sim.step(111, [9], [9]).replicas == 0


@pytest.mark.parametrize(("initial", "stays_at", "gone_at"), [(60, 160, 161), (0, 100, 101)])
def test_never_active_uses_first_step_plus_initial_cooldown(
    initial: int, stays_at: int, gone_at: int
) -> None:
    sim = simulation(replicas=3, initial_cooldown_period=initial)
    assert sim.step(100, [0], [0]).replicas == 3  # the first step is the creation time
    if stays_at != 100:
        assert sim.step(stays_at, [0], [0]).replicas == 3
    assert sim.step(gone_at, [0], [0]).replicas == 0


def test_min_replica_count_keeps_keda_from_scaling_to_zero() -> None:
    sim = simulation(replicas=2, min_replica_count=2, cooldown_period=0)
    sim.step(0, [0], [0])
    assert sim.step(1000, [0], [0]).replicas == 2


def test_not_active_below_min_replica_count_goes_to_it() -> None:
    result = simulation(replicas=1, min_replica_count=3).step(0, [0], [0])
    assert (result.replicas, result.keda_changed) == (3, True)


def test_the_hpa_records_its_first_recommendation_at_zero_replicas() -> None:
    # horizontal.go calls recordInitialRecommendation before finding scaling disabled at 0, so
    # a 60 s scale-up window holds the recorded 0 for a minute after the first sync.
    behavior = parse_behavior({"scaleUp": {"stabilizationWindowSeconds": 60}})
    sim = simulation(behavior=behavior, trigger=KafkaTrigger(allow_idle_consumers=True))
    assert sim.step(0, [0], [0]).replicas == 0
    assert sim.step(15, [100], [0]).replicas == 1  # KEDA: 0 -> 1
    assert sim.step(30, [100], [0]).replicas == 1  # the window's min is the 0 of t=0
    assert sim.step(61, [100], [0]).replicas == 5  # +4 pods per 15 s


def test_steps_must_move_forward_and_match_partitions() -> None:
    sim = simulation()
    sim.step(10, [0], [0])
    with pytest.raises(ConfigurationError, match="increasing time"):
        sim.step(10, [0], [0])
    with pytest.raises(ConfigurationError, match="one committed offset"):
        sim.step(20, [0, 0], [0])


def test_scaled_object_bounds() -> None:
    with pytest.raises(ConfigurationError, match="maxReplicaCount"):
        ScaledObjectSpec(min_replica_count=5, max_replica_count=4)
    with pytest.raises(ConfigurationError, match="maxReplicaCount"):
        ScaledObjectSpec(max_replica_count=0)


# --- scenario documents -----------------------------------------------------------------------


def test_a_scenario_lists_every_problem_with_its_key() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_scenario(
            {"trigger": {"lagThreshold": "0"}, "scaledObject": {"cooldownPeriods": 1},
             "replicas": -1, "extra": 1,
             "steps": [{"t": 0, "latest": [1], "committed": [-1]},
                       {"t": 0, "latest": [1, 2], "committed": [None]}]}
        )  # fmt: skip
    message = str(caught.value)
    for fragment in ("extra is not a scenario key", "trigger.lagThreshold must be > 0",
                     "did you mean cooldownPeriod?", "replicas must be", "use null",
                     "steps[1].t (0) must be later", "steps[1]: latest has 2"):  # fmt: skip
        assert fragment in message


def test_a_scenario_runs_step_by_step() -> None:
    scenario = parse_scenario(
        {"trigger": {}, "steps": [{"t": 0, "latest": [3], "committed": [None]}]}
    )
    [result] = list(scenario.run())
    assert result.as_line() == {"t": 0, "lag": 1, "metric": 1, "active": True, "replicas": 1}
    assert list(result.as_line()) == ["t", "lag", "metric", "active", "replicas"]
    assert "KEDA 0 -> 1" in result.explain()
