"""Where a key's records are (Kafka's default partitioner), and the one source of topic names."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from expediter.messaging import TopicNames
from expediter.messaging.topology import partition_for_key

# Kafka's own vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
# testMurmur2): murmur2 as the Java client computes it, a signed 32-bit int.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java"), sorted(JAVA_MURMUR2.items()))
def test_a_key_goes_where_the_java_client_puts_it(key: bytes, java: int) -> None:
    # The Java client's partition is toPositive(murmur2(key)) % partitions; with 2**31
    # partitions that is toPositive(murmur2(key)) itself.
    assert partition_for_key(key, 2**31) == java & 0x7FFFFFFF
    for partitions in (1, 3, 12, 50):
        assert partition_for_key(key, partitions) == (java & 0x7FFFFFFF) % partitions


def test_known_partitions_of_a_key() -> None:
    # toPositive(murmur2("foobar")) = 1357151166
    assert [partition_for_key(b"foobar", n) for n in (10, 50)] == [6, 16]


@given(key=st.binary(min_size=1, max_size=64), partitions=st.integers(1, 64))
def test_the_same_partition_as_the_producer_that_wrote_it(key: bytes, partitions: int) -> None:
    every = list(range(partitions))
    assert partition_for_key(key, partitions) == DefaultPartitioner()(key, every, every)


def test_topic_names_follow_the_prefix() -> None:
    names = TopicNames("t1.")
    assert (names.tasks("probe"), names.group("probe"), names.dlq("probe")) == (
        "t1.tasks.probe",
        "t1.agents.probe",
        "t1.dlq.probe",
    )
    assert names.orchestrator_dlq == "t1.dlq.orchestrator"


def test_a_dlq_is_named_by_capability_or_by_its_topic() -> None:
    names = TopicNames("t1.")
    assert names.dlq_named("probe") == "t1.dlq.probe"
    assert names.dlq_named("orchestrator") == names.orchestrator_dlq
    assert names.dlq_named("other.dlq.probe") == "other.dlq.probe"


def test_the_topics_that_carry_a_workflow_under_a_prefix() -> None:
    names = TopicNames("t1.")
    cluster = [
        "t1.workflows.events", "t1.tasks.probe", "t1.retry.probe.10s", "t1.dlq.probe",
        "t1.results", "t1.workflows.completed", "t1.workflows.commands", "t1.registry",
        "t1.tools.ledger", "t1.expediter-orchestrator-workflows-changelog", "tasks.probe",
        "t2.results", "__consumer_offsets", "t1.approvals.decisions", "t1.approvals.requests",
    ]  # fmt: skip
    assert names.workflow_topics(cluster) == [
        "t1.approvals.decisions",
        "t1.dlq.probe",
        "t1.results",
        "t1.retry.probe.10s",
        "t1.tasks.probe",
        "t1.workflows.completed",
        "t1.workflows.events",
    ]
    assert TopicNames().workflow_topics(cluster) == ["tasks.probe"]
