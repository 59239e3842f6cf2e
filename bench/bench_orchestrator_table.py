"""Bench: the orchestrator's memory and restart time against the number of finished workflows in
its table's changelog, with and without retention (``EXPEDITER_FINISHED_RETENTION_SECONDS``).

For each size N (``--sizes``), under a fresh topic prefix (on which the orchestrator has
started and stopped once, so that each start below is a restart):

1. the changelog is seeded with N finished field-analysis states (a real one, made by the pure
   state machine with the no-op agents' outputs, 3.2 KB of JSON, one per workflow id,
   finished an hour ago), as the orchestrator would have left them;
2. **keep**: the orchestrator starts with retention off (a year): it restores all N;
3. **retire**: it starts again with a 60 s retention: it restores all N, then deletes them (a
   tombstone each, in its transactions); ``retire_s`` is the time until the changelog stops
   growing;
4. **after**: it starts a third time: the changelog now holds N states and N tombstones, as it
   does until the broker compacts it (the catalog rolls its segments hourly);
5. **compacted**: a fresh prefix whose changelog holds only the N tombstones compaction leaves.

Faust's table recovery used to end a partition's restore only after two 5 s waits with nothing
read when its changelog ends with a transaction marker (the orchestrator's own writes end so):
about 10 s on every restart after the orchestrator wrote its changelog. Its recovery now knows
where such a changelog's last record is (expediter.orchestrator.recovering), so the **retire**
and **after** starts cost what the others do (2,000 workflows: 13.1 and 14.9 s before, 2.8 and
3.1 s after, on the same machine). The seeded records are plain ones, so the **keep**,
**compacted** and baseline starts never paid the wait: they compare the table alone.

Each start's ``restart_s`` is from the process's spawn to the completion (read_committed on
``workflows.completed``) of a workflow submitted at that moment (``instant``: one skipped step,
so no agent is involved), and ``rss_mb`` its resident memory then (``peak_mb``: its high-water
mark). The baseline, in the same run: the same start with an empty changelog. ``ratio`` =
baseline restart / the largest size's restart after compaction (higher is better, ~1 when a
restart no longer depends on how many workflows ever ran); ``rss_ratio`` the same for memory.
Progress goes to stderr; the last stdout line is one JSON object.

    .venv/bin/python bench/bench_orchestrator_table.py [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from common import emit

from expediter import load_agent, load_workflows
from expediter.dev import provided_broker
from expediter.events import Producer, ResultEvent, WorkflowCommand, to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.messaging.topology import partition_count, partition_for_key
from expediter.orchestrator.stepping import apply_result, start
from expediter.settings import DevSettings, KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
BENCH = Producer(name="bench-orchestrator-table", version="0")
INSTANT = """
from expediter import Step, Workflow

