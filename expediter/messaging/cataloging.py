"""The topic catalog: one YAML file (``topics/topics.yaml``) that describes every topic.

:func:`load_catalog` reads the file, validates it completely and returns a :class:`Catalog` of
resolved :class:`TopicSpec` (defaults merged, ``{capability}`` templates expanded). A catalog
with any problem raises one :class:`ConfigurationError` listing every problem, one a line, each
in the form ``FILE: KEY: PROBLEM; FIX``; nothing is returned, so nothing can be applied.

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

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, ValidationError

from expediter.errors import ConfigurationError

__all__ = [
    "COMPACTION_ONLY_CONFIGS",
    "DEFAULT_CATALOG",
    "KAFKA_TOPIC_CONFIGS",
    "Catalog",
    "CleanupPolicy",
    "TopicRole",
    "TopicSpec",
    "load_catalog",
    "parse_catalog",
    "parse_duration_ms",
]

DEFAULT_CATALOG = Path("topics/topics.yaml")
"""Where the CLI looks for the catalog, relative to the working directory."""

TopicRole = Literal[
    "tasks",
    "retry",
    "dlq",
    "results",
    "completions",
    "commands",
    "state",
    "registry",
    "changelog",
    "ledger",
]
"""What a topic is for. Other components find topics by role (and capability), not by name."""

CleanupPolicy = Literal["delete", "compact", "compact,delete"]

KAFKA_TOPIC_CONFIGS = frozenset(
    {
        "cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
        "compression.zstd.level", "delete.retention.ms", "file.delete.delay.ms",
        "flush.messages", "flush.ms", "follower.replication.throttled.replicas",
        "index.interval.bytes", "leader.replication.throttled.replicas",
        "local.retention.bytes", "local.retention.ms", "max.compaction.lag.ms",
        "max.message.bytes", "message.timestamp.after.max.ms", "message.timestamp.before.max.ms",
        "message.timestamp.type", "min.cleanable.dirty.ratio", "min.compaction.lag.ms",
        "min.insync.replicas", "preallocate", "remote.log.copy.disable",
        "remote.log.delete.on.disable", "remote.storage.enable", "retention.bytes",
        "retention.ms", "segment.bytes", "segment.index.bytes", "segment.jitter.ms",
        "segment.ms", "unclean.leader.election.enable",
    }
)  # fmt: skip
"""The topic-level configs of Kafka 4.1, so that a typo fails ``check`` rather than ``apply``.
An integration test compares this set with what the broker reports."""

COMPACTION_ONLY_CONFIGS = frozenset(
    {"delete.retention.ms", "max.compaction.lag.ms", "min.cleanable.dirty.ratio",
     "min.compaction.lag.ms"}
)  # fmt: skip
"""Configs that only the log cleaner reads; on a ``delete`` topic they are a mistake."""

_TEMPLATE = "{capability}"
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_CAPABILITY = re.compile(r"[a-z0-9][a-z0-9-]*")
_DURATION = re.compile(r"(\d+)\s*(ms|s|m|h|d|w)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_SINGLETON_ROLES: tuple[TopicRole, ...] = (
    "results",
    "completions",
    "registry",
    "changelog",
    "ledger",
)
_PER_CAPABILITY_ROLES: tuple[TopicRole, ...] = ("tasks", "retry", "dlq")
_MUST_COMPACT: tuple[TopicRole, ...] = ("registry", "changelog", "ledger")
_WORKFLOWS_GROUP = "workflows"
_OWN_FIELD = {
    "cleanup.policy": "cleanup_policy",
    "min.insync.replicas": "min_insync_replicas",
    "retention.ms": "retention",
}


def parse_duration_ms(value: object) -> int:
    """``7d``, ``12h``, ``30m``, ``10s``, ``500ms``, ``1w``, an integer of milliseconds, or
    ``infinite`` (-1, Kafka's word for "keep forever") to milliseconds; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= -1:
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("infinite", "-1"):
            return -1
        match = _DURATION.fullmatch(text)
        if match:
            return int(match.group(1)) * _UNIT_MS[match.group(2)]
    raise ValueError(f"is not a duration (got {value!r})")


def _config_value(value: object) -> str:
    # Kafka configs are strings on the wire; YAML gives ints, floats and booleans.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"must be a string, number or boolean (got {type(value).__name__})")


Duration = Annotated[int, BeforeValidator(parse_duration_ms)]
ConfigValue = Annotated[str, BeforeValidator(_config_value)]


class _TopicFields(BaseModel):
    """Fields a topic may set, and the ``defaults`` block may set for every topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partitions: StrictInt | None = Field(default=None, ge=1)
    """How many partitions; also the most consumers of a group that can work at once."""
    replication_factor: StrictInt | None = Field(default=None, ge=1)
    min_insync_replicas: StrictInt | None = Field(default=None, ge=1)
    cleanup_policy: CleanupPolicy | None = None
    retention: Duration | None = None
    configs: dict[str, ConfigValue] = Field(default_factory=dict)
    """Any other Kafka topic config, by its Kafka name (``segment.ms``)."""


class _TopicEntry(_TopicFields):
    name: Annotated[str, Field(min_length=1)]
    role: TopicRole
    capability: str | None = None
    """Only for a tasks/retry/dlq topic whose name has no ``{capability}`` template."""
    delay: Duration | None = None
    """Retry topics only: how long a task waits there before it is tried again."""
    owner: Literal["expediter", "faust"] = "expediter"
    """Who writes the topic; Faust owns its table changelogs, the catalog fixes their shape."""
    description: str = ""


class _CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    capabilities: list[str]
    defaults: _TopicFields = Field(default_factory=_TopicFields)
    topics: list[_TopicEntry]
    co_partition: dict[str, Annotated[list[str], Field(min_length=2)]] = Field(default_factory=dict)


_MODELS_BY_DEPTH: dict[str, type[BaseModel]] = {"defaults": _TopicFields, "topics": _TopicEntry}

_FIXES = {
    "version": "set `version: 1`",
    "capabilities": "list the capability names, e.g. [perception, reasoning]",
    "topics": "list the topics, each with at least a name and a role",
    "partitions": "set it to the number of partitions you need (>= 1)",
    "replication_factor": "set it to how many brokers keep a copy of each partition (>= 1; "
    "3 in production)",
    "min_insync_replicas": "set it to how many replicas must have a write before it counts "
    "(>= 1 and <= replication_factor; 2 in production)",
    "cleanup_policy": "use delete, compact or compact,delete",
    "retention": "write a duration such as 7d, 12h or 500ms, or infinite",
    "delay": "write a duration such as 10s or 1m",
    "role": "use one of tasks, retry, dlq, results, completions, registry, changelog",
    "owner": "use expediter, or faust for a Faust table's changelog",
    "name": "give the topic a name",
    "configs": "map Kafka topic config names to values, e.g. {segment.ms: 3600000}",
    "co_partition": "map each group name to a list of at least two topic names",
}


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the catalog wants it: defaults merged, template expanded."""

    name: str
    role: TopicRole
    partitions: int
    replication_factor: int
    min_insync_replicas: int
    cleanup_policy: CleanupPolicy
    retention_ms: int | None
    """None: the cluster's default; -1: forever."""
    configs: Mapping[str, str]
    """Other Kafka topic configs, as strings (never the three fields above)."""
    capability: str | None = None
    delay_ms: int | None = None
    owner: str = "expediter"
    description: str = ""
    key: str = ""
    """Where in the file it comes from (``topics[3]``), for messages."""

    @property
    def kafka_configs(self) -> dict[str, str]:
        """Every config the catalog sets on this topic, by Kafka name."""
        configs = {
            "cleanup.policy": self.cleanup_policy,
            "min.insync.replicas": str(self.min_insync_replicas),
            **self.configs,
        }
        if self.retention_ms is not None:
            configs["retention.ms"] = str(self.retention_ms)
        return configs


@dataclass(frozen=True)
class Catalog:
    """Every topic of the system, and which must share a partition count."""

    source: str
    capabilities: tuple[str, ...]
    topics: tuple[TopicSpec, ...]
    co_partition: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    prefix: str = ""

    def topic(self, name: str) -> TopicSpec:
        """The topic called ``name`` (prefix included); KeyError if the catalog has none."""
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def by_role(self, role: TopicRole, capability: str | None = None) -> list[TopicSpec]:
        """Topics of ``role`` (and ``capability`` when given), in catalog order."""
        return [
            spec
            for spec in self.topics
            if spec.role == role and (capability is None or spec.capability == capability)
        ]

    def retry_tiers(self, capability: str) -> list[TopicSpec]:
        """The retry topics of ``capability``, shortest delay first."""
        return sorted(self.by_role("retry", capability), key=lambda spec: spec.delay_ms or 0)

    def with_prefix(self, prefix: str) -> Catalog:
        """The same catalog with ``prefix`` before every topic name (shadow environments,
        tests). An empty prefix returns the catalog itself."""
        if not prefix:
            return self
        if not _TOPIC_NAME.fullmatch(prefix):
            raise ConfigurationError(
                f"prefix {prefix!r}: topic names may hold only letters, digits, '.', '_' and "
                "'-'; choose a prefix such as 'shadow.'"
            )
        too_long = [s.name for s in self.topics if len(prefix + s.name) > 249]
        if too_long:
            raise ConfigurationError(
                f"prefix {prefix!r}: makes {too_long[0]!r} longer than Kafka's 249 characters; "
                "choose a shorter prefix"
            )
        return replace(
            self,
            prefix=self.prefix + prefix,
            topics=tuple(replace(s, name=prefix + s.name) for s in self.topics),
            co_partition={g: tuple(prefix + n for n in ns) for g, ns in self.co_partition.items()},
        )


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
    try:
        raw = _CatalogFile.model_validate(document)
    except ValidationError as exc:
        raise ConfigurationError(_translate(exc).render(source)) from None
    problems, specs, groups = _resolve(raw)
    if problems:
        raise ConfigurationError(problems.render(source))
    return Catalog(
        source=source,
        capabilities=tuple(raw.capabilities),
        topics=tuple(specs),
        co_partition=groups,
    )


class _Problems(list[tuple[str, str]]):
    """(key, "problem; fix") pairs, gathered so that one run reports every problem."""

    def add(self, key: str, text: str) -> None:
        self.append((key, text))

    def render(self, source: str) -> str:
        # One line each, naming the file and the key; a template's problem is listed once.
        return "\n".join(dict.fromkeys(f"{source}: {key}: {text}" for key, text in self))


def _key(loc: Iterable[int | str]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: type[BaseModel] = _CatalogFile
    if len(loc) > 1 and isinstance(loc[0], str) and loc[0] in _MODELS_BY_DEPTH:
        model = _MODELS_BY_DEPTH[loc[0]]
    return sorted(model.model_fields)


def _translate(exc: ValidationError) -> _Problems:
    """pydantic's errors as problems a person can act on."""
    problems = _Problems()
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        names = [part for part in loc if isinstance(part, str)]
        field_name = "configs" if "configs" in names[:-1] else names[-1] if names else ""
        if "co_partition" in names:
            field_name = "co_partition"
        fix = _FIXES.get(field_name, "fix the value")
        got, kind, ctx = error.get("input"), error["type"], error.get("ctx", {})
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            text = f"unknown key{hint}; remove it or use one of: {', '.join(allowed)}"
        elif kind == "missing":
            text = f"is required; {fix}"
        elif kind == "greater_than_equal":
            text = f"must be >= {ctx.get('ge')} (got {got!r}); {fix}"
        elif kind == "value_error":
            text = f"{str(error['msg']).removeprefix('Value error, ')}; {fix}"
        else:
            text = f"{str(error['msg']).lower()} (got {got!r}); {fix}"
        problems.add(_key(loc), text)
    return problems


def _resolve(raw: _CatalogFile) -> tuple[_Problems, list[TopicSpec], dict[str, tuple[str, ...]]]:
    """Merge defaults, expand templates and check what pydantic cannot see field by field."""
    problems = _Problems()
    for i, capability in enumerate(raw.capabilities):
        if not _CAPABILITY.fullmatch(capability):
            problems.add(
                f"capabilities[{i}]",
                f"{capability!r} is not a capability name; use lowercase letters, digits and "
                "dashes, e.g. soil-analysis",
            )
    for capability, count in Counter(raw.capabilities).items():
        if count > 1:
            problems.add("capabilities", f"{capability!r} is listed {count} times; list it once")
    # Templates expand over the valid names only, so one bad name is one problem, not five.
    capabilities = [c for c in dict.fromkeys(raw.capabilities) if _CAPABILITY.fullmatch(c)]
    specs: list[TopicSpec] = []
    for i, entry in enumerate(raw.topics):
        specs += _expand(entry, raw.defaults, capabilities, f"topics[{i}]", problems)
    _check_names(specs, problems)
    groups = {name: tuple(members) for name, members in raw.co_partition.items()}
    if not problems:
        # These look across topics; a broken entry would only echo here as a missing topic.
        _check_roles(specs, capabilities, problems)
        groups = _check_groups(raw.co_partition, specs, capabilities, problems)
    return problems, specs, groups


def _expand(
    entry: _TopicEntry,
    defaults: _TopicFields,
    capabilities: list[str],
    key: str,
    problems: _Problems,
) -> list[TopicSpec]:
    """One entry as TopicSpecs (one per capability for a template), defaults merged."""
    before = len(problems)

    def pick(name: str) -> Any:
        value = getattr(entry, name)
        return value if value is not None else getattr(defaults, name)

    for name in ("partitions", "replication_factor", "min_insync_replicas", "cleanup_policy"):
        if pick(name) is None:
            problems.add(f"{key}.{name}", f"is not set here nor in defaults; {_FIXES[name]}")
    replication, min_insync = pick("replication_factor"), pick("min_insync_replicas")
    if replication is not None and min_insync is not None and min_insync > replication:
        problems.add(
            f"{key}.min_insync_replicas",
            f"is {min_insync}, more than replication_factor {replication}, so no write could "
            f"ever succeed; set min_insync_replicas <= {replication} (2 with 3 replicas)",
        )
    policy = pick("cleanup_policy")
    if entry.role in _MUST_COMPACT and policy not in (None, "compact"):
        problems.add(
            f"{key}.cleanup_policy",
            f"a {entry.role} topic must be compacted (got {policy!r}): deleting old records "
            "loses the latest value of their keys; set cleanup_policy: compact",
        )
    fields = {"cleanup.policy": policy, "min.insync.replicas": min_insync}
    retention, configs = _merge_configs(
        {**defaults.configs, **entry.configs}, fields, pick("retention"), policy, key, problems
    )
    _check_shape(entry, capabilities, key, problems)
    if len(problems) > before:
        return []
    names = (
        [(entry.name.replace(_TEMPLATE, c), c) for c in capabilities]
        if _TEMPLATE in entry.name
        else [(entry.name, entry.capability)]
    )
    return [
        TopicSpec(
            name=name,
            role=entry.role,
            partitions=pick("partitions"),
            replication_factor=replication,
            min_insync_replicas=min_insync,
            cleanup_policy=policy,
            retention_ms=retention,
            configs=configs,
            capability=capability,
            delay_ms=entry.delay,
            owner=entry.owner,
            description=entry.description,
            key=key,
        )
        for name, capability in names
    ]


def _merge_configs(
    configs: dict[str, str],
    fields: dict[str, Any],
    retention: int | None,
    policy: str | None,
    key: str,
    problems: _Problems,
) -> tuple[int | None, dict[str, str]]:
    """The retention and the other configs; refuses unknown names and contradictions."""
    fields = {**fields, "retention.ms": retention}
    extra: dict[str, str] = {}
    for name, value in configs.items():
        where = f"{key}.configs.{name}"
        current = fields.get(name)
        if name not in KAFKA_TOPIC_CONFIGS:
            close = difflib.get_close_matches(name, sorted(KAFKA_TOPIC_CONFIGS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            fix = {
                "partitions": "use the `partitions` field instead",
                "replication.factor": "use the `replication_factor` field instead",
            }.get(name, "remove it or use a Kafka topic config name")
            problems.add(where, f"unknown Kafka topic config{hint}; {fix}")
        elif name not in fields:
            extra[name] = value
        elif name == "retention.ms" and current is None:
            if re.fullmatch(r"-1|\d+", value):
                retention = int(value)
            else:
                problems.add(
                    where,
                    f"must be a number of milliseconds (got {value!r}); write one, or use the "
                    "`retention` field for durations such as 7d",
                )
        elif current is not None and _normalise(name, value) != _normalise(name, str(current)):
            own = _OWN_FIELD[name]
            problems.add(
                where,
                f"is {value!r} but {own} says {current!r}; set it in one place only "
                f"(the `{own}` field)",
            )
    if policy == "delete":
        for name in sorted(COMPACTION_ONLY_CONFIGS & set(configs)):
            problems.add(
                f"{key}.configs.{name}",
                "only compaction reads it, but cleanup_policy is delete; remove it or set "
                "cleanup_policy to compact or compact,delete",
            )
    return retention, extra


def _check_shape(
    entry: _TopicEntry, capabilities: list[str], key: str, problems: _Problems
) -> None:
    """Name templates, capability and delay must fit the entry's role."""
    if entry.role == "retry" and entry.delay is None:
        problems.add(f"{key}.delay", f"a retry topic needs a delay; {_FIXES['delay']}")
    if entry.role != "retry" and entry.delay is not None:
        problems.add(f"{key}.delay", "only retry topics have a delay; remove it")
    if entry.delay is not None and entry.delay <= 0:
        problems.add(f"{key}.delay", f"must be positive (got {entry.delay}); use e.g. 10s")
    templated = _TEMPLATE in entry.name
    if re.search(r"[{}]", entry.name.replace(_TEMPLATE, "")):
        problems.add(
            f"{key}.name", f"{entry.name!r} has an unknown template; only {_TEMPLATE} is expanded"
        )
    per_capability = entry.role in _PER_CAPABILITY_ROLES
    if templated and not per_capability:
        problems.add(
            f"{key}.name",
            f"a {entry.role} topic is one topic, not one per capability; remove {_TEMPLATE}",
        )
    # A dlq may also belong to a component rather than a capability (dlq.orchestrator).
    owned = entry.role != "dlq"
    if (
        per_capability
        and owned
        and not templated
        and entry.capability is None
        and "{" not in entry.name
    ):
        problems.add(
            f"{key}.capability",
            f"a {entry.role} topic belongs to one capability; put {_TEMPLATE} in its name or "
            "set `capability:`",
        )
    if entry.capability is not None and (templated or not per_capability):
        problems.add(
            f"{key}.capability",
            "is only for a tasks, retry or dlq topic without a template; remove it",
        )
    elif entry.capability is not None and entry.capability not in capabilities:
        problems.add(
            f"{key}.capability",
            f"{entry.capability!r} is not in capabilities; add it there or fix the name",
        )


def _normalise(name: str, value: str) -> str:
    if name == "cleanup.policy":
        return ",".join(sorted(part.strip() for part in value.split(",")))
    return value.strip()


def _check_names(specs: list[TopicSpec], problems: _Problems) -> None:
    first: dict[str, TopicSpec] = {}
    for spec in specs:
        if not _TOPIC_NAME.fullmatch(spec.name) or spec.name in (".", ".."):
            problems.add(
                f"{spec.key}.name",
                f"{spec.name!r} is not a Kafka topic name; use up to 249 letters, digits, "
                "'.', '_' and '-'",
            )
        if spec.name in first:
            problems.add(
                f"{spec.key}.name",
                f"{spec.name!r} is also the name of {first[spec.name].key}; topic names must "
                "be unique, rename or remove one",
            )
        first.setdefault(spec.name, spec)


def _check_roles(specs: list[TopicSpec], capabilities: list[str], problems: _Problems) -> None:
    """Other components find topics by role: each one they look for must be there."""
    for role in _SINGLETON_ROLES:
        found = [s.key for s in specs if s.role == role]
        if len(found) != 1:
            problems.add(
                "topics",
                f"needs exactly one topic with role {role} (found {len(found)}"
                f"{': ' if found else ''}{', '.join(found)}); add one or remove the extras",
            )
    for capability in capabilities:
        for role in _PER_CAPABILITY_ROLES:
            found = [s.key for s in specs if s.role == role and s.capability == capability]
            if not found or (role != "retry" and len(found) > 1):
                needs = "at least one" if role == "retry" else "exactly one"
                example = {
                    "tasks": '{name: "tasks.{capability}", role: tasks}',
                    "retry": '{name: "retry.{capability}.10s", role: retry, delay: 10s}',
                    "dlq": '{name: "dlq.{capability}", role: dlq}',
                }[role]
                problems.add(
                    "topics",
                    f"capability {capability!r} needs {needs} {role} topic (found "
                    f"{len(found)}); add `- {example}` or remove the duplicates",
                )


def _check_groups(
    groups: dict[str, list[str]],
    specs: list[TopicSpec],
    capabilities: list[str],
    problems: _Problems,
) -> dict[str, tuple[str, ...]]:
    """Each group's topics exist and have equal partitions; results and the workflow table
    are in the ``workflows`` group."""
    by_name = {s.name: s for s in specs}
    resolved: dict[str, tuple[str, ...]] = {}
    for group, members in groups.items():
        names: list[str] = []
        for j, member in enumerate(members):
            expanded = [member]
            if _TEMPLATE in member:
                expanded = [member.replace(_TEMPLATE, c) for c in capabilities]
            missing = [n for n in expanded if n not in by_name]
            if missing:
                problems.add(
                    f"co_partition.{group}[{j}]",
                    f"no topic named {missing[0]!r} in topics; fix the name or add the topic",
                )
            names += [n for n in expanded if n in by_name]
        resolved[group] = tuple(dict.fromkeys(names))
        counts = {n: by_name[n].partitions for n in resolved[group]}
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{n}={p} ({by_name[n].key}.partitions)" for n, p in counts.items())
            problems.add(
                f"co_partition.{group}",
                f"co-partitioned topics must have equal partitions, got {listed}; set "
                f"partitions: {max(counts.values())} on each (Kafka can add partitions but never "
                "remove them)",
            )
    roles = {s.role: s.name for s in specs}
    needed = [roles[r] for r in ("results", "changelog") if r in roles]
    if len(needed) == 2 and _WORKFLOWS_GROUP not in resolved:
        problems.add(
            f"co_partition.{_WORKFLOWS_GROUP}",
            "is missing: the orchestrator joins results with its workflow table by workflow "
            f"id, so they must be co-partitioned; add `{_WORKFLOWS_GROUP}: "
            f"[{', '.join(needed)}]`",
        )
    elif len(needed) == 2 and not set(needed) <= set(resolved[_WORKFLOWS_GROUP]):
        absent = ", ".join(n for n in needed if n not in resolved[_WORKFLOWS_GROUP])
        problems.add(
            f"co_partition.{_WORKFLOWS_GROUP}",
            f"must hold the results topic and the workflow table's changelog; add {absent}",
        )
    return resolved
