"""Work-based vs lag-based scaling on a mixed workload: time to drain and replica-seconds.

A few long tasks (thousands of tokens) and many short ones (tens of tokens) arrive at one agent
whose replicas take a while to load their model. The same timeline is served twice by a model
of Kafka consumers (a partition's tasks run in order, one at a time, on the replica it is
assigned to; a new replica serves only once loaded; a removed one finishes its task first),
scaled every ``pollingInterval`` by the project's engine:

- **lag**: KEDA's Kafka trigger (:class:`expediter.scaling.Simulation`, lagThreshold 10);
- **work**: ``expediter scaler``'s external trigger
  (:class:`expediter.scaling.worksimulating.WorkSimulation`): pending tokens / a replica's
  tokens/s, one replica a task at most, held while replicas load.

Both use KEDA's and the HPA's arithmetic as the engine reproduces it (checked against the real
KEDA in tests/cluster). Reported: time to drain (last task done), replica-seconds until the
drain and until the Deployment is back at zero. The last JSON line's ``ratio`` is work-based /
lag-based replica-seconds (to drain), with ``drain_not_worse`` saying whether the work-based run
drained at least as early. Run: ``.venv/bin/python bench/bench_workscaling.py``.
"""

from __future__ import annotations

import argparse
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from common import emit

from expediter.scaling import ScaledObjectSpec, Simulation, parse_trigger
from expediter.scaling.working import parse_external_trigger
from expediter.scaling.worksimulating import WorkSimulation


@dataclass
class Task:
    arrival: int
    tokens: int
    partition: int


@dataclass
class Replica:
    ready_at: int
    task: Task | None = None
    ends_at: int = 0
    draining: bool = False


class Scaler(Protocol):
    def decide(self, t: int, cluster: Cluster) -> int: ...


@dataclass
class Cluster:
    partitions: int
    rate: float
    load_seconds: int
    queues: list[deque[Task]] = field(default_factory=list)
    busy: list[bool] = field(default_factory=list)
    latest: list[int] = field(default_factory=list)
    committed: list[int] = field(default_factory=list)
    replicas: list[Replica] = field(default_factory=list)
    pending_tokens: int = 0

    def __post_init__(self) -> None:
        self.queues = [deque() for _ in range(self.partitions)]
        self.busy = [False] * self.partitions
        self.latest = [0] * self.partitions
        self.committed = [0] * self.partitions

    def arrive(self, task: Task) -> None:
        self.queues[task.partition].append(task)
        self.latest[task.partition] += 1
        self.pending_tokens += task.tokens

    def tick(self, t: int) -> None:
        for replica in self.replicas:
            if replica.task is not None and replica.ends_at <= t:
                done = replica.task
                self.committed[done.partition] += 1
                self.busy[done.partition] = False
                self.pending_tokens -= done.tokens
                replica.task = None
        self.replicas = [r for r in self.replicas if not (r.draining and r.task is None)]
        serving = [r for r in self.replicas if r.ready_at <= t and not r.draining]
        for i, replica in enumerate(serving):
            if replica.task is not None:
                continue
            # The partitions the group assigns this replica (round robin over serving ones).
            own = [p for p in range(i, self.partitions, len(serving))
                   if self.queues[p] and not self.busy[p]]  # fmt: skip
            if not own:
                continue
            p = min(own, key=lambda q: self.queues[q][0].arrival)
            task = self.queues[p].popleft()
            self.busy[p] = True
            replica.task = task
            replica.ends_at = t + max(1, math.ceil(task.tokens / self.rate))

    def scale(self, t: int, desired: int) -> None:
        live = [r for r in self.replicas if not r.draining]
        if desired > len(live):
            self.replicas += [Replica(t + self.load_seconds) for _ in range(desired - len(live))]
        elif desired < len(live):
            # The ReplicaSet deletes not-ready pods first, then others; a busy pod drains.
            order = sorted(live, key=lambda r: (r.ready_at <= t, r.task is not None))
            for replica in order[: len(live) - desired]:
                if replica.task is None:
                    self.replicas.remove(replica)
                else:
                    replica.draining = True

    @property
    def loading(self) -> int:
        return 0

    def records(self) -> int:
        return sum(self.latest) - sum(self.committed)


class LagScaler:
    def __init__(self, spec: ScaledObjectSpec, lag_threshold: int) -> None:
        self.simulation = Simulation(parse_trigger({"lagThreshold": str(lag_threshold)}), spec)

    def decide(self, t: int, cluster: Cluster) -> int:
        return self.simulation.step(t, cluster.latest, cluster.committed).replicas


