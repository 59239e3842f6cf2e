"""Where a routed call is recorded, without a broker: the result event (and its record bytes),
the failure result, /metrics per engine, trace's one-line summary, and diff's agreement
figures."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

from expediter.authoring.agents import TaskContext
from expediter.errors import EngineError
from expediter.events import (
    EngineFailure,
    Producer,
    ReasoningCall,
    ResultEvent,
    ResultTemplate,
    TaskEvent,
    TokenUsage,
    TraceParent,
    decode,
    encode,
    to_record,
)
from expediter.reasoning import Route, RoutingEngine, RuleEngine
from expediter.replaying.agreeing import Pair, agreement, engines_answering
from expediter.replaying.rendering import summary
from expediter.settings import BreakerSettings, WorkerSettings
from expediter.worker.observing import HealthState, ObservabilityServer, WorkerMetrics

PRODUCER = Producer(name="tests", version="0")


class Verdict(BaseModel):
    label: str


def good(prompt: str, output_model: type[BaseModel]) -> BaseModel:
    return Verdict(label="ok")


def wrong(prompt: str, output_model: type[BaseModel]) -> BaseModel:
    return TokenUsage()  # not the output model: invalid-output


class NoTools:
    async def call(self, name: str, arguments: Any) -> dict[str, Any]:
        raise AssertionError("no tools here")


def context(engine: RoutingEngine) -> TaskContext:
    return TaskContext(
        task_id=uuid.uuid4(), workflow_id="wf-1", step_id="s", attempt=1, engine=engine,
        tools=NoTools(), log=logging.getLogger("test"),
    )  # fmt: skip


async def test_the_task_context_keeps_each_calls_record() -> None:
    engine = RoutingEngine(
        [Route("bad", RuleEngine(wrong, name="bad")), Route("good", RuleEngine(good, name="good"))]
    )
    ctx = context(engine)
    await ctx.reason("one", Verdict)
    await ctx.reason("two", Verdict)
    assert [(call.engine, call.fallback) for call in ctx.reasoning] == [
        ("good", True), ("good", True)
    ]  # fmt: skip
    assert [f.reason for f in ctx.reasoning[0].failures] == ["invalid-output"]
    assert ctx.usage.prompt_tokens == 2


async def test_a_call_no_engine_answered_is_kept_for_the_failure_result() -> None:
    ctx = context(RoutingEngine([Route("bad", RuleEngine(wrong, name="bad"))]))
    with pytest.raises(EngineError):
        await ctx.reason("one", Verdict)
    [call] = ctx.reasoning
    assert call.engine is None
    assert [f.reason for f in call.failures] == ["invalid-output"]


def routed_call() -> ReasoningCall:
    return ReasoningCall(
        engine="local", model="gemma-3-270m-q4_k_m.gguf", split="candidate", fallback=True,
        failures=[EngineFailure(engine="hosted", model="big", reason="timeout", latency_ms=2000)],
        latency_ms=2500, usage=TokenUsage(prompt_tokens=30, completion_tokens=12),
    )  # fmt: skip


def test_a_result_with_reasoning_records_encodes_as_the_model_does() -> None:
    task: TaskEvent[Any] = TaskEvent(
        producer=PRODUCER, workflow_id="wf-1", step_id="s", capability="triage", input={}
    )
    trace = TraceParent.new()
    event_id, now = uuid.uuid4(), ResultEvent.model_fields["created_at"].default_factory()  # type: ignore[misc]
    usage = TokenUsage(prompt_tokens=30, completion_tokens=12)
    record = ResultTemplate(PRODUCER).record(
        task, Verdict(label="ok"), attempt=1, usage=usage, duration_ms=2600, trace=trace,
        event_id=event_id, created_at=now, reasoning=[routed_call()],
    )  # fmt: skip
    expected = ResultEvent(
        producer=PRODUCER, event_id=event_id, created_at=now, workflow_id="wf-1", step_id="s",
        capability="triage", task_id=task.event_id, status="succeeded",
        output={"label": "ok"}, usage=usage, duration_ms=2600, reasoning=[routed_call()],
    )  # fmt: skip
    assert record.value == encode(expected)
    assert record.headers == to_record(expected, trace=trace).headers
    decoded = decode(record.value, ResultEvent)
    assert decoded.reasoning == [routed_call()]
    # Without records the template's bytes still say null, as the model writes it.
    plain = ResultTemplate(PRODUCER).record(
        task, Verdict(label="ok"), attempt=1, usage=usage, duration_ms=1, trace=trace
    )
    assert json.loads(plain.value)["reasoning"] is None


def test_trace_summarises_who_answered_and_why() -> None:
    document = json.loads(
        encode(
            ResultEvent(
                producer=PRODUCER, workflow_id="wf-1", step_id="s", capability="triage",
                task_id=uuid.uuid4(), status="succeeded", output={"label": "ok"},
                reasoning=[routed_call()],
            )
        )
    )  # fmt: skip
    line = summary("result", document)
    assert "via local/gemma-3-270m-q4_k_m.gguf (fallback from hosted: timeout)" in line


async def test_metrics_count_calls_errors_fallbacks_latency_tokens_per_engine() -> None:
    engine = RoutingEngine(
        [Route("bad", RuleEngine(wrong, name="bad")), Route("good", RuleEngine(good, name="good"))],
        breaker=BreakerSettings(),
    )
    for _ in range(3):
        await engine.reason("a prompt", Verdict)
    settings = WorkerSettings(http_port=0)
    metrics = WorkerMetrics("triage", HealthState(settings))
    metrics.watch_engines(engine.meters.values())
    async with (
        ObservabilityServer(metrics, settings) as server,
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/metrics") as reply,
    ):
        text = await reply.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted({"capability": "triage", **labels}.items())))]

    assert value("expediter_engine_calls_total", engine="bad", model="rulebook",
                 outcome="failed") == 3  # fmt: skip
    assert value("expediter_engine_calls_total", engine="good", model="rulebook",
                 outcome="answered") == 3  # fmt: skip
    assert value("expediter_engine_errors_total", engine="bad", reason="invalid-output") == 3
    assert value("expediter_engine_fallbacks_total", engine="bad", reason="invalid-output") == 3
    assert value("expediter_engine_seconds_count", engine="good") == 3
    assert value("expediter_engine_tokens_total", engine="good", kind="prompt") == 6
    assert value("expediter_engine_circuit_state", engine="bad") == 0


def result(status: str, output: dict[str, Any] | None, engine: str = "hosted") -> dict[str, Any]:
    document: dict[str, Any] = {
        "status": status, "output": output,
        "reasoning": [{"engine": engine, "model": "m"}],
    }  # fmt: skip
    if status == "failed":
        document["error"] = {"code": "engine"}
    return document


def test_agreement_per_field_with_examples() -> None:
    pairs = [
        Pair("t1", "w1", result("succeeded", {"u": "high", "h": 2}),
             result("succeeded", {"u": "high", "h": 1}, "next")),
        Pair("t2", "w2", result("succeeded", {"u": "low", "h": 0}),
             result("succeeded", {"u": "low", "h": 0}, "next")),
        Pair("t3", "w3", result("succeeded", {"u": "low", "h": 0}), result("failed", None, "next")),
    ]  # fmt: skip
    fields = {tally.path: tally for tally in agreement(pairs, examples=1)}
    assert list(fields) == ["status", "output.h", "output.u", "error.code"]
    assert (fields["status"].agreed, fields["status"].compared) == (2, 3)
    assert (fields["output.u"].agreed, fields["output.u"].compared) == (2, 3)
    assert (fields["output.h"].agreed, round(fields["output.h"].rate, 3)) == (1, 0.333)
    [example] = fields["output.h"].examples
    assert (example.task_id, example.original, example.shadow) == ("t1", 2, 1)
    assert engines_answering(pair.shadow for pair in pairs) == {"next/m": 3}
