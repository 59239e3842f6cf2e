"""The Kafka trigger of a ScaledObject: its metadata, read and refused as KEDA reads and refuses it.

:func:`parse_trigger` turns a trigger's ``metadata`` map into a :class:`KafkaTrigger`. Values may
be strings (as in a ScaledObject) or JSON numbers and booleans; omitted keys take KEDA's defaults.
A metadata map with problems raises one :class:`ConfigurationError` listing every problem, one a
line, each naming the key and the fix.

Who calls it: :mod:`expediter.scaling.scenarios` (``expediter keda simulate``), and later the KEDA
renderer and checker and the local supervisor, so that what they accept is what KEDA accepts.

How KEDA reads values (kedacore/keda pkg/scalers/kafka_scaler.go ``kafkaMetadata``, parsed by
pkg/scalers/scalersconfig/typed_config.go ``setValue`` / ``setConfigValueHelper``): the value is
trimmed, an empty value counts as omitted, and integers and booleans are decoded as JSON, so
``"10"`` and ``"true"`` pass while ``"+10"``, ``"10.0"``, ``"True"`` and ``"1"`` are refused.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from expediter.errors import ConfigurationError

__all__ = [
    "DEFAULT_ACTIVATION_LAG_THRESHOLD",
    "DEFAULT_LAG_THRESHOLD",
    "KNOWN_METADATA_KEYS",
    "KafkaTrigger",
    "OffsetResetPolicy",
    "metadata_string",
    "parse_trigger",
]

OffsetResetPolicy = Literal["latest", "earliest"]

DEFAULT_LAG_THRESHOLD = 10
"""KEDA's default ``lagThreshold`` (kafka_scaler.go: ``default=10``)."""
DEFAULT_ACTIVATION_LAG_THRESHOLD = 0

_ARITHMETIC_KEYS = (
    "lagThreshold", "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers",
    "excludePersistentLag", "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions", "partitionLimitation",
)  # fmt: skip
# Read by KEDA to connect; accepted so that a real ScaledObject's metadata passes, never used here.
_CONNECTION_KEYS = (
    "bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv",
    "topic", "topicFromEnv", "version", "tls", "sasl", "saslTokenProvider", "unsafeSsl",
    "awsRegion",
)  # fmt: skip
_BOOLEAN_KEYS = (
    "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions",
)  # fmt: skip
KNOWN_METADATA_KEYS = frozenset(_ARITHMETIC_KEYS + _CONNECTION_KEYS)
"""The Kafka trigger's metadata keys; any other key is refused as a likely typo."""

# encoding/json's grammar for an integer; KEDA decodes int64 fields with json.Unmarshal.
_JSON_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
# strconv.ParseInt(s, 10, 32), which parsePartitionLimitation uses: optional sign, ASCII digits.
_GO_INT = re.compile(r"[+-]?[0-9]+")
_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class KafkaTrigger:
    """The settings of KEDA's Kafka scaler that change its arithmetic, with KEDA's defaults.

    ``partition_limitation`` is None for "all partitions" (KEDA's nil); an empty tuple is a
    limitation that selects nothing, which KEDA reports as an error at poll time.
    """

    lag_threshold: int = DEFAULT_LAG_THRESHOLD
    activation_lag_threshold: int = DEFAULT_ACTIVATION_LAG_THRESHOLD
    offset_reset_policy: OffsetResetPolicy = "latest"
    allow_idle_consumers: bool = False
    exclude_persistent_lag: bool = False
    scale_to_zero_on_invalid_offset: bool = False
    limit_to_partitions_with_lag: bool = False
    ensure_even_distribution_of_partitions: bool = False
    partition_limitation: tuple[int, ...] | None = None
    topic: str = ""
    where: str = field(default="trigger", repr=False, compare=False)
    """How messages name this trigger (``trigger.lagThreshold``)."""

    def __post_init__(self) -> None:
        problems = _combination_problems(self, self.where)
        if problems:
            raise ConfigurationError("\n".join(problems))

    def partition_counts(self, partition: int) -> bool:
        """Whether ``partition`` feeds the metric (kafka_scaler.go ``isActivePartition``)."""
        return self.partition_limitation is None or partition in self.partition_limitation


