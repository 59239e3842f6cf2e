"""The topic catalog: one YAML file (``topics/topics.yaml``) that describes every topic.

:func:`load_catalog` reads the file, validates it completely and returns a :class:`Catalog` of
resolved :class:`TopicSpec` (defaults merged, ``{capability}`` templates expanded). A catalog
with any problem raises one :class:`ConfigurationError` listing every problem, one a line, each
in the form ``FILE: KEY: PROBLEM; FIX``; nothing is returned, so nothing can be applied.

The model is :mod:`expediter.messaging.catalogs`; the checks are
:mod:`expediter.messaging.catalogchecking`; this module reads the file.

Who calls it: the CLI (``expediter topics``), :mod:`expediter.messaging.provisioning` (which
applies a catalog to a cluster), and later the worker, the orchestrator and the KEDA renderer,
which learn topic names, partitions and retry tiers from it rather than hard-coding them.

The file's shape::

    version: 1
    capabilities: [perception, reasoning, ...]
    defaults: {partitions: 6, replication_factor: 3, min_insync_replicas: 2,
               cleanup_policy: delete, retention: 7d}
    topics:
      - {name: "tasks.{capability}", role: tasks}        # one topic per capability
      - {name: registry, role: registry, cleanup_policy: compact, partitions: 1}
    co_partition:
      workflows: [results, workflows.completed, expediter-orchestrator-workflows-changelog]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from expediter.errors import ConfigurationError
from expediter.messaging.catalogchecking import validate
from expediter.messaging.catalogs import DEFAULT_CATALOG, Catalog

__all__ = ["load_catalog", "parse_catalog"]


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a catalog must not."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def load_catalog(path: Path = DEFAULT_CATALOG) -> Catalog:
    """Read and validate the catalog at ``path``; ConfigurationError names every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"{path}: no such file; pass --catalog PATH, or run from the repository root where "
            f"{DEFAULT_CATALOG} lives"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot be read ({exc}); check its permissions") from exc
    return parse_catalog(text, source=str(path))


def parse_catalog(text: str, *, source: str = str(DEFAULT_CATALOG)) -> Catalog:
    """Validate catalog YAML ``text``; ``source`` is the file name the messages give."""
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigurationError(
            f"{source}: not valid YAML{at}: {problem}; fix the syntax (keys once each, "
            "two-space indents)"
        ) from exc
    if not isinstance(document, dict):
        raise ConfigurationError(
            f"{source}: the top level must be a mapping (got {type(document).__name__}); "
            "start from the keys version, capabilities, defaults, topics and co_partition"
        )
    return validate(document, source)
