"""Bench: replaying a range against a raw aiokafka read of the same range, in the same run.

A topic is filled with ~330-byte task events. Each round reads the whole range twice:

- replay: :class:`~expediter.replaying.HistoryReader` plans the range (end offsets) and reads it
  by manual assignment, a fetched batch at a time, and every record is formatted as a JSON line
  written to /dev/null, which is ``expediter replay TOPIC --json > /dev/null`` without the
  process start (the runtime's events are copied into their lines unparsed, as trusted);
- raw: an aiokafka consumer with the same fetch settings, assigned the same partitions, reads
  up to the same end offsets and touches each value, nothing more.

Both clients are connected before the clock starts, and they take turns to read first.
``ratio`` = replay records/s / raw records/s (the best round of each); ``median_round_ratio``
is the median over rounds of each round's own ratio, and ``cpu_ratio`` the median of each
round's raw CPU time over its replay CPU time (this process's). The last line is one JSON
object.

    .venv/bin/python bench/bench_replay.py [--records 10000] [--rounds 5] [--partitions 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from common import emit, task_event

from expediter.dev import provided_broker
from expediter.events import to_record
from expediter.messaging import client_options, connected
from expediter.replaying import HistoryReader, Selection, json_lines
from expediter.settings import DevSettings, KafkaSettings

FETCH_BYTES = 8 * 1024 * 1024  # HistoryReader's default, given to the raw reader too


async def fill(settings: KafkaSettings, topic: str, count: int, partitions: int) -> int:
    async with connected(AIOKafkaAdminClient(**client_options(settings)), settings) as admin:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    size = 0
    options = client_options(settings)
    async with connected(AIOKafkaProducer(**options, linger_ms=5), settings) as producer:
        for n in range(count):
            record = to_record(task_event(n))
            size = len(record.value)
            await producer.send(topic, record.value, key=record.key, headers=record.headers)
        await producer.flush()
    return size


async def replay_round(reader: HistoryReader, topic: str, sink: TextIO) -> tuple[int, float]:
    started = time.perf_counter()
    plan = await reader.plan(Selection(topic=topic))
    count = 0
    async for records in reader.read_batches(plan):  # as the CLI writes its --json lines
        sink.write(json_lines(records))
        count += len(records)
    return count, time.perf_counter() - started


async def raw_round(consumer: AIOKafkaConsumer, topic: str, partitions: int) -> tuple[int, float]:
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    started = time.perf_counter()
    begins = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, begins[tp])
    count = size = 0
    behind = [tp for tp in tps if ends[tp] > 0]
    while behind:
        batches = await consumer.getmany(*behind, timeout_ms=200, max_records=10_000)
        for records in batches.values():
            for record in records:
                size += len(record.value or b"")
                count += 1
        behind = [tp for tp in behind if await consumer.position(tp) < ends[tp]]
    seconds = time.perf_counter() - started
    # Unassigned, or its idle long-polls would delay the next round's offset lookups, which
    # share the connection (the replay reader unassigns at the end of each read too).
    consumer.assign([])
    return count, seconds


async def _timed(read: Awaitable[tuple[int, float]]) -> tuple[tuple[int, float], float]:
    """The read's (records, seconds) and the CPU seconds this process spent on it."""
    cpu = time.process_time()
    result = await read
    return result, time.process_time() - cpu


async def bench(settings: KafkaSettings, args: argparse.Namespace, sink: TextIO) -> dict[str, Any]:
    topic = f"bench-replay-{uuid.uuid4().hex[:8]}"
    size = await fill(settings, topic, args.records, args.partitions)
    raw_consumer = AIOKafkaConsumer(
        **client_options(settings), group_id=None, enable_auto_commit=False,
        isolation_level="read_committed", max_partition_fetch_bytes=FETCH_BYTES,
        fetch_max_bytes=max(FETCH_BYTES * 4, 52_428_800), fetch_max_wait_ms=100,
    )  # fmt: skip
    replays: list[float] = []
    raws: list[float] = []
    cpu_ratios: list[float] = []
    async with HistoryReader(settings) as reader, connected(raw_consumer, settings):
        for index in range(args.rounds + 1):  # round 0 warms both up and is not counted
            # The sides take turns to go first: what a client still does just after its read
            # (its fetcher's last long poll) is charged to whichever side reads next, and it
            # cost the second side 15-30 ms of CPU a round here, always the replay's before.
            raw_first = index % 2 == 0
            if raw_first:
                (count, seconds), raw_cpu = await _timed(
                    raw_round(raw_consumer, topic, args.partitions)
                )
            (replayed, replay_seconds), replay_cpu = await _timed(replay_round(reader, topic, sink))
            if not raw_first:
                (count, seconds), raw_cpu = await _timed(
                    raw_round(raw_consumer, topic, args.partitions)
                )
            assert count == args.records, f"raw read {count} of {args.records}"
            assert replayed == args.records, f"replay read {replayed} of {args.records}"
            if index:
                raws.append(count / seconds)
                replays.append(replayed / replay_seconds)
                cpu_ratios.append(raw_cpu / replay_cpu)
                emit({"round": index, "raw_per_s": round(raws[-1]),
                      "replay_per_s": round(replays[-1])})  # fmt: skip
    replay, raw = max(replays), max(raws)
    round_ratios = [r / w for r, w in zip(replays, raws, strict=True)]
    return {
        "bench": "replay",
        "records": args.records,
        "partitions": args.partitions,
        "record_bytes": size,
        "replay_per_s": round(replay),
        "raw_per_s": round(raw),
        "ratio": round(replay / raw, 3),
        # Each round's replay rate over the same round's raw rate, the median of those: less
        # swayed than the best rounds by one lucky raw round on a shared machine.
        "median_round_ratio": round(statistics.median(round_ratios), 3),
        # The raw round's CPU seconds over the replay round's (this process only), median over
        # rounds: what the client costs, whatever else the machine runs at the time.
        "cpu_ratio": round(statistics.median(cpu_ratios), 3),
    }


async def run(args: argparse.Namespace, sink: TextIO) -> None:
    async with provided_broker(DevSettings()) as broker:
        emit(await bench(broker.settings, args, sink))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with open(os.devnull, "w", encoding="utf-8") as sink:
        asyncio.run(run(args, sink))


if __name__ == "__main__":
    main()
