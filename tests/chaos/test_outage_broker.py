"""The broker itself restarted: ``stop`` then ``start --keep`` keeps its data, cluster and ports,
from Python (what the chaos tests use) and from the CLI (what an operator types)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from expediter.dev import LocalBroker
from expediter.errors import LocalBrokerError
from expediter.messaging import client_options, connected
from expediter.settings import KafkaSettings
from tests.chaos.conftest import ChaosBroker
from tests.support import cli, read


async def _produce_committed(settings: KafkaSettings, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        **client_options(settings), transactional_id=f"chaos-{uuid.uuid4().hex[:8]}"
    )
    async with connected(producer, settings), producer.transaction():
        for value in values:
            await producer.send(topic, value)


async def test_an_outage_keeps_committed_records_offsets_and_ports(
    chaos_broker: ChaosBroker,
) -> None:
    topic, group = f"chaos.{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    settings = chaos_broker.settings
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    before = [f"before-{n}".encode() for n in range(50)]
    await _produce_committed(settings, topic, before)
    consumer = AIOKafkaConsumer(
        topic, **client_options(settings), group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False, isolation_level="read_committed",
    )  # fmt: skip
    async with connected(consumer, settings):
        seen = 0
        while seen < 20:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=20 - seen)).values():
                seen += len(batch)
        await consumer.commit()
    old_pid = chaos_broker.pid

    await chaos_broker.outage(2.0)

    assert chaos_broker.pid != old_pid, "the broker process was not restarted"
    assert chaos_broker.outages[-1] >= 2.0
    after = [f"after-{n}".encode() for n in range(10)]
    await _produce_committed(chaos_broker.settings, topic, after)  # same bootstrap as before
    records = await read(settings, topic, until=lambda r: len(r) >= 60, timeout=60)
    assert sorted(r.value for r in records) == sorted(before + after)
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        offsets = await admin.list_consumer_group_offsets(group)
    assert sum(meta.offset for meta in offsets.values()) == 20, "committed offsets were lost"


async def test_keep_without_data_says_so_and_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(LocalBrokerError, match=r"no broker data to keep.*start without --keep"):
        await LocalBroker(tmp_path / "never-started").start(keep=True)


async def test_the_cli_restarts_the_broker_on_its_data_and_ports(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EXPEDITER_BOOTSTRAP"}
    env |= {"EXPEDITER_DEV_DIR": str(tmp_path / "dev"), "EXPEDITER_NO_DOCKER": "1"}
    refused = cli(["dev", "kafka", "start", "--keep"], env)
    assert refused.returncode == 2, refused.stderr
    assert "no broker data to keep" in refused.stderr
    assert "start without --keep" in refused.stderr
    try:
        first = json.loads(cli(["dev", "kafka", "start", "--json"], env).stdout)
        settings = KafkaSettings(bootstrap=first["bootstrap"])
        topic = f"kept.{uuid.uuid4().hex[:8]}"
        async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
            await admin.create_topics([NewTopic(topic, 1, 1)])
        await _produce_committed(settings, topic, [b"one", b"two"])
        stopped = cli(["dev", "kafka", "stop", "--json"], env)
        assert json.loads(stopped.stdout) == {"kind": "local", "stopped": True}
        assert cli(["dev", "kafka", "status", "--json"], env).returncode == 1

        kept = cli(["dev", "kafka", "start", "--keep", "--json"], env)

        assert kept.returncode == 0, kept.stderr
        second = json.loads(kept.stdout)
        assert second["bootstrap"] == first["bootstrap"]
        assert second["pid"] != first["pid"]
        again = json.loads(cli(["dev", "kafka", "start", "--keep", "--json"], env).stdout)
        assert again["pid"] == second["pid"], "a second start must find the running broker"
        records = await read(settings, topic, until=lambda r: len(r) >= 2, timeout=60)
        assert [r.value for r in records] == [b"one", b"two"]
    finally:
        cli(["dev", "kafka", "stop"], env)
