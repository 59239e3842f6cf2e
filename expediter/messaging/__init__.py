"""Kafka I/O: connecting clients from settings, probing a broker, and the topic catalog.

Called by the worker, the orchestrator, the dev tooling and the CLI. Imports only ``settings``
and ``errors`` (and, later, ``events``). The catalog (YAML) and provisioning are imported when
first used, so that a worker, which needs neither, never loads yaml.
"""

import importlib
from typing import TYPE_CHECKING, Any

from expediter.messaging.connecting import client_options, connected
from expediter.messaging.discovering import Directory, is_live, read_registry
from expediter.messaging.naming import TopicNames
from expediter.messaging.probing import ApiVersionsReply, api_versions, wait_for_broker

if TYPE_CHECKING:
    from expediter.messaging.cataloging import load_catalog, parse_catalog
    from expediter.messaging.catalogs import (
        DEFAULT_CATALOG,
        Catalog,
        CleanupPolicy,
        TopicRole,
        TopicSpec,
    )
    from expediter.messaging.provisioning import (
        Change,
        PartitionDescription,
        Plan,
        TopicDescription,
        TopicState,
        apply_plan,
        describe_topics,
        diff_catalog,
        plan_topics,
    )

_DEFERRED = {
    **dict.fromkeys(("load_catalog", "parse_catalog"), "cataloging"),
    **dict.fromkeys(("DEFAULT_CATALOG", "Catalog", "CleanupPolicy", "TopicRole", "TopicSpec"),
                    "catalogs"),
    **dict.fromkeys(("Change", "PartitionDescription", "Plan", "TopicDescription", "TopicState",
                     "apply_plan", "describe_topics", "diff_catalog", "plan_topics"),
                    "provisioning"),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    module = _DEFERRED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_CATALOG",
    "ApiVersionsReply",
    "Catalog",
    "Change",
    "CleanupPolicy",
    "Directory",
    "PartitionDescription",
    "Plan",
    "TopicDescription",
    "TopicNames",
    "TopicRole",
    "TopicSpec",
    "TopicState",
    "api_versions",
    "apply_plan",
    "client_options",
    "connected",
    "describe_topics",
    "diff_catalog",
    "is_live",
    "load_catalog",
    "parse_catalog",
    "plan_topics",
    "read_registry",
    "wait_for_broker",
]
