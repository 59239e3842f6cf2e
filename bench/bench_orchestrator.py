"""Bench: the orchestrator running the 3-step field analysis with no-op agents, on a real broker.

Topics are applied under a fresh prefix; the orchestrator (``expediter orchestrator``) and one
worker per capability (``expediter worker bench/agents/noop_*.py``: the real agents' capability
names and models, handlers that return fixed outputs) run as processes. Field ids that start
with ``pests-`` have pests, so the crop mapper runs for them (``--pest-fraction`` of them).
A warm-up goes through :class:`~expediter.orchestrator.submitting.Submitter` (request-reply,
``expediter submit --wait``) and checks the reports; then:

- throughput: ``--workflows`` start commands are sent as fast as they go; ``workflows_per_s``
  = workflows / (first send -> last completion read on ``workflows.completed``);
- latency: ``--latency-count`` workflows at ``--rate`` per second; round trip = the completion
  record read (read_committed) - the moment before its start command was sent; p50 and p99;
- baseline, in the same run: raw aiokafka produce-to-consume on a bare topic at the same rate
  (acks=all, idempotent, like the submitter's producer); one-way latency p50.

Where the round trip goes (breakdown.py): during the latency phase a tap reads the commands,
tasks, results and completions (read_committed) and follows each workflow's trace id;
``critical_path_hops`` is the median number of Kafka hops on a workflow's critical path (4 for a
clean field: command, task, the later parallel result, completion; 6 when the crop mapper
runs), ``round_trip_p50_vs_floor`` is the round-trip p50 over (hops x raw one-way p50) (and the
same with p99s); ``round_trip_p50_vs_exactly_once_floor`` the same over the floor the
guarantees set (floors.py: one plain hop, the command, then hops - 1 transactional ones, each
priced by a raw aiokafka transactional echo at the same rate); and ``stages_p50_ms`` the median
time of each stage over the path: submit, orchestrator (fetch and stepping),
orchestrator_commit (its transaction until the record is readable: the commit interval shows
here), worker (fetch and handler), worker_commit.

``ratio`` = (2 x raw one-way p50) / (workflow round-trip p50): the round trip measured against
the two broker hops a request-reply needs at the least; higher is better, and it is <= 1.
Progress goes to stderr; the last stdout line is one JSON object.

The orchestrator is exactly-once: what it produces becomes visible to the workers and to the
client (read_committed) when it commits its transactions, every EXPEDITER_COMMIT_INTERVAL_SECONDS
(0.1 s by default; Faust's own default, 2.8 s, made each round trip take seconds). Each
orchestrator stage of a round trip waits for one such commit (two on a clean field, three when
the crop mapper runs); ``--commit-interval`` sets it for the orchestrator process.

    .venv/bin/python bench/bench_orchestrator.py [--workflows 500] [--rate 5] [--latency-count 50]
        [--pest-fraction 0.5] [--commit-interval SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from breakdown import STAGES, Tail, Tap, critical_path, medians, stages, trace_id
from common import percentiles
from floors import exactly_once_echo, raw_one_way

from expediter.dev import provided_broker
from expediter.events import Producer, WorkflowCommand, WorkflowEvent, decode, to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.messaging.topology import partition_count
from expediter.orchestrator.submitting import Submission, Submitter
from expediter.settings import DevSettings, KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
AGENTS = ROOT / "bench" / "agents"
FLEET = ("noop_soil", "noop_pests", "noop_map")
WORKFLOW = "field-analysis"
BENCH = Producer(name="bench-orchestrator", version="0")


def say(**fields: Any) -> None:
    print(json.dumps(fields), file=sys.stderr, flush=True)


def field_for(n: int, fraction: float) -> str:
    """Field ids such that ``fraction`` of any run of them has pests, spread evenly."""
    pests = int((n + 1) * fraction) > int(n * fraction)
    return f"{'pests' if pests else 'clean'}-{n}"


# --- the processes -------------------------------------------------------------------------


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "expediter.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def stop(procs: list[subprocess.Popen[bytes]], grace: float = 30.0) -> None:
    """SIGTERM each, then SIGKILL whatever has not exited by the deadline."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def fleet(env: dict[str, str], logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The three no-op workers and the orchestrator, stopped (and their logs shown on error)."""
    procs: list[subprocess.Popen[bytes]] = []
    commands = {a: ["worker", str(AGENTS / f"{a}.py")] for a in FLEET}
    commands["orchestrator"] = ["orchestrator", "--workflows", str(ROOT / "workflows")]
    try:
        for name, args in commands.items():
            with (logs / f"{name}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "expediter.cli", *args],
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                )
        yield procs
    except BaseException:
        for path in sorted(logs.glob("*.log")):
            print(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        stop(procs)


def check_alive(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")


# --- the clients ---------------------------------------------------------------------------


class Completions(Tail):
    """Reads ``workflows.completed`` (read_committed) from its end: id -> (when read, status)."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        super().__init__(settings, [topic])
        self.seen: dict[str, tuple[float, str]] = {}

    def on_fetch(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        now = time.monotonic()
        for records in batches.values():
            for record in records:
                event = decode(record.value, WorkflowEvent)
                self.seen.setdefault(event.workflow_id, (now, event.status))

    async def all_of(self, ids: set[str], timeout: float, procs: list[Any]) -> None:
        """Until every one of ``ids`` has completed; progress on stderr every 2 s."""
        deadline = time.monotonic() + timeout
        shown = time.monotonic()
        while not ids <= self.seen.keys():
            self.check()
            check_alive(procs)
            if time.monotonic() > deadline:
                missing = ids - self.seen.keys()
                raise TimeoutError(
                    f"{len(missing)} of {len(ids)} workflows not completed within {timeout:g}s, "
                    f"e.g. {next(iter(missing))}"
                )
            if time.monotonic() - shown >= 2:
                say(completed=len(ids & self.seen.keys()), of=len(ids))
                shown = time.monotonic()
            await asyncio.sleep(0.05)


def start_command(workflow_id: str, field_id: str) -> tuple[bytes, bytes, list[Any]]:
    record = to_record(
        WorkflowCommand(
            producer=BENCH,
            action="start",
            workflow_id=workflow_id,
            workflow=WORKFLOW,
            input={"field_id": field_id},
        )
    )
    assert record.key is not None
    return record.key, record.value, record.headers


def submitter_producer(settings: KafkaSettings, **extra: Any) -> AIOKafkaProducer:
    """Configured as the Submitter's producer is (acks=all, idempotent)."""
    return AIOKafkaProducer(
        **client_options(settings), acks="all", enable_idempotence=True, **extra
    )


# --- the phases ----------------------------------------------------------------------------


async def warm_up(
    settings: KafkaSettings, names: TopicNames, args: argparse.Namespace, procs: list[Any]
) -> float:
    """Request-reply through the Submitter until the fleet answers; the reports are checked."""
    started = time.monotonic()
    async with Submitter(settings, names, {WORKFLOW}) as client:
        first = [await client.submit(WORKFLOW, {"field_id": f}) for f in ("pests-w", "clean-w")]
        waiting = asyncio.create_task(client.wait(first, timeout=args.startup_timeout))
        while not waiting.done():
            check_alive(procs)
            await asyncio.wait({waiting}, timeout=0.5)
        waiting.result()
        ready = time.monotonic() - started
        say(phase="ready", seconds=round(ready, 1))
        for s, pests in zip(first, (True, False), strict=True):
            report = (s.outcome or {}).get("report") or {}
            ok = (s.outcome or {}).get("status") == "completed" and (
                report.get("map") is not None
            ) == pests
            assert ok, f"unexpected outcome for {s.workflow_id}: {s.outcome}"
        # More, spread over the partitions: Faust's transactional producers, one per partition,
        # start on first use.
        more: list[Submission] = []
        for n in range(args.warmup):
            more.append(await client.submit(WORKFLOW, {"field_id": field_for(n, 0.5)}))
        await client.wait(more, timeout=args.startup_timeout)
    return ready


async def throughput(
    settings: KafkaSettings,
    names: TopicNames,
    completions: Completions,
    args: argparse.Namespace,
    procs: list[Any],
) -> tuple[float, float, int]:
    ids = {
        f"wf-t{n:06d}-{uuid.uuid4().hex[:6]}": field_for(n, args.pest_fraction)
        for n in range(args.workflows)
    }
    async with connected(submitter_producer(settings, linger_ms=5), settings) as producer:
        started = time.monotonic()
        for workflow_id, field_id in ids.items():
            key, value, headers = start_command(workflow_id, field_id)
            await producer.send(names.commands, value, key=key, headers=headers)
        await producer.flush()
        sent = time.monotonic() - started
    say(phase="throughput", sent=len(ids), send_seconds=round(sent, 2))
    await completions.all_of(set(ids), args.timeout, procs)
    finished = max(completions.seen[i][0] for i in ids)
    failed = sum(completions.seen[i][1] != "completed" for i in ids)
    return len(ids) / (finished - started), len(ids) / sent, failed


@dataclass
class Latency:
    """The latency phase: round trips (ms), those of pest fields, failures, and each traced
    workflow's critical path (hops) and its time by stage (breakdown.STAGES)."""

    trips: list[float]
    pest_trips: list[float]
    failed: int
    pests: set[str]
    hops: dict[str, int]
    stages: list[dict[str, float]]


async def latency(
    settings: KafkaSettings,
    names: TopicNames,
    completions: Completions,
    args: argparse.Namespace,
    procs: list[Any],
) -> Latency:
    sent: dict[str, float] = {}
    sent_wall: dict[str, tuple[str, float]] = {}
    pests: set[str] = set()
    async with (
        Tap(settings, await traced_topics(settings, names)) as tap,
        connected(submitter_producer(settings), settings) as producer,
    ):
        started = time.monotonic()
        for n in range(args.latency_count):
            workflow_id = f"wf-l{n:06d}-{uuid.uuid4().hex[:6]}"
            field_id = field_for(n, args.pest_fraction)
            if field_id.startswith("pests-"):
                pests.add(workflow_id)
            key, value, headers = start_command(workflow_id, field_id)
            sent_wall[workflow_id] = (trace_id(headers) or "", time.time())
            sent[workflow_id] = time.monotonic()
            await producer.send_and_wait(names.commands, value, key=key, headers=headers)
            await asyncio.sleep(max(0.0, started + (n + 1) / args.rate - time.monotonic()))
        await completions.all_of(set(sent), args.timeout, procs)
        await asyncio.sleep(0.5)  # the tap reads the completions too
    trips = {i: (completions.seen[i][0] - t) * 1000 for i, t in sent.items()}
    failed = sum(completions.seen[i][1] != "completed" for i in sent)
    hops: dict[str, int] = {}
    spent: list[dict[str, float]] = []
    for workflow_id, (trace, at) in sent_wall.items():
        path = critical_path(tap.by_trace.get(trace, []))
        if path is not None:
            hops[workflow_id] = len(path)
            spent.append(stages(path, at))
    return Latency(list(trips.values()), [trips[i] for i in pests], failed, pests, hops, spent)


async def traced_topics(settings: KafkaSettings, names: TopicNames) -> dict[str, str]:
    """The topics a workflow's critical path crosses, and the kind of record on each."""
    async with connected(AIOKafkaConsumer(**client_options(settings)), settings) as consumer:
        tasks = [t for t in await consumer.topics() if t.startswith(names.tasks(""))]
    return {
        names.commands: "command", names.results: "result", names.completed: "completed",
        **dict.fromkeys(tasks, "task"),
    }  # fmt: skip


# --- the run -------------------------------------------------------------------------------


async def bench(settings: KafkaSettings, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    prefix = f"bo{uuid.uuid4().hex[:8]}."
    names = TopicNames(prefix)
    env = {
        **os.environ,
        "EXPEDITER_BOOTSTRAP": settings.bootstrap,
        "EXPEDITER_TOPIC_PREFIX": prefix,
        "EXPEDITER_HTTP_PORT": "0",
        "EXPEDITER_DATA_DIR": str(tmp / "faust"),
    }
    if args.commit_interval is not None:
        env["EXPEDITER_COMMIT_INTERVAL_SECONDS"] = str(args.commit_interval)
    applied = cli(["topics", "apply", "--prefix", prefix, "--json"], env)
    if applied.returncode != 0:
        raise RuntimeError(f"topics apply failed: {applied.stderr[-2000:]}")
    say(phase="topics", prefix=prefix)
    with fleet(env, tmp) as procs:
        ready = await warm_up(settings, names, args, procs)
        async with Completions(settings, names.completed) as completions:
            per_s, submit_per_s, t_failed = await throughput(
                settings, names, completions, args, procs
            )
            say(phase="throughput", workflows_per_s=round(per_s, 1))
            measured = await latency(settings, names, completions, args, procs)
        partitions = await partition_count(completions._consumer._client, names.completed)
    trips, pest_trips, l_failed = measured.trips, measured.pest_trips, measured.failed
    rt50, rt99 = percentiles(trips)
    say(phase="latency", p50_ms=round(rt50, 1), p99_ms=round(rt99, 1))
    raw = await raw_one_way(settings, partitions=partitions, rate=args.rate,
                            count=args.latency_count, timeout=args.timeout)  # fmt: skip
    raw50, raw99 = percentiles(raw)
    say(phase="raw", one_way_p50_ms=round(raw50, 2))
    echo = await exactly_once_echo(settings, partitions=partitions, rate=args.rate,
                                   count=args.latency_count, timeout=args.timeout)  # fmt: skip
    echo50, echo99 = percentiles(echo)
    say(phase="exactly-once echo", p50_ms=round(echo50, 2))
    return {
        "bench": "orchestrator",
        "workflow": WORKFLOW,
        "pest_fraction": args.pest_fraction,
        "commit_interval_s": args.commit_interval,
        "startup_s": round(ready, 1),
        "workflows": args.workflows,
        "workflows_per_s": round(per_s, 1),
        "submit_per_s": round(submit_per_s, 1),
        "rate_per_s": args.rate,
        "latency_count": args.latency_count,
        "round_trip_p50_ms": round(rt50, 1),
        "round_trip_p99_ms": round(rt99, 1),
        "round_trip_pests_p50_ms": round(statistics.median(pest_trips), 1) if pest_trips else None,
        "failed": t_failed + l_failed,
        "raw_one_way_p50_ms": round(raw50, 2),
        "raw_one_way_p99_ms": round(raw99, 2),
        "exactly_once_echo_p50_ms": round(echo50, 2),
        "exactly_once_echo_p99_ms": round(echo99, 2),
        **path_fields(measured, (rt50, rt99), (raw50, raw99), (echo50, echo99)),
        "ratio": round(2 * raw50 / rt50, 4),
    }


def path_fields(
    measured: Latency,
    trip: tuple[float, float],
    raw: tuple[float, float],
    echo: tuple[float, float],
) -> dict[str, Any]:
    """The critical path's hops, the round trip against hops x raw one-way and against the
    exactly-once floor (p50 and p99), and the median time of each stage (breakdown.STAGES) over
    the traced workflows."""
    if not measured.hops:
        return {"critical_path_hops": None, "traced": 0}
    hops = statistics.median(measured.hops.values())
    kinds = {
        kind: [h for i, h in measured.hops.items() if (i in measured.pests) == (kind == "pests")]
        for kind in ("clean", "pests")
    }
    floor50, floor99 = hops * raw[0], hops * raw[1]
    # The command is a plain hop; the tasks, results and the completion are transactional.
    eo50, eo99 = (r + (hops - 1) * max(0.0, e - r) for r, e in zip(raw, echo, strict=True))
    spent = medians(measured.stages)
    return {
        "critical_path_hops": hops,
        "critical_path_hops_clean": statistics.median(kinds["clean"]) if kinds["clean"] else None,
        "critical_path_hops_pests": statistics.median(kinds["pests"]) if kinds["pests"] else None,
        "traced": len(measured.hops),
        "hops_floor_p50_ms": round(floor50, 2),
        "round_trip_p50_vs_floor": round(trip[0] / floor50, 2),
        "hops_floor_p99_ms": round(floor99, 2),
        "round_trip_p99_vs_floor": round(trip[1] / floor99, 2),
        "exactly_once_floor_p50_ms": round(eo50, 2),
        "round_trip_p50_vs_exactly_once_floor": round(trip[0] / eo50, 2),
        "exactly_once_floor_p99_ms": round(eo99, 2),
        "round_trip_p99_vs_exactly_once_floor": round(trip[1] / eo99, 2),
        "stages_p50_ms": {name: spent[name] for name in STAGES},
    }


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        async with provided_broker(
            DevSettings(dir=Path(".expediter/bench-orchestrator"))
        ) as broker:
            say(broker=broker.kind, version=broker.version, bootstrap=broker.bootstrap)
            result = await bench(broker.settings, args, Path(tmp))
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=500, help="throughput phase")
    parser.add_argument("--rate", type=float, default=5.0, help="workflows/s, latency phase")
    parser.add_argument("--latency-count", type=int, default=50, help="latency phase")
    parser.add_argument(
        "--pest-fraction",
        type=float,
        default=0.5,
        help="share of fields with pests (their workflows run the crop mapper)",
    )
    parser.add_argument("--warmup", type=int, default=24, help="workflows after the first two")
    parser.add_argument(
        "--commit-interval",
        type=float,
        default=None,
        help="the orchestrator's commit interval in seconds (default: its setting, 0.1)",
    )
    parser.add_argument("--startup-timeout", type=float, default=180.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="a phase's completions")
    args = parser.parse_args()
    if not 0 <= args.pest_fraction <= 1:
        parser.error("--pest-fraction is between 0 and 1")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
