"""What a user meets before any cluster runs: a missing build, a missing Go, a stop with none.

These need no built cluster and run in every tier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from expediter.dev.cluster import (
    ClusterError,
    ClusterNotBuiltError,
    LocalCluster,
    build_cluster,
    built_bin,
    find_go,
)
from expediter.errors import ToolMissingError


def test_a_missing_build_names_the_command_that_makes_it(tmp_path: Path) -> None:
    with pytest.raises(ClusterNotBuiltError, match="expediter dev cluster build"):
        built_bin(tmp_path)
    with pytest.raises(ClusterNotBuiltError, match="expediter dev cluster build"):
        LocalCluster(tmp_path / "state", cache=tmp_path).start()


def test_cli_status_without_a_cluster_says_how_to_get_one(tmp_path: Path) -> None:
    env = {**os.environ, "EXPEDITER_DEV_DIR": str(tmp_path), "EXPEDITER_CACHE_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "expediter.cli", "dev", "cluster", "status"]
    human = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert human.returncode == 1
    assert "expediter dev cluster build" in human.stderr
    scripted = subprocess.run(
        [*command, "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert scripted.returncode == 1
    assert json.loads(scripted.stdout)["running"] is False


def test_an_old_or_missing_go_is_refused_with_where_to_get_one(tmp_path: Path) -> None:
    old = tmp_path / "go"
    old.write_text("#!/bin/sh\necho go1.19.8\n")
    old.chmod(0o755)
    with pytest.raises(ToolMissingError, match=r"go\.dev/dl") as refused:
        find_go([str(old), None, str(tmp_path / "absent")])
    assert "go1.19" in str(refused.value)


def test_stop_is_idempotent_and_never_kills_a_process_it_did_not_start(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "cluster")
    assert cluster.stop() is False
    # A state file naming someone else's PID (a reused PID, a copied folder) must not kill it.
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "cluster").mkdir()
        state = {
            "server": "https://127.0.0.1:1",
            "kubeconfig": str(tmp_path / "cluster" / "kubeconfig"),
            "pids": {"etcd": stranger.pid},
            "ports": {},
            "logs": str(tmp_path),
            "started_at": 0.0,
            "hpa_sync_period": 15.0,
        }
        (tmp_path / "cluster" / "state.json").write_text(json.dumps(state))
        assert cluster.status() is None
        assert cluster.stop() is False
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_a_failed_build_shows_the_log_tail_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A go that is new enough but whose downloads fail, as on a machine without the proxy.
    go = tmp_path / "go"
    go.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = env ]; then echo go1.26.8; exit 0; fi\n'
        'echo "go: go.etcd.io/etcd/server/v3@v3.6.8: dial tcp: lookup proxy.golang.org: '
        'i/o timeout" >&2\n'
        "exit 1\n"
    )
    go.chmod(0o755)
    monkeypatch.setenv("EXPEDITER_GO", str(go))
    lines: list[str] = []
    with pytest.raises(ClusterError) as failed:
        build_cluster(cache=tmp_path / "cache", progress=lines.append)
    message = str(failed.value)
    assert "building etcd failed" in message
    assert "lookup proxy.golang.org: i/o timeout" in message  # the log's tail
    assert "GOPROXY" in message
    assert "expediter dev cluster build" in message
    with pytest.raises(ClusterNotBuiltError):
        built_bin(tmp_path / "cache")
