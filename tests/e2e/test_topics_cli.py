"""``expediter topics`` as a user runs it: a separate process against the session broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from expediter.dev import Broker
from expediter.messaging import load_catalog

EXPEDITER = [sys.executable, "-m", "expediter.cli"]
ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "topics" / "topics.yaml"


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EXPEDITER, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=180,
        check=False,
    )  # fmt: skip


def as_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout.strip(), result.stderr
    document: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return document


@pytest.fixture
def env(kafka: Broker) -> dict[str, str]:
    return {**os.environ, "EXPEDITER_BOOTSTRAP": kafka.bootstrap}


@pytest.fixture
def prefix() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}."


def test_check_validates_without_a_broker() -> None:
    offline = {**os.environ, "EXPEDITER_BOOTSTRAP": "127.0.0.1:1"}
    result = run(["topics", "check", "--json"], offline)
    assert result.returncode == 0, result.stderr
    report = as_json(result)
    assert report["ok"]
    assert len(report["topics"]) == len(load_catalog(CATALOG).topics)
    assert report["co_partition"]["workflows"][0] == "results"


def test_apply_dry_run_apply_again_and_describe(env: dict[str, str], prefix: str) -> None:
    catalog = load_catalog(CATALOG)
    names = [prefix + spec.name for spec in catalog.topics]

    dry = as_json(run(["topics", "apply", "--dry-run", "--json", "--prefix", prefix], env))
    assert (dry["dry_run"], dry["applied"]) == (True, False)
    assert [c["action"] for c in dry["changes"]] == ["create"] * len(names)
    assert [c["topic"] for c in dry["changes"]] == names
    nothing = as_json(run(["topics", "describe", "--json", "--prefix", prefix], env))
    assert nothing["missing"] == names, "a dry run must create nothing"

    people = run(["topics", "apply", "--prefix", prefix], env)
    assert people.returncode == 0, people.stderr
    assert f"applied {len(names)} change(s)" in people.stdout
    assert "replication capped" in people.stdout

    again = run(["topics", "apply", "--json", "--prefix", prefix], env)
    assert again.returncode == 0, again.stderr
    second = as_json(again)
    assert (second["ok"], second["changed"], second["applied"]) == (True, False, False)
    assert second["changes"] == []

    described = as_json(run(["topics", "describe", "--json", "--prefix", prefix], env))
    assert described["missing"] == []
    by_name = {t["name"]: t for t in described["topics"]}
    for spec in catalog.topics:
        topic = by_name[prefix + spec.name]
        assert topic["partitions"] == spec.partitions == len(topic["partition_details"])
        assert topic["role"] == spec.role
        assert topic["configs"]["cleanup.policy"] == spec.cleanup_policy
        assert topic["end_offset"] == 0

    listed = as_json(run(["topics", "list", "--json", "--prefix", prefix], env))
    assert [t["name"] for t in listed["topics"]] == names
    assert all(t["exists"] and t["partitions"] == t["catalog_partitions"] for t in listed["topics"])


def test_describe_of_a_missing_topic_exits_1(env: dict[str, str], prefix: str) -> None:
    result = run(["topics", "describe", f"{prefix}nope"], env)
    assert result.returncode == 1
    assert f"no such topic: {prefix}nope" in result.stderr


def test_a_malformed_catalog_exits_2_and_creates_nothing(
    env: dict[str, str], prefix: str, tmp_path: Path
) -> None:
    bad = tmp_path / "topics.yaml"
    bad.write_text(CATALOG.read_text().replace("partitions: 6", "partitions: 0", 1))
    for command in (
        ["check"],
        ["apply", "--prefix", prefix],
        ["apply", "--json", "--prefix", prefix],
    ):
        result = run(["topics", *command, "--catalog", str(bad)], env)
        assert result.returncode == 2, result.stderr
        assert f"{bad}: defaults.partitions: must be >= 1 (got 0)" in result.stderr
        assert "set it to the number of partitions you need" in result.stderr
        assert "Traceback" not in result.stderr
    assert as_json(result)["ok"] is False
    described = as_json(run(["topics", "describe", "--json", "--prefix", prefix], env))
    assert len(described["missing"]) == len(load_catalog(CATALOG).topics), (
        "a malformed catalog must apply nothing"
    )


def test_shrinking_exits_2_and_says_kafka_cannot(
    env: dict[str, str], prefix: str, tmp_path: Path
) -> None:
    text = CATALOG.read_text()
    wide, narrow = tmp_path / "wide.yaml", tmp_path / "narrow.yaml"
    wide.write_text(text.replace("partitions: 1  #", "partitions: 3  #"))
    narrow.write_text(text)
    created = run(["topics", "apply", "--catalog", str(wide), "--prefix", prefix], env)
    assert created.returncode == 0, created.stderr
    refused = run(["topics", "apply", "--catalog", str(narrow), "--prefix", prefix], env)
    assert refused.returncode == 2
    assert f"{prefix}registry: has 3 partitions, the catalog says 1" in refused.stderr
    assert "Kafka cannot shrink" in refused.stderr
    assert "nothing was applied" in refused.stderr
