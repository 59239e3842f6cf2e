"""How many CPU cores this process may use: the llama engine's default thread count.

``os.cpu_count()`` counts the host's cores, not the container's: a pod limited to 2 CPUs on a
64-core node would start 64 (or, with llama-cpp-python's own default of ``cpu_count() // 2``,
32) threads that fight over 2 cores' worth of CFS quota. :func:`available_cores` takes the
smallest of the CPU affinity mask (``taskset``, cpuset, Kubernetes' static CPU manager) and the
cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``; Kubernetes'
``limits.cpu``), rounded up, at least 1. Called by :mod:`expediter.reasoning.llama` when
``EXPEDITER_ENGINE_N_THREADS`` is unset.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["CGROUP_ROOT", "available_cores", "cgroup_quota"]

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota in cores of the cgroup mounted at ``root`` (v2 first, then v1), or None
    when there is none (``max``, ``-1``, no cgroup files, or a value that does not parse)."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota == "max":
            return None
        try:
            cores = int(quota) / int(period or "100000")
        except (ValueError, ZeroDivisionError):
            return None
        return cores if cores > 0 else None
    for v1 in (root / "cpu", root / "cpu,cpuacct", root):
        quota_text = _read(v1 / "cpu.cfs_quota_us")
        period_text = _read(v1 / "cpu.cfs_period_us")
        if quota_text is None or period_text is None:
            continue
        try:
            quota_us, period_us = int(quota_text), int(period_text)
        except ValueError:
            return None
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    return None


def available_cores(root: Path = CGROUP_ROOT) -> int:
    """The cores this process may run on: min(affinity mask, cgroup quota rounded up), >= 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        cores = os.cpu_count() or 1
    quota = cgroup_quota(root)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(cores, 1)
