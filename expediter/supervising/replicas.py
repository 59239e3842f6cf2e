"""Child processes: one agent's worker replicas, started, drained and reaped by PID.

A :class:`ReplicaSet` keeps one agent's replicas the way a Deployment keeps its pods. Each
:class:`Replica` is a process in its own process group (``start_new_session``), so a Ctrl-C at
the terminal reaches the supervisor only, and the supervisor decides who stops and how. Scaling
down sends SIGTERM to the newest replica (the worker's drain path) and escalates to SIGKILL once
the agent's grace period (its Deployment's terminationGracePeriodSeconds) has passed, as the
kubelet does. Signals go to the child's own process group, whose id is the child's PID: the
supervisor never signals anything it did not start. Replica names are never reused within a
run, so a new replica's transactional id cannot fence one that is still draining.

Who calls it: :class:`expediter.supervising.running.Supervisor` (also the orchestrator's process
is a one-replica set).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Exit", "Replica", "ReplicaSet", "signal_group"]

Command = Callable[[str], Sequence[str]]
"""Builds the command line of a replica from its name."""


def signal_group(pid: int, signum: signal.Signals) -> bool:
    """Signal the process group led by ``pid`` (a child started in a new session); False when
    it is already gone."""
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:  # the group leader is gone and its id was reused elsewhere
        return False
    return True


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    started_at: float
    log: Path
    stop_requested_at: float | None = None
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stopping(self) -> bool:
        return self.stop_requested_at is not None


@dataclass(frozen=True)
class Exit:
    """A replica that ended: ``expected`` when the supervisor asked it to stop."""

    name: str
    pid: int
    code: int
    expected: bool
    seconds: float
    log: Path


@dataclass
class ReplicaSet:
    """The processes of one agent (or the orchestrator)."""

    name: str
    command: Command
    env: Mapping[str, str]
    log_dir: Path
    grace_seconds: float
    cwd: Path | None = None
    replicas: list[Replica] = field(default_factory=list)
    started_pids: list[int] = field(default_factory=list)
    """Every PID this set ever started (for checks that none is left)."""
    _serial: int = 0

    @property
    def running(self) -> list[Replica]:
        """Replicas that count toward the desired number: alive and not asked to stop."""
        return [r for r in self.replicas if not r.stopping]

    @property
    def stopping(self) -> list[Replica]:
        return [r for r in self.replicas if r.stopping]

    @property
    def pids(self) -> list[int]:
        return [r.pid for r in self.replicas]

    def start_one(self) -> Replica:
        self._serial += 1
        name = f"{self.name}-{self._serial}"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(self.command(name)), env=dict(self.env), cwd=self.cwd,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        replica = Replica(name, process, time.monotonic(), log)
        self.started_pids.append(process.pid)
        self.replicas.append(replica)
        return replica

    def scale_to(self, desired: int) -> tuple[list[Replica], list[Replica]]:
        """Start or SIGTERM replicas until ``desired`` are running; the newest stop first.
        Returns (started, stopping)."""
        started: list[Replica] = []
        stopped: list[Replica] = []
        while len(self.running) < desired:
            started.append(self.start_one())
        running = sorted(self.running, key=lambda r: r.started_at)
        for replica in reversed(running[desired:]):
            self.terminate(replica)
            stopped.append(replica)
        return started, stopped

    def terminate(self, replica: Replica) -> None:
        if replica.stop_requested_at is None:
            replica.stop_requested_at = time.monotonic()
            signal_group(replica.pid, signal.SIGTERM)

    def terminate_all(self) -> None:
        for replica in self.replicas:
            self.terminate(replica)

    def escalate(self, now: float | None = None, *, grace: float | None = None) -> list[Replica]:
        """SIGKILL every stopping replica whose grace period has passed; those killed."""
        now = time.monotonic() if now is None else now
        limit = self.grace_seconds if grace is None else grace
        killed = []
        for replica in self.stopping:
            assert replica.stop_requested_at is not None
            if not replica.killed and now - replica.stop_requested_at >= limit:
                replica.killed = True
                signal_group(replica.pid, signal.SIGKILL)
                killed.append(replica)
        return killed

    def reap(self) -> list[Exit]:
        """Forget replicas that have exited, and say how each ended."""
        ended: list[Exit] = []
        now = time.monotonic()
        for replica in list(self.replicas):
            code = replica.process.poll()
            if code is None:
                continue
            self.replicas.remove(replica)
            ended.append(Exit(replica.name, replica.pid, code, replica.stopping,
                              round(now - replica.started_at, 3), replica.log))  # fmt: skip
        return ended
