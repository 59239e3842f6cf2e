"""The CLI as a user runs it: a separate process, real brokers, JSON output for scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from expediter.dev import Broker

EXPEDITER = [sys.executable, "-m", "expediter.cli"]


def run(
    args: list[str], env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXPEDITER, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout.strip(), result.stderr
    document: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return document


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    """An environment in which the CLI starts its own local broker under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPEDITER_")}
    env.update(EXPEDITER_DEV_DIR=str(tmp_path / "dev"), EXPEDITER_NO_DOCKER="1")
    if "EXPEDITER_CACHE_DIR" in os.environ:
        env["EXPEDITER_CACHE_DIR"] = os.environ["EXPEDITER_CACHE_DIR"]
    return env


def brokers_under(path: Path) -> list[str]:
    out = subprocess.run(
        ["pgrep", "-af", "kafka.Kafka"], capture_output=True, text=True, check=False
    )
    return [line for line in out.stdout.splitlines() if str(path) in line]


def test_help_explains_the_commands() -> None:
    result = run(["--help"], dict(os.environ))
    assert result.returncode == 0
    for command in ("dev", "demo"):
        assert command in result.stdout
    result = run(["dev", "kafka", "--help"], dict(os.environ))
    for command in ("start", "stop", "status"):
        assert command in result.stdout


def test_bad_argument_exits_non_zero_with_a_message() -> None:
    result = run(["demo", "--count", "0"], dict(os.environ))
    assert result.returncode == 2
    assert "--count" in result.stderr


def test_scram_user_without_password_is_refused(local_env: dict[str, str]) -> None:
    result = run(["dev", "kafka", "start", "--scram-user", "alice"], local_env)
    assert result.returncode == 2
    assert "NAME:PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_dev_kafka_start_status_stop(local_env: dict[str, str], tmp_path: Path) -> None:
    try:
        started = as_json(
            run(["dev", "kafka", "start", "--json", "--scram-user", "u:p"], local_env)
        )
        assert started["kind"] == "local"
        assert started["running"]
        assert started["bootstrap"].startswith("127.0.0.1:")
        assert started["sasl_bootstrap"].startswith("127.0.0.1:")
        assert Path(started["log"]).exists()
        assert len(brokers_under(tmp_path)) == 1

        again = as_json(run(["dev", "kafka", "start", "--json"], local_env))
        assert again["pid"] == started["pid"], "a second start must reuse the running broker"

        status = as_json(run(["dev", "kafka", "status", "--json"], local_env))
        assert status["running"]
        assert status["bootstrap"] == started["bootstrap"]
        assert status["version"] == started["version"]
        assert status["api_keys"] > 40
    finally:
        stopped = as_json(run(["dev", "kafka", "stop", "--json"], local_env))
    assert stopped["stopped"]
    assert brokers_under(tmp_path) == []
    assert as_json(run(["dev", "kafka", "stop", "--json"], local_env))["stopped"] is False
    gone = run(["dev", "kafka", "status", "--json"], local_env)
    assert gone.returncode == 1
    assert as_json(gone)["running"] is False


def test_demo_against_an_existing_broker(kafka: Broker) -> None:
    env = {**os.environ, "EXPEDITER_BOOTSTRAP": kafka.bootstrap}
    result = run(["demo", "--smoke", "--json", "--count", "300", "--partitions", "4"], env)
    assert result.returncode == 0, result.stderr
    report = as_json(result)
    assert report["ok"]
    assert report["produced"] == report["consumed"] == report["committed"] == 300
    assert sum(report["per_partition"].values()) == 300
    assert len(report["per_partition"]) == 4


@pytest.mark.integration
@pytest.mark.slow
def test_demo_starts_and_stops_its_own_broker(local_env: dict[str, str], tmp_path: Path) -> None:
    result = run(["demo", "--smoke", "--count", "100"], local_env)
    assert result.returncode == 0, result.stderr
    assert "smoke flow" in result.stdout
    assert "consumed       100" in result.stdout
    assert brokers_under(tmp_path) == [], "make demo must leave no process behind"


@pytest.mark.integration
@pytest.mark.slow
def test_demo_scales_the_fleet_on_lag_and_sums_it_up(kafka: Broker, tmp_path: Path) -> None:
    env = {**os.environ, "EXPEDITER_BOOTSTRAP": kafka.bootstrap,
           "EXPEDITER_DEV_DIR": str(tmp_path / "dev")}  # fmt: skip
    result = run(["demo", "--json", "--count", "20", "--cooldown", "3"], env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = as_json(result)
    assert summary["ok"]
    assert summary["submitted"] == summary["done"] == summary["completed"] == 20
    assert summary["peak_replicas"]["soil-analyzer"] >= 1, "scaled up from zero on lag"
    assert summary["peak_replicas"]["pest-detector"] >= 1
    assert summary["first_replica_seconds"] is not None
    assert summary["scaled_back"], "back to minReplicaCount after the cooldown"
    assert summary["leftover_processes"] == 0
    assert len(summary["reports"]) == 3
