"""docker-compose.yml cannot run on machines without Docker, so its structure is checked here
against what the project defines: the Kafka version, the CLI's commands and the agents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from expediter.cli import app
from expediter.dev import COMPOSE_BOOTSTRAP, KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def _runtime_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image") == "expediter:dev"}


def test_kafka_is_the_same_version_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in " ".join(env)
    assert kafka["healthcheck"]["test"]


def test_host_port_is_loopback_and_matches_the_cli(compose: dict[str, Any]) -> None:
    ports = compose["services"]["kafka"]["ports"]
    assert ports == [f"{COMPOSE_BOOTSTRAP}:{COMPOSE_BOOTSTRAP.rpartition(':')[2]}"]
    advertised = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"HOST://{COMPOSE_BOOTSTRAP}" in advertised


def test_runtime_services_are_wired_to_the_broker(compose: dict[str, Any]) -> None:
    services = _runtime_services(compose)
    assert services, "at least one runtime service"
    internal = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    for name, service in services.items():
        bootstrap = service["environment"]["EXPEDITER_BOOTSTRAP"]
        assert f"INTERNAL://{bootstrap}" in internal, name
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name


def test_every_service_command_exists_in_the_cli(compose: dict[str, Any]) -> None:
    # Duck-typed, not isinstance(click.Group): typer vendors its own click, whose classes are
    # not the click package's, and an isinstance check would stop at the first word.
    root = typer.main.get_command(app)
    for name, service in _runtime_services(compose).items():
        words = list(service["command"])
        command: Any = root
        while hasattr(command, "get_command") and words and not words[0].startswith("-"):
            sub = command.get_command(command.context_class(command), words.pop(0))
            assert sub is not None, f"service {name}: no such command in `expediter`"
            command = sub
        assert not hasattr(command, "get_command"), f"service {name}: names a group, not a command"
        # Parsing the remaining options the way click would catches a misspelled flag.
        command.make_context(name, words, resilient_parsing=False)


def test_one_service_per_agent(compose: dict[str, Any]) -> None:
    agents = sorted(p.stem for p in (ROOT / "agents").glob("*.py") if not p.stem.startswith("_"))
    for agent in agents:
        assert f"agent-{agent}" in compose["services"], f"agents/{agent}.py has no service"


def test_image_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    users = [line.split()[1] for line in dockerfile if line.startswith("USER ")]
    assert users, "the image must set a USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_agents_wait_for_the_topics_and_report_readiness(compose: dict[str, Any]) -> None:
    agents = {n: s for n, s in compose["services"].items() if n.startswith("agent-")}
    assert agents
    assert compose["services"]["topics"]["command"] == ["topics", "apply"]
    for name, service in agents.items():
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert "/readyz" in " ".join(service["healthcheck"]["test"]), name
        assert service["command"][0] == "worker"
        assert (ROOT / service["command"][1]).is_file(), name


FLEET = ("kafka", "topics", "orchestrator", "agent-soil_analyzer", "agent-pest_detector",
         "agent-crop_mapper")  # fmt: skip
"""What `make demo` runs, as compose services: `docker compose up` must start all of them."""


def test_compose_up_runs_the_whole_fleet(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in FLEET:
        assert name in services, f"docker-compose.yml has no {name} service"
        assert not services[name].get("profiles"), f"{name} must start on a plain `up`"
    orchestrator = services["orchestrator"]
    assert orchestrator["command"] == ["orchestrator"]
    assert orchestrator["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert "8081/readyz" in " ".join(orchestrator["healthcheck"]["test"])
    # The image's /app belongs to root; Faust's data directory must be somewhere writable.
    assert orchestrator["environment"]["EXPEDITER_DATA_DIR"].startswith("/tmp/")  # noqa: S108
    assert services["smoke"]["profiles"] == ["smoke"], "the smoke flow runs only when asked"


def test_every_capability_a_workflow_names_has_an_agent_service(compose: dict[str, Any]) -> None:
    from expediter import load_agent
    from expediter.authoring import load_workflows

    served = {
        load_agent(ROOT / service["command"][1]).capability: name
        for name, service in compose["services"].items()
        if name.startswith("agent-")
    }
    for workflow in load_workflows(ROOT / "workflows").values():
        for step in workflow.steps():
            assert step.capability in served, (
                f"workflow {workflow.name} step {step.id} needs {step.capability!r}: no agent "
                "service in docker-compose.yml serves it, so its workflows would never finish"
            )


def test_compose_builds_the_runtime_target(compose: dict[str, Any]) -> None:
    from tests.unit.test_dockerfile import stages

    build = compose["x-expediter"]["build"]
    assert build["target"] == "runtime"
    assert "runtime" in stages()
