"""Where the orchestrator's table restore ends (expediter.orchestrator.recovering), on a real
broker: a changelog partition written in transactions ends with a commit marker, which a
read_committed consumer is never handed, so the restore is done at the record before it.

Faust took the marker's offset for the last record and waited 2 x 5 s of idle reads before it
gave up on it, on every start.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from expediter.dev import Broker
from expediter.messaging import client_options, connected
from expediter.orchestrator.recovering import ChangelogRecovery
from expediter.orchestrator.running import build_app
from expediter.settings import OrchestratorSettings


class _Highwaters:
    """The one call Faust's recovery makes of its consumer here, answered by a real one."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    async def highwaters(self, *tps: TopicPartition) -> dict[TopicPartition, int]:
        return dict(await self._consumer.end_offsets(list(tps)))


async def test_the_restore_ends_at_the_last_record_before_the_commit_marker(
    kafka: Broker, topic_name: str, tmp_path: Path
) -> None:
    options = client_options(kafka.settings)
    async with connected(AIOKafkaAdminClient(**options), kafka.settings) as admin:
        await admin.create_topics([NewTopic(topic_name, 3, 1)])
    written, once, empty = (TopicPartition(topic_name, p) for p in range(3))
    producer = AIOKafkaProducer(**options, transactional_id=f"{topic_name}-writer")
    async with connected(producer, kafka.settings):
        for values in ([b"a", b"b"], [b"c"]):  # two transactions on one partition
            async with producer.transaction():
                for value in values:
                    await producer.send(topic_name, value, key=value, partition=0)
        async with producer.transaction():
            await producer.send(topic_name, b"d", key=b"d", partition=1)

    reader = AIOKafkaConsumer(**options, isolation_level="read_committed")
    async with connected(reader, kafka.settings):
        reader.assign([written, once, empty])
        await reader.seek_to_beginning()
        last: dict[TopicPartition, int] = {}
        for _ in range(20):
            for tp, records in (await reader.getmany(timeout_ms=500)).items():
                last[tp] = records[-1].offset
        assert last == {written: 3, once: 0}, "a, b (marker), c (marker); d (marker)"

        app = build_app(kafka.settings, OrchestratorSettings(data_dir=tmp_path, http_port=0), {})
        recovery = ChangelogRecovery(app, app.tables)
        highwaters: Counter[Any] = Counter()
        await recovery._build_highwaters(
            _Highwaters(reader), {written, once, empty}, highwaters, "active"
        )
    assert highwaters == {written: 3, once: 0, empty: -1}, "the last records; none in empty"
