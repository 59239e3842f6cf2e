"""The Prometheus exposition of a worker's metrics: metric families, a registry, two encoders.

A worker's series are plain numbers its event loop updates (:mod:`expediter.worker.observing`,
:mod:`expediter.worker.metering`); a scrape turns them into :class:`Family` objects and encodes
them. Prometheus' text format 0.0.4 is the default, and OpenMetrics 1.0 when the scraper's
Accept asks for it (Prometheus does). The output is what prometheus_client writes for the same
families (names, sorted labels, Go-style numbers, escaping), without the client library: its
import costs a worker about 2 MB, and the worker needs none of its locks or servers.

Used by :class:`~expediter.worker.observing.WorkerMetrics` and the ``/metrics`` endpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "OPENMETRICS",
    "TEXT",
    "Collector",
    "Family",
    "Registry",
    "Sample",
    "choose_encoding",
    "encode_openmetrics",
    "encode_text",
]

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

FamilyType = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(slots=True)
class Family:
    """One metric family: ``name`` without ``_total`` for a counter (as OpenMetrics has it)."""

    name: str
    help: str
    type: FamilyType
    labels: Sequence[str] = ()
    samples: list[Sample] = field(default_factory=list)

    def add(self, values: Sequence[str], value: float) -> None:
        """A counter's or a gauge's series with these label values."""
        suffix = "_total" if self.type == "counter" else ""
        self.samples.append(Sample(self.name + suffix, self._labels(values), value))

    def add_histogram(
        self, values: Sequence[str], buckets: Iterable[tuple[str, float]], total: float
    ) -> None:
        """A histogram's series: cumulative ``(le, count)`` buckets, the last one +Inf."""
        labels = self._labels(values)
        count = 0.0
        for le, count in buckets:
            self.samples.append(Sample(self.name + "_bucket", {**labels, "le": le}, count))
        self.samples.append(Sample(self.name + "_count", labels, count))
        self.samples.append(Sample(self.name + "_sum", labels, total))

    def _labels(self, values: Sequence[str]) -> dict[str, str]:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {list(self.labels)}, got {list(values)}")
        return dict(zip(self.labels, values, strict=True))


class Collector(Protocol):
    def collect(self) -> Iterable[Family]: ...


class Registry:
    """The collectors of one worker, collected in the order they were registered."""

    def __init__(self) -> None:
        self._collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        self._collectors.append(collector)

    def collect(self) -> Iterator[Family]:
        for collector in self._collectors:
            yield from collector.collect()

    def get_sample_value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The value of sample ``name`` with exactly ``labels``, or None (for tests and
        debugging, as prometheus_client's registry offers it)."""
        wanted = dict(labels or {})
        for family in self.collect():
            for sample in family.samples:
                if sample.name == name and dict(sample.labels) == wanted:
                    return sample.value
        return None


def choose_encoding(accept: str) -> tuple[Callable[[Registry], bytes], str]:
    """The encoder and content type for an ``Accept`` header: OpenMetrics only when asked."""
    for accepted in accept.split(","):
        if accepted.split(";")[0].strip() == "application/openmetrics-text":
            return encode_openmetrics, OPENMETRICS
    return encode_text, TEXT


def encode_text(registry: Registry) -> bytes:
    """Prometheus' text format 0.0.4."""
    out: list[str] = []
    for family in registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        out.append(f"# HELP {name} {_escape_help(family.help)}\n# TYPE {name} {family.type}\n")
        out.extend(_line(sample) for sample in family.samples)
    return "".join(out).encode()


def encode_openmetrics(registry: Registry) -> bytes:
    """OpenMetrics 1.0 text."""
    out: list[str] = []
    for family in registry.collect():
        help_ = _escape_help(family.help).replace('"', r"\"")
        out.append(f"# HELP {family.name} {help_}\n# TYPE {family.name} {family.type}\n")
        out.extend(_line(sample) for sample in family.samples)
    out.append("# EOF\n")
    return "".join(out).encode()


def _line(sample: Sample) -> str:
    if not sample.labels:
        return f"{sample.name} {_number(sample.value)}\n"
    labels = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(sample.labels.items()))
    return f"{sample.name}{{{labels}}} {_number(sample.value)}\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    """As Go formats a float64 (and prometheus_client writes it): 1.0, 1.234567e+06, +Inf."""
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text
