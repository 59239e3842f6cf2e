"""The hard deadline on shutdown, shared by the long-running commands (worker, orchestrator).

A signal handler only sets a flag and arms this watchdog: a daemon timer thread that ends the
process with :data:`HUNG_EXIT` when a shutdown outlives its budget. A thread, not a task,
because a hung shutdown may be the event loop itself; and ``os._exit`` because a clean exit
would wait for the very thing that hangs.
"""

from __future__ import annotations

import os
import threading

__all__ = ["HUNG_EXIT", "arm_watchdog"]

HUNG_EXIT = 70
"""Exit code when the hard deadline ends a shutdown that hangs (EX_SOFTWARE)."""


def arm_watchdog(seconds: float) -> None:
    """Exit the process with :data:`HUNG_EXIT` unless it has ended within ``seconds``."""

    def expire() -> None:
        os.write(2, f"shutdown still running after {seconds:.0f}s: exiting\n".encode())
        os._exit(HUNG_EXIT)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
