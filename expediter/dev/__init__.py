"""Developer tooling: a real Kafka broker on any machine, and the smoke flow.

Called by the CLI (``expediter dev kafka``, ``expediter demo``) and by the tests' fixtures.
"""

from expediter.dev.fetching import KAFKA_VERSION, fetch_kafka
from expediter.dev.locating import (
    COMPOSE_BOOTSTRAP,
    Broker,
    BrokerKind,
    choose_kind,
    compose_file,
    docker_available,
    provided_broker,
)
from expediter.dev.running import BrokerState, LocalBroker, ScramUser
from expediter.dev.smoke import SmokeReport, run_smoke

__all__ = [
    "COMPOSE_BOOTSTRAP",
    "KAFKA_VERSION",
    "Broker",
    "BrokerKind",
    "BrokerState",
    "LocalBroker",
    "ScramUser",
    "SmokeReport",
    "choose_kind",
    "compose_file",
    "docker_available",
    "fetch_kafka",
    "provided_broker",
    "run_smoke",
]
