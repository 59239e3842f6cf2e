"""Routing against a real model server: Gemma 3 270M served by llama-cpp-python's own
OpenAI-compatible server (tests/llamaserving.py), with real faults.

- The primary server is killed mid-run: the fallback answers every task, none is lost, and each
  result records the fallback and why.
- The breaker opens on a server that is down, skips it, and closes once a probe answers after
  the server came back; /metrics shows it.
- A server made slow: a short route timeout against a real generation (the request's small
  max_tokens budget bounds the work the server does after the client gave up).
- A shadow comparison: tasks recorded with the rules engine, re-run with ``--engine`` on the
  model, and ``diff`` reports the per-field agreement the test computes from the topics.

Slow (the model runs on the CPU), so few and small: every answer is a two-field JSON object of
about 20 tokens. Needs the ``[llm]`` extra (``make test`` installs it): never skipped.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from expediter.dev import Broker
from expediter.errors import EngineError
from expediter.messaging import TopicNames
from expediter.reasoning import RoutingEngine, engine_from_settings
from expediter.settings import BreakerSettings, EngineSettings, RouteSettings
from tests.agents.triage import Assessment, rules
from tests.integration.test_replay import cli, last_json
from tests.integration.test_routing import (
    AGENT,
    TRIAGE,
    results_by_task,
    routed_worker,
    triage_task,
)
from tests.llamaserving import MODEL_ALIAS, LlamaServer
from tests.support import create_topics, produce, read

pytestmark = pytest.mark.slow

LOCAL = RouteSettings(name="local", kind="rules")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """One server for the module, started on first use; a test that stops it starts it again."""
    serving = LlamaServer(tmp_path_factory.mktemp("llama-server") / "server.log")
    serving.start()
    yield serving
    serving.stop()


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as reply:
        text = await reply.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def circuit(samples: dict[Any, float], engine: str) -> float:
    return samples[
        ("expediter_engine_circuit_state", (("capability", "triage"), ("engine", engine)))
    ]


async def test_the_primary_is_killed_mid_run_and_the_fallback_answers_every_task(
    kafka: Broker, server: LlamaServer
) -> None:
    server.start()
    settings = kafka.settings
    names = TopicNames(prefix=f"rk{uuid.uuid4().hex[:8]}.")
    await create_topics(settings, names, "triage")
    engine = engine_from_settings(
        EngineSettings(routes=[server.route("hosted", timeout=120), LOCAL]), rules=AGENT.rules
    )
    workflow = f"wf-{uuid.uuid4()}"
    tasks = [triage_task(workflow, f"s{n}") for n in range(5)]
    async with routed_worker(settings, names.prefix, engine) as worker:
        await produce(settings, names.tasks("triage"), tasks[:1])
        await results_by_task(settings, names, 1, timeout=240)
        await produce(settings, names.tasks("triage"), tasks[1:])
        async with asyncio.timeout(60):  # the second task is at the server: kill it there
            while worker.metrics.in_flight == 0:  # noqa: ASYNC110 -- a gauge, no event to wait on
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        server.kill()
        results = await results_by_task(settings, names, len(tasks), timeout=120)
        dead = await read(settings, names.dlq("triage"), until=lambda r: True, timeout=5)

    assert set(results) == {str(task.event_id) for task in tasks}, "a task was lost"
    assert dead == []
    calls = [results[str(task.event_id)]["reasoning"] for task in tasks]
    assert all(result["status"] == "succeeded" for result in results.values())
    assert [(c["engine"], c["model"], c["fallback"]) for [c] in calls[:1]] == [
        ("hosted", MODEL_ALIAS, False)
    ]
    for [call] in calls[1:]:
        assert (call["engine"], call["model"], call["fallback"]) == ("local", "rulebook", True)
        assert [(f["engine"], f["reason"]) for f in call["failures"]] == [("hosted", "transport")]


async def test_the_breaker_opens_on_a_down_server_and_closes_when_it_is_back(
    kafka: Broker, server: LlamaServer
) -> None:
    server.stop()  # down from the start; it comes back on the same port
    settings = kafka.settings
    names = TopicNames(prefix=f"rb{uuid.uuid4().hex[:8]}.")
    await create_topics(settings, names, "triage")
    breaker = BreakerSettings(failures=2, window_seconds=60, open_seconds=3)
    engine = engine_from_settings(
        EngineSettings(routes=[server.route("hosted", timeout=120), LOCAL], breaker=breaker),
        rules=AGENT.rules,
    )
    workflow = f"wf-{uuid.uuid4()}"
    tasks = [triage_task(workflow, f"s{n}") for n in range(6)]
    async with routed_worker(settings, names.prefix, engine) as worker:
        await produce(settings, names.tasks("triage"), tasks[:4])
        results = await results_by_task(settings, names, 4)
        opened = await scrape(worker.server.url)
        assert circuit(opened, "hosted") == 1, "the circuit is not open"
        opened_at = time.monotonic()
        server.start()
        await asyncio.sleep(max(0.0, breaker.open_seconds - (time.monotonic() - opened_at)))
        await produce(settings, names.tasks("triage"), tasks[4:5])  # the probe
        results = await results_by_task(settings, names, 5, timeout=240)
        await produce(settings, names.tasks("triage"), tasks[5:])
        results = await results_by_task(settings, names, 6, timeout=240)
        closed = await scrape(worker.server.url)

    reasons = [
        [f["reason"] for f in results[str(task.event_id)]["reasoning"][0]["failures"]]
        for task in tasks
    ]
    # Two calls fail (transport) and open the circuit; two are skipped without a call; after
    # open_seconds the probe reaches the server, answers, and closes the circuit.
    assert reasons == [["transport"], ["transport"], ["circuit-open"], ["circuit-open"], [], []]
    engines = [results[str(task.event_id)]["reasoning"][0]["engine"] for task in tasks]
    assert engines == ["local"] * 4 + ["hosted"] * 2
    assert circuit(closed, "hosted") == 0
    key = (("capability", "triage"), ("engine", "hosted"))
    assert closed[("expediter_engine_circuit_opened_total", key)] == 1
    assert closed[("expediter_engine_fallbacks_total", (*key, ("reason", "circuit-open")))] == 2
    assert closed[("expediter_engine_errors_total", (*key, ("reason", "transport")))] == 2


async def test_a_slow_server_times_out_to_the_fallback_and_a_wrong_format_is_named(
    server: LlamaServer,
) -> None:
    server.start()
    slow = engine_from_settings(
        EngineSettings(routes=[server.route("hosted", timeout=0.1), LOCAL]), rules=rules
    )
    assert isinstance(slow, RoutingEngine)
    await slow.start()
    try:
        # A 24-token budget: the server finishes that little after the client has gone.
        reasoned = await slow.reason("Field 7 is dry. Urgency?", Assessment, max_tokens=24)
    finally:
        await slow.stop()
    assert reasoned.routing is not None
    assert reasoned.routing.engine == "local"
    [failure] = reasoned.routing.failures
    assert (failure.engine, failure.reason) == ("hosted", "timeout")

    # OpenAI's json_schema format, which llama-cpp-python's server refuses: no fallback can
    # cure a request error, and the message names the setting that does.
    wrong = engine_from_settings(
        EngineSettings(routes=[server.route("hosted", response_format="json_schema"), LOCAL]),
        rules=rules,
    )
    await wrong.start()
    try:
        with pytest.raises(EngineError, match="EXPEDITER_ENGINE_RESPONSE_FORMAT=json_object"):
            await wrong.reason("Field 7 is dry. Urgency?", Assessment, max_tokens=24)
    finally:
        await wrong.stop()


async def test_a_shadow_run_on_another_engine_gives_the_agreement_figures(
    kafka: Broker, server: LlamaServer
) -> None:
    server.start()
    settings = kafka.settings
    names = TopicNames(prefix=f"rj{uuid.uuid4().hex[:8]}.")
    await create_topics(settings, names, "triage")
    notes = ["dry for weeks", "rained all night", "dry and hot"]
    tasks = [triage_task(f"wf-{uuid.uuid4()}", f"s{n}", note) for n, note in enumerate(notes)]
    rules = engine_from_settings(EngineSettings(kind="rules"), rules=AGENT.rules)
    async with routed_worker(settings, names.prefix, rules):
        await produce(settings, names.tasks("triage"), tasks)
        originals = await results_by_task(settings, names, len(tasks))

    shadow = f"{names.prefix}shadow."
    candidate = json.dumps({**server.route("next").model_dump(mode="json"), "timeout": 240})
    rerun = cli(
        kafka, "replay", names.tasks("triage"), "--rerun", "--into", shadow,
        "--run", str(TRIAGE), "--engine", candidate, "--json", timeout=600,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    report = last_json(rerun)
    assert (report["published"], report["succeeded"]) == (3, 3)
    assert report["engine"] == candidate
    shadows = await results_by_task(settings, TopicNames(shadow), len(tasks))

    diff = cli(kafka, "diff", shadow, "--json", "--examples", "5")
    assert diff.returncode == 0, diff.stderr
    document = last_json(diff)
    assert document["compared"] == 3
    assert document["engines"] == {
        "original": {"rules/rulebook": 3}, "shadow": {f"next/{MODEL_ALIAS}": 3}
    }  # fmt: skip
    figures = {entry["field"]: entry for entry in document["agreement"]}
    assert list(figures) == ["status", "output.field_id", "output.hours", "output.urgency"]
    for path, entry in figures.items():
        key = path.removeprefix("output.")
        pairs = [
            (
                originals[t]["status" if key == "status" else "output"],
                shadows[t]["status" if key == "status" else "output"],
            )
            for t in originals
        ]
        same = [old == new if key == "status" else old[key] == new[key] for old, new in pairs]
        assert (entry["compared"], entry["agreed"]) == (3, sum(same)), path
        assert len(entry["examples"]) == 3 - sum(same)
    assert figures["status"]["agreed"] == 3
    assert figures["output.field_id"]["agreed"] == 3
    text = cli(kafka, "diff", shadow)
    assert text.returncode == 0, text.stderr
    assert "next/gemma3-270m" in text.stdout
