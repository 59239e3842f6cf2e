"""The worker's observability: /metrics, /healthz, /readyz over real HTTP, and the log formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from expediter.errors import ConfigurationError, ExpediterError
from expediter.settings import WorkerSettings
from expediter.worker.logs import configure_logging
from expediter.worker.observing import HealthState, ObservabilityServer, WorkerMetrics

CAPABILITY = "soil-analysis"


@pytest.fixture
def settings() -> WorkerSettings:
    return WorkerSettings(http_host="127.0.0.1", http_port=0, ready_poll_seconds=0.2)


@pytest.fixture
def metrics(settings: WorkerSettings) -> WorkerMetrics:
    return WorkerMetrics(CAPABILITY, HealthState(settings))


@pytest_asyncio.fixture
async def server(
    metrics: WorkerMetrics, settings: WorkerSettings
) -> AsyncIterator[ObservabilityServer]:
    async with ObservabilityServer(metrics, settings) as s:
        yield s


async def get(server: ObservabilityServer, path: str) -> tuple[int, str, str]:
    """(status, content type header, body) of GET ``path``."""
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as response:
        return response.status, response.headers["Content-Type"], await response.text()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name`` with exactly ``labels``, or None if absent."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


async def test_healthz_answers_ok(server: ObservabilityServer) -> None:
    assert server.port > 0
    status, _, body = await get(server, "/healthz")
    assert (status, body) == (200, "ok")


async def test_readyz_follows_warm_up_polls_and_draining(
    server: ObservabilityServer, metrics: WorkerMetrics
) -> None:
    status, content_type, body = await get(server, "/readyz")
    assert status == 503
    assert content_type.startswith("application/json")
    assert json.loads(body) == {"ready": False, "reason": "warming up", "last_poll_age_s": None}

    metrics.health.mark_warm()
    status, _, body = await get(server, "/readyz")
    assert status == 503
    assert "no poll" in json.loads(body)["reason"]

    metrics.polled()
    status, _, body = await get(server, "/readyz")
    reply = json.loads(body)
    assert status == 200
    assert reply["ready"] is True
    assert 0 <= reply["last_poll_age_s"] < 0.2

    await asyncio.sleep(0.3)  # past ready_poll_seconds = 0.2 with no poll: a stuck consumer
    status, _, body = await get(server, "/readyz")
    reply = json.loads(body)
    assert status == 503
    assert reply["ready"] is False
    assert reply["reason"].startswith("no poll for")
    assert reply["last_poll_age_s"] >= 0.2

    metrics.polled()
    assert (await get(server, "/readyz"))[0] == 200

    metrics.health.mark_draining()
    status, _, body = await get(server, "/readyz")
    assert status == 503
    assert json.loads(body)["reason"] == "draining"
    assert (await get(server, "/healthz"))[0] == 200  # draining is still alive


async def test_metrics_carry_labels_and_values(
    server: ObservabilityServer, metrics: WorkerMetrics
) -> None:
    status, content_type, text = await get(server, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    # Series exist from the start, at zero.
    cap = {"capability": CAPABILITY}
    assert sample(text, "expediter_tasks_processed_total", **cap, outcome="succeeded") == 0
    assert sample(text, "expediter_worker_ready", **cap) == 0

    metrics.polled()
    metrics.polled()
    metrics.health.mark_warm()
    metrics.task_started()
    metrics.task_started()
    metrics.task_started()
    metrics.task_finished("succeeded", 1.5)
    metrics.task_finished("retried", 0.5, reason="timeout")
    metrics.tokens(120, 30)
    metrics.tokens(10, 5)
    metrics.dead_lettered("undecodable")
    metrics.set_lag("tasks.soil-analysis", 3, 42)
    metrics.set_lag("tasks.soil-analysis", 4, 7)
    metrics.forget_partition("tasks.soil-analysis", 4)
    metrics.forget_partition("tasks.soil-analysis", 9)  # never set: no error

    _, _, text = await get(server, "/metrics")
    assert sample(text, "expediter_tasks_processed_total", **cap, outcome="succeeded") == 1
    assert sample(text, "expediter_tasks_processed_total", **cap, outcome="retried") == 1
    assert sample(text, "expediter_tasks_processed_total", **cap, outcome="failed") == 0
    assert sample(text, "expediter_tasks_failed_total", **cap, reason="timeout") == 1
    assert sample(text, "expediter_task_seconds_count", **cap) == 2
    assert sample(text, "expediter_task_seconds_sum", **cap) == 2.0
    assert sample(text, "expediter_task_seconds_bucket", **cap, le="1.0") == 1
    assert sample(text, "expediter_task_seconds_bucket", **cap, le="600.0") == 2
    assert sample(text, "expediter_tasks_in_flight", **cap) == 1
    assert sample(text, "expediter_tokens_total", **cap, kind="prompt") == 130
    assert sample(text, "expediter_tokens_total", **cap, kind="completion") == 35
    assert sample(text, "expediter_dlq_records_total", **cap, reason="undecodable") == 1
    assert sample(text, "expediter_polls_total", **cap) == 2
    lag = {"topic": "tasks.soil-analysis"}
    assert sample(text, "expediter_consumer_lag", **cap, **lag, partition="3") == 42
    assert sample(text, "expediter_consumer_lag", **cap, **lag, partition="4") is None
    assert sample(text, "expediter_worker_ready", **cap) == 1
    assert metrics.last_poll is not None


async def test_metrics_speak_openmetrics_when_asked(server: ObservabilityServer) -> None:
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + "/metrics", headers=headers) as response,
    ):
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).endswith("# EOF\n")


def test_workers_in_one_process_have_separate_registries(settings: WorkerSettings) -> None:
    first = WorkerMetrics(CAPABILITY, HealthState(settings))
    second = WorkerMetrics(CAPABILITY, HealthState(settings))  # the global registry would refuse
    first.polled()
    assert first.registry.get_sample_value("expediter_polls_total", {"capability": CAPABILITY}) == 1
    assert (
        second.registry.get_sample_value("expediter_polls_total", {"capability": CAPABILITY}) == 0
    )


def test_readiness_reasons_with_a_fake_clock(settings: WorkerSettings) -> None:
    now = [100.0]
    health = HealthState(settings, clock=lambda: now[0])
    assert health.is_alive()
    assert health.readiness().reason == "warming up"
    health.polled()
    health.mark_warm()
    assert health.is_ready()
    assert health.is_ready(now=100.15)
    assert not health.is_ready(now=100.3)
    now[0] = 101.0
    assert health.readiness().reason == "no poll for 1.0s (limit 0.2s)"
    assert health.readiness().last_poll_age_s == pytest.approx(1.0)


async def test_port_in_use_is_a_configuration_error(
    server: ObservabilityServer, metrics: WorkerMetrics
) -> None:
    taken = WorkerSettings(http_host="127.0.0.1", http_port=server.port)
    with pytest.raises(ConfigurationError, match="EXPEDITER_HTTP_PORT"):
        await ObservabilityServer(metrics, taken).start()
    assert (await get(server, "/healthz"))[0] == 200  # the first one is unharmed


async def test_start_and_stop_are_idempotent(
    metrics: WorkerMetrics, settings: WorkerSettings
) -> None:
    server = ObservabilityServer(metrics, settings)
    await server.stop()  # never started: fine
    server = ObservabilityServer(metrics, settings)
    await server.start()
    port = server.port
    await server.start()
    assert server.port == port
    assert (await get(server, "/healthz"))[0] == 200
    await server.stop()
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(server, "/healthz")
    with pytest.raises(ExpediterError, match="stopped"):
        await server.start()


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """What the root logger writes through configure_logging's handler, for this test only."""
    root = logging.getLogger()
    level = root.level
    buffer = io.StringIO()
    yield buffer
    for handler in [h for h in root.handlers if h.get_name() == "expediter"]:
        root.removeHandler(handler)
    root.setLevel(level)


