"""The llama engine's default thread count follows the cores the container is given: its CPU
affinity and its cgroup CPU quota (v2 ``cpu.max``, v1 CFS files), read from a cgroup folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from expediter.reasoning.cores import available_cores, cgroup_quota

AFFINITY = len(os.sched_getaffinity(0))


def test_a_v2_quota_of_one_and_a_half_cores_gives_two_threads(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota(tmp_path) == 1.5
    assert available_cores(tmp_path) == min(AFFINITY, 2)


def test_a_quota_below_one_core_still_gives_one_thread(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("20000 100000\n")
    assert available_cores(tmp_path) == 1


@pytest.mark.parametrize("text", ["max 100000", "garbage", "0 100000"])
def test_no_usable_v2_quota_leaves_the_affinity(tmp_path: Path, text: str) -> None:
    (tmp_path / "cpu.max").write_text(text)
    assert cgroup_quota(tmp_path) is None
    assert available_cores(tmp_path) == AFFINITY


def test_a_v1_cfs_quota_is_read(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("100000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path) == 1.0
    assert available_cores(tmp_path) == 1


def test_an_unlimited_v1_quota_leaves_the_affinity(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu"
    cpu.mkdir()
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cores(tmp_path) == AFFINITY


def test_no_cgroup_files_leave_the_affinity(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path) is None
    assert available_cores(tmp_path) == AFFINITY
