"""The local broker's preconditions: tools, the jar cache location, SCRAM user syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from expediter.dev import ScramUser, choose_kind
from expediter.dev.fetching import cache_root, require_tool
from expediter.errors import LocalBrokerError, ToolMissingError


def test_missing_java_is_one_line_saying_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissingError) as info:
        require_tool("java")
    message = str(info.value)
    assert "\n" not in message
    assert "java" in message
    assert "install" in message
    assert not info.value.retriable


def test_missing_maven_mentions_the_alternative(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissingError, match="EXPEDITER_BOOTSTRAP"):
        require_tool("mvn")


def test_cache_lives_outside_the_repository(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("EXPEDITER_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "expediter"
    monkeypatch.setenv("EXPEDITER_CACHE_DIR", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x"


@pytest.mark.parametrize("name", ["", "a,b", "a=b", "x]"])
def test_scram_users_that_kafka_cannot_parse_are_refused(name: str) -> None:
    with pytest.raises(LocalBrokerError, match="SCRAM user"):
        ScramUser(name=name, password="pw")


def test_bootstrap_variable_wins_over_everything() -> None:
    assert choose_kind({"EXPEDITER_BOOTSTRAP": "h:9092"}) == "external"
    assert choose_kind({"EXPEDITER_NO_DOCKER": "1"}) == "local"


def test_a_cluster_id_never_starts_with_a_dash() -> None:
    # kafka-storage reads "-t -abc" as a missing value: one broker start in 64 failed that way.
    from expediter.dev.running import _cluster_id

    ids = {_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert not [i for i in ids if i.startswith("-")]