def _redirect(buffer: io.StringIO) -> None:
    (handler,) = [h for h in logging.getLogger().handlers if h.get_name() == "expediter"]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)


def test_json_logs_carry_extra_fields(log_output: io.StringIO) -> None:
    configure_logging(json_logs=False)
    configure_logging(json_logs=True, level="debug")  # replaces, never doubles
    _redirect(log_output)
    log = logging.getLogger("expediter.worker.test")
    extra = {"capability": CAPABILITY, "workflow_id": "wf-42", "task_id": "t-1", "trace_id": "ab"}
    log.debug("task %s done", "t-1", extra=extra)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("task failed", extra={"task_id": "t-2", "attempt": 2})

    first, second = (json.loads(line) for line in log_output.getvalue().splitlines())
    assert first["level"] == "DEBUG"
    assert first["logger"] == "expediter.worker.test"
    assert first["message"] == "task t-1 done"
    assert first["timestamp"].endswith("Z")
    assert {k: first[k] for k in extra} == extra
    assert "exc_info" not in first
    assert second["level"] == "ERROR"
    assert second["attempt"] == 2
    assert "ValueError: boom" in second["exc_info"]


def test_plain_logs_are_readable(log_output: io.StringIO) -> None:
    configure_logging(json_logs=True)
    configure_logging(json_logs=False)
    _redirect(log_output)
    logging.getLogger("expediter.worker.test").warning("slow", extra={"task_id": "t-3"})
    logging.getLogger("expediter.worker.test").debug("below the default INFO: dropped")
    lines = log_output.getvalue().splitlines()
    assert len(lines) == 1
    assert "WARNING" in lines[0]
    assert lines[0].endswith("expediter.worker.test: slow task_id=t-3")


def test_unknown_log_level_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="log level"):
        configure_logging(json_logs=True, level="chatty")