class WorkScaler:
    def __init__(self, spec: ScaledObjectSpec, drain_seconds: int, rate: float) -> None:
        trigger = parse_external_trigger({"capability": "planning",
                                          "targetDrainSeconds": str(drain_seconds),
                                          "tokensPerSecond": str(rate)})  # fmt: skip
        self.simulation = WorkSimulation(trigger, spec)

    def decide(self, t: int, cluster: Cluster) -> int:
        loading = sum(1 for r in cluster.replicas if r.ready_at > t and not r.draining)
        step = self.simulation.step(t, cluster.pending_tokens, records=cluster.records(),
                                    loading=loading)  # fmt: skip
        return step.replicas


def workload(args: argparse.Namespace) -> list[Task]:
    rng = random.Random(args.seed)
    tasks = [Task(rng.randrange(0, args.arrival_seconds), args.long_tokens,
                  rng.randrange(args.partitions)) for _ in range(args.long_tasks)]  # fmt: skip
    for n in range(args.short_tasks):
        at = n * args.arrival_seconds // args.short_tasks
        tokens = max(1, int(rng.expovariate(1 / args.short_tokens)))
        tasks.append(Task(at, tokens, rng.randrange(args.partitions)))
    return sorted(tasks, key=lambda task: task.arrival)


def run(
    name: str, scaler: Scaler, tasks: list[Task], args: argparse.Namespace
) -> dict[str, object]:
    cluster = Cluster(args.partitions, args.rate, args.load_seconds)
    arrivals = deque(tasks)
    replica_seconds = drained_at = drain_replica_seconds = 0
    peak = 0
    for t in range(args.limit_seconds):
        while arrivals and arrivals[0].arrival <= t:
            cluster.arrive(arrivals.popleft())
        if t % args.polling_interval == 0:
            cluster.scale(t, scaler.decide(t, cluster))
        cluster.tick(t)
        replica_seconds += len(cluster.replicas)
        peak = max(peak, len(cluster.replicas))
        if not drained_at and not arrivals and cluster.records() == 0:
            drained_at, drain_replica_seconds = t, replica_seconds
        if drained_at and not cluster.replicas:
            break
    line: dict[str, object] = {
        "scaling": name, "drain_seconds": drained_at or None,
        "replica_seconds_to_drain": drain_replica_seconds,
        "replica_seconds_to_zero": replica_seconds, "peak_replicas": peak,
    }  # fmt: skip
    emit(line)
    return line


def main(args: argparse.Namespace) -> None:
    spec = ScaledObjectSpec(max_replica_count=args.partitions,
                            polling_interval=args.polling_interval,
                            cooldown_period=args.cooldown)  # fmt: skip
    tasks = workload(args)
    emit({"tasks": len(tasks), "long_tasks": args.long_tasks, "short_tasks": args.short_tasks,
          "tokens": sum(t.tokens for t in tasks), "tokens_per_second": args.rate,
          "load_seconds": args.load_seconds, "partitions": args.partitions})  # fmt: skip
    lag = run("lag", LagScaler(spec, args.lag_threshold), tasks, args)
    for drain in sorted({10, 20, 30, 60} - {args.drain_seconds}):
        # Context: how the target trades replica-seconds for drain time on this workload.
        run(f"work targetDrainSeconds={drain}", WorkScaler(spec, drain, args.rate), tasks, args)
    work = run("work", WorkScaler(spec, args.drain_seconds, args.rate), tasks, args)
    ratio = int(work["replica_seconds_to_drain"]) / max(1, int(lag["replica_seconds_to_drain"]))  # type: ignore[call-overload]
    emit({"ratio": round(ratio, 3),
          "drain_not_worse": (work["drain_seconds"] or 10**9) <= (lag["drain_seconds"] or 10**9),  # type: ignore[operator]
          "lag_drain_seconds": lag["drain_seconds"], "work_drain_seconds": work["drain_seconds"],
          "lag_replica_seconds": lag["replica_seconds_to_drain"],
          "work_replica_seconds": work["replica_seconds_to_drain"]})  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long-tasks", type=int, default=6)
    parser.add_argument("--long-tokens", type=int, default=4000)
    parser.add_argument("--short-tasks", type=int, default=1200)
    parser.add_argument("--short-tokens", type=int, default=20)
    parser.add_argument("--arrival-seconds", type=int, default=300)
    parser.add_argument("--rate", type=float, default=40.0, help="tokens/s of one replica")
    parser.add_argument("--load-seconds", type=int, default=60, help="model load at start")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--lag-threshold", type=int, default=10)
    parser.add_argument("--drain-seconds", type=int, default=20, help="targetDrainSeconds")
    parser.add_argument("--polling-interval", type=int, default=15)
    parser.add_argument("--cooldown", type=int, default=60)
    parser.add_argument("--limit-seconds", type=int, default=7200)
    parser.add_argument("--seed", type=int, default=18)
    main(parser.parse_args())