workflow = Workflow(
    name="instant",
    stages=[Step("never", "soil-analysis", lambda s: {}, when=lambda s: False)],
    report=lambda s: {"done": True},
)
"""
KEEP = str(365 * 86400.0)
RETAIN = "60"


def say(**fields: Any) -> None:
    print(json.dumps(fields), file=sys.stderr, flush=True)


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "expediter.cli", *args], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def stop(proc: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class Completion:
    """Reads ``workflows.completed`` (read_committed) from its end now, for one workflow id."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            **client_options(settings), enable_auto_commit=False, isolation_level="read_committed"
        )

    async def __aenter__(self) -> Completion:
        await self.consumer.start()
        count = await partition_count(self.consumer._client, self.topic)
        tps = [TopicPartition(self.topic, p) for p in range(count)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now, before anything is sent
            await self.consumer.position(tp)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def of(self, workflow_id: str, proc: subprocess.Popen[bytes], timeout: float) -> float:
        """When (time.monotonic()) ``workflow_id``'s completion was read."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the orchestrator exited with {proc.returncode}")
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                if any(r.key == workflow_id.encode() for r in records):
                    return time.monotonic()
        raise TimeoutError(f"{workflow_id} not completed within {timeout:g}s")


async def finished_state() -> dict[str, Any]:
    """A field-analysis with pests, run to its end by the state machine (no broker)."""
    workflow = load_workflows(ROOT / "workflows")["field-analysis"]
    agents = {
        a.capability: a
        for a in (load_agent(ROOT / "bench" / "agents" / f"{n}.py") for n in
                  ("noop_soil", "noop_pests", "noop_map"))
    }  # fmt: skip
    now = datetime.now(UTC) - timedelta(hours=1)
    state, effects = start(workflow, "wf-template", {"field_id": "pests-1"}, now)
    tasks = list(effects.tasks)
    while tasks:
        task = tasks.pop(0)
        agent = agents[task.capability]
        output = await agent.handler(agent.input_model.model_validate(task.input), None)  # type: ignore[arg-type]
        result = ResultEvent(
            producer=BENCH, workflow_id=task.workflow_id, step_id=task.step_id,
            capability=task.capability, attempt=task.attempt, task_id=task.event_id,
            status="succeeded", output=output.model_dump(mode="json"),
        )  # fmt: skip
        tasks.extend(apply_result(workflow, state, result, now).tasks)
    if state.status != "completed":
        raise RuntimeError(f"the template workflow did not complete: {state.status}")
    value: dict[str, Any] = state.model_dump(mode="json")
    return value


async def seed(
    settings: KafkaSettings, topic: str, count: int, template: dict[str, Any] | None
) -> None:
    """``count`` changelog records keyed as the orchestrator's table keys them: the template
    under each id, or a tombstone each (``template`` None)."""
    producer = AIOKafkaProducer(
        **client_options(settings), acks="all", linger_ms=20, max_batch_size=1 << 20
    )
    async with connected(producer, settings):
        partitions = await partition_count(producer.client, topic)
        pending = []
        for n in range(count):
            workflow_id = f"wf-seed-{n:08d}"
            value = None
            if template is not None:
                value = json.dumps({**template, "workflow_id": workflow_id}).encode()
            pending.append(await producer.send(
                topic, value, key=json.dumps(workflow_id).encode(),
                partition=partition_for_key(workflow_id.encode(), partitions),
            ))  # fmt: skip
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))  # type: ignore[return-value]


async def end_total(settings: KafkaSettings, topic: str) -> int:
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    async with connected(consumer, settings):
        count = await partition_count(consumer._client, topic)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(count)])
    return sum(ends.values())


async def one_start(
    settings: KafkaSettings, env: dict[str, str], names: TopicNames, tmp: Path, label: str,
    retention: str, *, until_quiet: bool = False, timeout: float,
) -> dict[str, Any]:  # fmt: skip
    """Spawn the orchestrator, submit ``instant`` at once, time its completion; optionally
    wait until the changelog stops growing (the retirements done)."""
    log = tmp / f"orchestrator-{label}.log"
    run_env = {**env, "EXPEDITER_FINISHED_RETENTION_SECONDS": retention}
    workflow_id = f"wf-{uuid.uuid4().hex[:16]}"
    record = to_record(WorkflowCommand(producer=BENCH, action="start", workflow_id=workflow_id,
                                       workflow="instant"))  # fmt: skip
    async with Completion(settings, names.completed) as completion:
        with log.open("wb") as out:
            spawned = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, "-m", "expediter.cli", "orchestrator", "--workflows",
                 str(tmp / "workflows")], cwd=ROOT, env=run_env, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        try:
            async with connected(AIOKafkaProducer(**client_options(settings)), settings) as p:
                await p.send_and_wait(names.commands, record.value, key=record.key,
                                      headers=record.headers)  # fmt: skip
            restart = await completion.of(workflow_id, proc, timeout) - spawned
            rss, peak = memory(proc.pid)
            result = {"restart_s": round(restart, 2), "rss_mb": round(rss, 1),
                      "peak_mb": round(peak, 1)}  # fmt: skip
            if until_quiet:
                last, quiet, began = -1, 0, time.monotonic()
                while quiet < 3 and time.monotonic() - began < timeout:
                    total = await end_total(settings, names.changelog)
                    quiet = quiet + 1 if total == last else 0
                    last = total
                    await asyncio.sleep(1.0)
                rss, peak = memory(proc.pid)
                result.update(retire_s=round(time.monotonic() - began - 3, 1),
                              rss_after_mb=round(rss, 1), peak_mb=round(peak, 1))  # fmt: skip
        except BaseException:
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            stopping = time.monotonic()
            stop(proc)
    result.update(stop_s=round(time.monotonic() - stopping, 1), exit=proc.returncode)
    say(phase=label, **result)
    return result


async def prefix_env(
    settings: KafkaSettings, tmp: Path, timeout: float
) -> tuple[dict[str, str], TopicNames]:
    """A fresh prefix, its topics, and one start and stop of the orchestrator on it, so that
    every start measured is a restart (its group and transactional ids exist, as in
    production)."""
    prefix = f"bt{uuid.uuid4().hex[:8]}."
    env = {
        **os.environ, "EXPEDITER_BOOTSTRAP": settings.bootstrap,
        "EXPEDITER_TOPIC_PREFIX": prefix, "EXPEDITER_HTTP_PORT": "0",
        "EXPEDITER_DATA_DIR": str(tmp / f"faust-{prefix}"),
    }  # fmt: skip
    applied = await asyncio.to_thread(cli, ["topics", "apply", "--prefix", prefix, "--json"], env)
    if applied.returncode != 0:
        raise RuntimeError(f"topics apply failed: {applied.stderr[-2000:]}")
    names = TopicNames(prefix)
    await one_start(settings, env, names, tmp, f"first-{prefix}", KEEP, timeout=timeout)
    return env, names


async def bench(settings: KafkaSettings, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    (tmp / "workflows").mkdir()
    (tmp / "workflows" / "instant.py").write_text(INSTANT)
    template = await finished_state()
    say(template_bytes=len(json.dumps(template)))
    env, names = await prefix_env(settings, tmp, args.timeout)
    # The changelog's partitions end with a plain record, as the seeded ones' do.
    await seed(settings, names.changelog, 64, None)
    baseline = await one_start(settings, env, names, tmp, "baseline", KEEP, timeout=args.timeout)
    sizes: dict[str, Any] = {}
    for size in args.sizes:
        env, names = await prefix_env(settings, tmp, args.timeout)
        began = time.monotonic()
        await seed(settings, names.changelog, size, template)
        say(phase="seeded", size=size, seconds=round(time.monotonic() - began, 1))
        row = {
            "keep": await one_start(settings, env, names, tmp, f"keep-{size}", KEEP,
                                    timeout=args.timeout),
            "retire": await one_start(settings, env, names, tmp, f"retire-{size}", RETAIN,
                                      until_quiet=True, timeout=args.timeout),
            "after": await one_start(settings, env, names, tmp, f"after-{size}", RETAIN,
                                     timeout=args.timeout),
        }  # fmt: skip
        env, names = await prefix_env(settings, tmp, args.timeout)
        await seed(settings, names.changelog, size, None)
        row["compacted"] = await one_start(settings, env, names, tmp, f"compacted-{size}",
                                           RETAIN, timeout=args.timeout)  # fmt: skip
        sizes[str(size)] = row
    largest = sizes[str(args.sizes[-1])]["compacted"]
    return {
        "bench": "orchestrator-table",
        "template_bytes": len(json.dumps(template)),
        "retention_s": float(RETAIN),
        "baseline": baseline,
        "sizes": sizes,
        "ratio": round(baseline["restart_s"] / largest["restart_s"], 4),
        "rss_ratio": round(baseline["rss_mb"] / largest["rss_mb"], 4),
    }


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-table-") as tmp:
        logs = Path(args.logs or tmp)
        logs.mkdir(parents=True, exist_ok=True)
        async with provided_broker(
            DevSettings(dir=Path(".expediter/bench-orchestrator"))
        ) as broker:
            say(broker=broker.kind, version=broker.version, bootstrap=broker.bootstrap)
            result = await bench(broker.settings, args, logs)
    emit(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="10000,100000",
        type=lambda text: [int(n) for n in text.split(",")],
        help="finished workflows in the changelog, comma-separated",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900.0, help="one start, at most")
    parser.add_argument("--logs", default=None, help="keep the orchestrators' logs here")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
