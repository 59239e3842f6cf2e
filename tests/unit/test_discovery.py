"""Discovery without a broker: which cards are live, what a capability summary holds, and the
worker's default instance name (unique per process off Kubernetes, the pod name on it)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from expediter.events import AgentCard, AgentResources, Producer
from expediter.messaging import Directory, TopicNames, is_live
from expediter.orchestrator.discovering import Discovery
from expediter.settings import KafkaSettings
from expediter.worker.registering import default_instance

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def card(capability: str, instance: str, lease_left: float | None) -> AgentCard:
    return AgentCard(
        producer=Producer(name="t", version="1"),
        created_at=NOW - timedelta(seconds=5),
        name=capability,
        capability=capability,
        version="2.1.0",
        instance=instance,
        input_schema={},
        output_schema={},
        resources=AgentResources(accelerator="gpu", concurrency=2),
        engine="llama",
        model="gemma.gguf",
        lease_seconds=30 if lease_left is not None else None,
        expires_at=NOW + timedelta(seconds=lease_left) if lease_left is not None else None,
    )


def test_a_card_is_live_while_its_lease_holds() -> None:
    assert is_live(card("a", "i", 1), NOW)
    assert not is_live(card("a", "i", 0), NOW)
    assert not is_live(card("a", "i", -10), NOW)
    assert is_live(card("a", "i", None), NOW), "a card from before leases counts as live"


def test_unserved_names_capabilities_with_no_live_instance() -> None:
    directory = Directory(
        cards=(card("soil", "s-1", 20), card("soil", "s-2", -1), card("pest", "p-1", -5)),
        read_at=NOW,
    )
    assert directory.served() == {"soil"}
    assert directory.unserved(["pest", "soil", "crop", "pest"]) == ["crop", "pest"]
    (pest, soil) = directory.by_capability()
    assert (pest["capability"], pest["live"], pest["stale"]) == ("pest", 0, 1)
    assert pest["stale_instances"] == ["p-1"]
    assert (soil["live"], soil["stale"]) == (1, 1)
    (live,) = soil["instances"]
    assert live["instance"] == "s-1"
    assert (live["version"], live["engine"], live["model"]) == ("2.1.0", "llama", "gemma.gguf")
    assert live["resources"] == {"accelerator": "gpu", "concurrency": 2, "max_task_seconds": 60.0}
    assert live["expires_in"] == 20.0


def test_the_default_instance_is_unique_per_process_off_kubernetes() -> None:
    env = {"HOSTNAME": "box"}
    assert default_instance(env, pid=101) == "box-101"
    assert default_instance(env, pid=102) != default_instance(env, pid=101)


def test_on_kubernetes_the_default_instance_is_the_pod_name_so_a_restart_fences() -> None:
    env = {"HOSTNAME": "soil-analyzer-7d9f-abcde", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}
    assert default_instance(env, pid=1) == "soil-analyzer-7d9f-abcde"
    assert default_instance(env, pid=7) == "soil-analyzer-7d9f-abcde"


def test_the_orchestrator_warns_once_a_minute_per_unserved_capability(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.discovery")
    discovery = Discovery(KafkaSettings(), TopicNames("x."), log)
    assert discovery.check("flow", "wf-0", ["soil"]) == [], "nothing is known before a read"
    discovery.directory = Directory(cards=(card("soil", "s-1", 20),), read_at=NOW)
    with caplog.at_level(logging.WARNING, logger="test.discovery"):
        assert discovery.check("flow", "wf-1", ["soil", "pest"]) == ["pest"]
        assert discovery.check("flow", "wf-2", ["pest"]) == ["pest"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, "the second workflow within a minute logs nothing more"
    assert "wf-1" in warnings[0]
    assert "pest" in warnings[0]
