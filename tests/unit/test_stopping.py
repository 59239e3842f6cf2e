"""The hard shutdown deadline (expediter.cli.stopping) holds while the interpreter finalizes.

A crashed orchestrator hung for good: Faust's coroutines, closed by the garbage collector at
exit, crashed again, and the crash handler armed the watchdog, whose thread can no longer start
then. Each case runs in its own interpreter, since what it tests is that interpreter's exit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from expediter.cli.stopping import ALARM_AFTER_SECONDS

# A generator whose `finally` runs only when the interpreter clears the module at exit.
AT_EXIT = """
import sys
import threading
from expediter.cli.stopping import arm_watchdog

def pending():
    try:
        yield
    finally:
        {finally_}

left = pending()
next(left)
{before_exit}
"""


def _run(
    finally_: str, before_exit: str = "", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(AT_EXIT).format(finally_=finally_, before_exit=before_exit)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_arming_while_the_interpreter_finalizes_does_not_hang_the_exit() -> None:
    done = _run("arm_watchdog(30); print('finalizing', sys.is_finalizing())")
    assert done.returncode == 0, done.stderr
    assert "finalizing True" in done.stdout, "the case must arm during finalization"


def test_a_hang_during_finalization_still_ends_at_the_deadline() -> None:
    """Armed while running, then a deadlock at exit: the watchdog thread is gone by then, and
    the kernel's alarm ends the process."""
    deadlock = "lock = threading.Lock(); lock.acquire(); lock.acquire()"
    done = _run(deadlock, before_exit="arm_watchdog(1)", timeout=1 + ALARM_AFTER_SECONDS + 20)
    assert done.returncode == -signal.SIGALRM, (done.returncode, done.stderr)


def test_a_hang_while_running_exits_70_at_the_deadline() -> None:
    done = _run("pass", before_exit="arm_watchdog(1); threading.Event().wait()")
    assert done.returncode == 70, done.stderr
    assert "shutdown still running after 1s: exiting" in done.stderr
