"""The hard deadline on shutdown, shared by the long-running commands (worker, orchestrator).

A signal handler only sets a flag and arms this watchdog: a daemon timer thread that ends the
process with :data:`HUNG_EXIT` when a shutdown outlives its budget. A thread, not a task,
because a hung shutdown may be the event loop itself; and ``os._exit`` because a clean exit
would wait for the very thing that hangs.

A thread cannot outlive the start of the interpreter's finalization (CPython ends daemon
threads there), and finalization can hang too: the garbage collector closes the coroutines
left pending, and their ``finally`` blocks run, a crash handler among them. So the deadline
has a second, kernel-side half: ``alarm(2)`` a few seconds later, whose default action ends
the process (SIGALRM, exit status 128 + 14) whatever state Python is in. And nothing is
armed once finalization started: a thread started then never runs, and ``Thread.start``
waits for it for ever (a crashed orchestrator hung exactly there instead of exiting).

The first arming sets the deadline; arming again does not move it.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading

__all__ = ["ALARM_AFTER_SECONDS", "HUNG_EXIT", "arm_watchdog"]

HUNG_EXIT = 70
"""Exit code when the hard deadline ends a shutdown that hangs (EX_SOFTWARE)."""

ALARM_AFTER_SECONDS = 5
"""How long after the thread's deadline the kernel's alarm ends the process, in case the
thread could not (the interpreter was finalizing)."""

_armed = threading.Event()


def arm_watchdog(seconds: float) -> None:
    """Exit the process with :data:`HUNG_EXIT` unless it has ended within ``seconds``."""
    if sys.is_finalizing() or _armed.is_set():
        return
    _armed.set()

    def expire() -> None:
        os.write(2, f"shutdown still running after {seconds:.0f}s: exiting\n".encode())
        os._exit(HUNG_EXIT)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    if hasattr(signal, "alarm"):  # POSIX
        signal.alarm(math.ceil(seconds) + ALARM_AFTER_SECONDS)
