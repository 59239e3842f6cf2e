"""The worker's /metrics bodies are what prometheus_client writes for the same series.

The worker encodes its metrics itself (expediter/worker/exposing.py: the client library costs a
worker ~2 MB); scrapers, dashboards and alerts rely on the format being Prometheus' own, so each
encoder is compared with prometheus_client's on the same families, including escaping and Go's
number format.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from expediter.worker.exposing import (
    OPENMETRICS,
    TEXT,
    Family,
    Registry,
    choose_encoding,
    encode_openmetrics,
    encode_text,
)

HELP = 'Counts "things"\\ with a\nnewline.'
LABELS = ["capability", "reason"]
VALUES = [["soil", "plain"], ["soil", 'quote " back \\ new\nline'], ["soil", "ünï"]]
NUMBERS = [0, 1.5, 1234567, 1e-05, 12345678901234567890.0, float("inf")]
BUCKETS = [("0.1", 1.0), ("1.0", 3.0), ("+Inf", 4.0)]


class _Theirs:
    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily("x_things", HELP, labels=LABELS)
        gauge = GaugeMetricFamily("x_level", "A level.", labels=LABELS)
        for values, number in zip(VALUES, NUMBERS, strict=False):
            counter.add_metric(values, number)
            gauge.add_metric(values, number)
        for number in NUMBERS[3:]:
            gauge.add_metric(["other", str(number)], number)
        histogram = HistogramMetricFamily("x_seconds", "Seconds.", labels=["capability"])
        histogram.add_metric(["soil"], BUCKETS, 2.5)
        yield from (counter, gauge, histogram)


class _Ours:
    def collect(self) -> Iterator[Family]:
        counter = Family("x_things", HELP, "counter", LABELS)
        gauge = Family("x_level", "A level.", "gauge", LABELS)
        for values, number in zip(VALUES, NUMBERS, strict=False):
            counter.add(values, number)
            gauge.add(values, number)
        for number in NUMBERS[3:]:
            gauge.add(["other", str(number)], number)
        histogram = Family("x_seconds", "Seconds.", "histogram", ["capability"])
        histogram.add_histogram(["soil"], BUCKETS, 2.5)
        yield from (counter, gauge, histogram)


def registries() -> tuple[Registry, CollectorRegistry]:
    ours = Registry()
    ours.register(_Ours())
    theirs = CollectorRegistry()
    theirs.register(_Theirs())
    return ours, theirs


def test_the_text_format_is_prometheus_clients() -> None:
    ours, theirs = registries()
    assert encode_text(ours).decode() == generate_latest(theirs).decode()


def test_openmetrics_is_prometheus_clients() -> None:
    ours, theirs = registries()
    assert encode_openmetrics(ours).decode() == generate_openmetrics(theirs).decode()


def test_openmetrics_only_when_the_scraper_asks() -> None:
    prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4"
    assert choose_encoding(prometheus) == (encode_openmetrics, OPENMETRICS)
    assert choose_encoding("") == (encode_text, TEXT)
    assert choose_encoding("*/*") == (encode_text, TEXT)


def test_a_sample_is_found_by_name_and_labels() -> None:
    ours, _ = registries()
    assert ours.get_sample_value("x_things_total", {"capability": "soil", "reason": "plain"}) == 0
    assert ours.get_sample_value("x_seconds_count", {"capability": "soil"}) == 4
    assert ours.get_sample_value("x_things_total", {"capability": "soil"}) is None
