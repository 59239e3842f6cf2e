"""A worker that cannot make progress is not ready, and after long enough not alive either."""

from __future__ import annotations

from expediter.settings import WorkerSettings
from expediter.worker.observing import HealthState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _health(clock: Clock) -> HealthState:
    settings = WorkerSettings(stall_seconds=60, unhealthy_stall_seconds=300, ready_poll_seconds=30)
    health = HealthState(settings, clock=clock)
    health.mark_warm()
    health.polled()
    return health


def test_a_failed_commit_is_unready_at_once_and_ready_again_after_a_commit() -> None:
    clock = Clock()
    health = _health(clock)
    assert health.is_ready()
    health.commit_failed("MessageSizeTooLargeError")
    readiness = health.readiness()
    assert not readiness.ready
    assert "commits failing" in readiness.reason
    assert "MessageSizeTooLarge" in readiness.reason
    clock.now += 10
    health.polled()
    health.commit_failed("again")  # the stall still counts from the first failure
    clock.now += 295
    health.polled()
    assert not health.is_alive(), "stalled 305s, the limit is 300s"
    health.committed()
    assert health.is_ready()
    assert health.is_alive()


def test_finished_tasks_waiting_for_their_commit_too_long_are_unready() -> None:
    clock = Clock()
    health = _health(clock)
    health.awaiting_commit(clock.now)
    clock.now += 59
    health.polled()
    assert health.is_ready(), "a commit may take a while"
    clock.now += 2
    health.polled()
    assert "waiting 61.0s for their commit" in health.readiness().reason
    health.awaiting_commit(None)
    assert health.is_ready()


def test_lag_with_nothing_running_and_nothing_committed_is_unready_but_a_long_task_is_not() -> None:
    clock = Clock()
    health = _health(clock)
    health.set_lag(5, busy=True)
    clock.now += 120
    health.polled()
    assert health.is_ready(), "a task that runs for minutes is progress"
    health.set_lag(5, busy=False)
    readiness = health.readiness()
    assert not readiness.ready
    assert "lag 5" in readiness.reason
    health.committed()
    assert health.is_ready()
    health.set_lag(0, busy=False)
    clock.now += 1000
    health.polled()
    assert health.is_ready(), "an idle worker with no lag is fine"
    assert health.is_alive()


def test_draining_stays_alive_even_when_stalled() -> None:
    clock = Clock()
    health = _health(clock)
    health.commit_failed("down")
    clock.now += 1000
    assert not health.is_alive()
    health.mark_draining()
    assert health.is_alive()