def metadata_string(value: object) -> str | None:
    """A metadata value as the string a ScaledObject would carry; None for null (omitted).

    JSON numbers and booleans are accepted for convenience and written as YAML would quote them.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TypeError(type(value).__name__)


def parse_trigger(metadata: Mapping[str, object], *, where: str = "trigger") -> KafkaTrigger:
    """Read a Kafka trigger's metadata as KEDA does; raise ConfigurationError listing problems.

    ``where`` prefixes every key in messages (``trigger.lagThreshold``).
    """
    problems: list[str] = []
    values: dict[str, str] = {}
    for key, raw in metadata.items():
        if key not in KNOWN_METADATA_KEYS:
            close = difflib.get_close_matches(key, sorted(KNOWN_METADATA_KEYS), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            problems.append(
                f"{where}.{key} is not a setting of KEDA's Kafka trigger; {hint}remove it or "
                f"use one of: {', '.join(_ARITHMETIC_KEYS)}"
            )
            continue
        try:
            text = metadata_string(raw)
        except TypeError as exc:
            problems.append(
                f"{where}.{key} must be a string, a number or a boolean, got {exc}; "
                f'write it as a ScaledObject does, e.g. "10" or "true"'
            )
            continue
        # typed_config.go configParamValue: trimmed, and an empty value counts as omitted.
        if text is not None and text.strip():
            values[key] = text.strip()

    reader = _Reader(values, where, problems)
    lag_threshold = reader.integer("lagThreshold", DEFAULT_LAG_THRESHOLD)
    activation = reader.integer("activationLagThreshold", DEFAULT_ACTIVATION_LAG_THRESHOLD)
    policy = values.get("offsetResetPolicy", "latest")
    offset_reset_policy: OffsetResetPolicy = "latest"
    if policy == "earliest":
        offset_reset_policy = "earliest"
    elif policy != "latest":
        problems.append(
            f'{where}.offsetResetPolicy must be "latest" or "earliest", got "{policy}"; KEDA '
            "accepts only these two (case-sensitive)"
        )
    # topicFromEnv names a variable of the scaled workload: here it only says a topic is set.
    topic = values.get("topic") or (
        f"${{{values['topicFromEnv']}}}" if "topicFromEnv" in values else ""
    )
    limitation = reader.partition_limitation()
    booleans = {key: reader.boolean(key) for key in _BOOLEAN_KEYS}
    trigger: KafkaTrigger | None = None
    try:
        # Unreadable values came back as defaults, so this adds only range and combination
        # problems (kafka_scaler.go Validate), never a second line for the same key.
        trigger = KafkaTrigger(
            lag_threshold=lag_threshold,
            activation_lag_threshold=activation,
            offset_reset_policy=offset_reset_policy,
            allow_idle_consumers=booleans["allowIdleConsumers"],
            exclude_persistent_lag=booleans["excludePersistentLag"],
            scale_to_zero_on_invalid_offset=booleans["scaleToZeroOnInvalidOffset"],
            limit_to_partitions_with_lag=booleans["limitToPartitionsWithLag"],
            ensure_even_distribution_of_partitions=booleans["ensureEvenDistributionOfPartitions"],
            # kafka_scaler.go Validate: without a topic, partitionLimitation is ignored.
            partition_limitation=limitation if topic else None,
            topic=topic,
            where=where,
        )
    except ConfigurationError as exc:
        problems.extend(str(exc).splitlines())
    if problems or trigger is None:
        raise ConfigurationError("\n".join(problems))
    return trigger


def _combination_problems(trigger: KafkaTrigger, where: str) -> list[str]:
    # kafka_scaler.go kafkaMetadata.Validate, in its order.
    problems: list[str] = []
    if trigger.lag_threshold <= 0:
        problems.append(
            f'{where}.lagThreshold must be > 0, got "{trigger.lag_threshold}"; set the lag one '
            f'replica should work off, e.g. "{DEFAULT_LAG_THRESHOLD}" (KEDA refuses it: '
            '"lagThreshold" must be positive number)'
        )
    if trigger.activation_lag_threshold < 0:
        problems.append(
            f"{where}.activationLagThreshold must be >= 0, got "
            f'"{trigger.activation_lag_threshold}"; use "0" to activate on any lag (KEDA '
            "refuses a negative one)"
        )
    if trigger.allow_idle_consumers and trigger.limit_to_partitions_with_lag:
        problems.append(
            f"{where}.allowIdleConsumers and {where}.limitToPartitionsWithLag cannot both be "
            '"true" (KEDA refuses the pair); keep one of them'
        )
    if trigger.limit_to_partitions_with_lag and not trigger.topic:
        problems.append(
            f"{where}.limitToPartitionsWithLag needs {where}.topic (KEDA refuses it without "
            "one); set the topic the consumer group reads"
        )
    if trigger.limit_to_partitions_with_lag and trigger.ensure_even_distribution_of_partitions:
        problems.append(
            f"{where}.limitToPartitionsWithLag and {where}.ensureEvenDistributionOfPartitions "
            'cannot both be "true" (KEDA refuses the pair); keep one of them'
        )
    if trigger.ensure_even_distribution_of_partitions and not trigger.topic:
        problems.append(
            f"{where}.ensureEvenDistributionOfPartitions needs {where}.topic (KEDA refuses it "
            "without one); set the topic the consumer group reads"
        )
    return problems


class _Reader:
    """Decodes one metadata value at a time, recording a problem instead of raising."""

    def __init__(self, values: Mapping[str, str], where: str, problems: list[str]) -> None:
        self._values = values
        self._where = where
        self._problems = problems

    def integer(self, key: str, default: int) -> int:
        text = self._values.get(key)
        if text is None:
            return default
        if _JSON_INTEGER.fullmatch(text) and _INT64[0] <= int(text) <= _INT64[1]:
            return int(text)
        self._fail(
            key,
            f'"{text}" is not a whole number; write digits only, e.g. "{default or 10}" (KEDA '
            "decodes it as a JSON integer: no '+', leading zero, decimal point or exponent)",
        )
        return default

    def boolean(self, key: str) -> bool:
        text = self._values.get(key)
        if text is None or text == "false":
            return False
        if text == "true":
            return True
        self._fail(
            key, f'"{text}" is not a boolean; write "true" or "false" (KEDA accepts only these)'
        )
        return False

    def partition_limitation(self) -> tuple[int, ...] | None:
        # kafka_scaler.go parsePartitionLimitation: "0,2,4-7", each id a 32-bit integer.
        text = self._values.get("partitionLimitation")
        if text is None:
            return None
        ids: list[int] = []
        for raw in text.split(","):
            part = raw.strip()
            bounds = [b.strip() for b in part.split("-")] if "-" in part else [part]
            if len(bounds) > 2 or not all(_is_int32(b) for b in bounds):
                self._fail(
                    "partitionLimitation",
                    f'"{text}" is not a list of partition ids (at "{part}"); write ids and '
                    'ranges such as "0,2,4-7"',
                )
                return None
            first, last = int(bounds[0]), int(bounds[-1])
            ids.extend(range(first, last + 1))
        return tuple(ids)

    def _fail(self, key: str, problem: str) -> None:
        self._problems.append(f"{self._where}.{key}: {problem}")


def _is_int32(text: str) -> bool:
    return bool(_GO_INT.fullmatch(text)) and _INT32[0] <= int(text) <= _INT32[1]
