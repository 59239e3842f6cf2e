"""The routing engine without a broker: fallbacks by reason, the circuit breaker's states, the
sticky split, the routing record, and the settings that configure them.

The engines are the project's own: the rules engine answers, and the remote engine talks HTTP to
a stub chat-completions server on 127.0.0.1. The stub stands at the boundary of an external API
(vLLM, llama-server), scripted per request: a 500, a body that is not JSON, an answer that is
not the output model, a delay. The same faults against a real model server are in
tests/integration/test_routing_llm.py; the malformed body only here, as no real server sends one.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import BaseModel, Field

from expediter.errors import ConfigurationError, EngineError
from expediter.reasoning import (
    CircuitBreaker,
    EngineFault,
    OpenAICompatibleEngine,
    Route,
    RoutingEngine,
    RuleEngine,
    candidate_settings,
    engine_from_settings,
    split_side,
)
from expediter.settings import BreakerSettings, EngineSettings, RouteSettings, SplitSettings
from tests.binomial import binomial_bounds
from tests.llamaserving import free_port


class Plan(BaseModel):
    action: str
    hours: int = Field(ge=0, le=3)


def plan_rules(prompt: str, output_model: type[BaseModel]) -> BaseModel:
    return Plan(action="irrigate" if "dry" in prompt else "wait", hours=1)


def completion(content: str) -> dict[str, Any]:
    return {
        "choices": [
            {"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 21, "completion_tokens": 8},
    }


GOOD = (200, json.dumps(completion('{"action": "spray", "hours": 2}')))


@dataclass
class Stub:
    """Answers each POST with the next scripted (status, body), else ``default``."""

    url: str = ""
    script: list[tuple[int, str]] = field(default_factory=list)
    default: tuple[int, str] = GOOD
    delay: float = 0.0
    requests: int = 0
    bodies: list[Any] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.bodies.append(await request.json())
        if self.delay:
            await asyncio.sleep(self.delay)
        status, body = self.script.pop(0) if self.script else self.default
        return web.Response(status=status, text=body, content_type="application/json")


@pytest_asyncio.fixture
async def stub() -> AsyncIterator[Stub]:
    fake = Stub()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"  # type: ignore[union-attr]
    yield fake
    await runner.cleanup()


def remote(url: str, name: str = "hosted", timeout: float = 5.0) -> OpenAICompatibleEngine:
    settings = EngineSettings(kind="openai", base_url=url, model="big-model", timeout=timeout)
    return OpenAICompatibleEngine(settings, name=name)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def routed(*routes: Route, **options: Any) -> RoutingEngine:
    engine = RoutingEngine(routes, **options)
    await engine.start()
    return engine


async def test_the_primary_answers_and_the_record_says_so(stub: Stub) -> None:
    engine = await routed(Route("hosted", remote(stub.url)), Route("local", RuleEngine(plan_rules)))
    reasoned = await engine.reason("field 7 is dry", Plan, max_tokens=32)
    await engine.stop()
    assert reasoned.output == Plan(action="spray", hours=2)
    record = reasoned.routing
    assert record is not None
    assert (record.engine, record.model, record.fallback, record.failures) == (
        "hosted", "big-model", False, []
    )  # fmt: skip
    assert (record.usage.prompt_tokens, record.usage.completion_tokens) == (21, 8)
    hosted = engine.meters["hosted"]
    assert (hosted.answered, hosted.failed, hosted.completion_tokens) == (1, 0, 8)
    assert engine.meters["local"].calls == 0


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ((500, '{"error": "boom"}'), "server-error"),
        ((429, '{"error": "busy"}'), "server-error"),
        # A stub at the boundary: no real server answers 200 with a body that is not JSON.
        ((200, "<html>proxy error</html>"), "malformed-reply"),
        ((200, json.dumps({"id": "x"})), "malformed-reply"),
        ((200, json.dumps(completion('{"action": "spray", "hours": 9}'))), "invalid-output"),
        ((200, json.dumps(completion("I cannot help with that"))), "invalid-output"),
    ],
)
async def test_each_fault_falls_back_and_is_recorded(
    stub: Stub, reply: tuple[int, str], reason: str
) -> None:
    stub.script.append(reply)
    engine = await routed(Route("hosted", remote(stub.url)), Route("local", RuleEngine(plan_rules)))
    reasoned = await engine.reason("field 7 is dry", Plan)
    await engine.stop()
    assert reasoned.output == Plan(action="irrigate", hours=1)
    record = reasoned.routing
    assert record is not None
    assert (record.engine, record.fallback) == ("local", True)
    [failure] = record.failures
    assert (failure.engine, failure.model, failure.reason) == ("hosted", "big-model", reason)
    assert engine.meters["hosted"].errors == {reason: 1}
    assert engine.meters["hosted"].fallbacks == {reason: 1}
    assert engine.meters["local"].answered == 1


async def test_a_timeout_falls_back_after_the_routes_timeout(stub: Stub) -> None:
    stub.delay = 2.0
    engine = await routed(
        Route("hosted", remote(stub.url), timeout=0.2), Route("local", RuleEngine(plan_rules))
    )
    reasoned = await engine.reason("dry", Plan)
    await engine.stop()
    record = reasoned.routing
    assert record is not None
    assert record.engine == "local"
    [failure] = record.failures
    assert failure.reason == "timeout"
    assert 150 <= failure.latency_ms < 1500


async def test_an_unreachable_server_falls_back_as_transport() -> None:
    engine = await routed(
        Route("hosted", remote(f"http://127.0.0.1:{free_port()}/v1")),
        Route("local", RuleEngine(plan_rules)),
    )
    reasoned = await engine.reason("dry", Plan)
    await engine.stop()
    assert reasoned.routing is not None
    assert [f.reason for f in reasoned.routing.failures] == ["transport"]


async def test_a_refused_request_does_not_fall_back(stub: Stub) -> None:
    stub.script.append((401, '{"error": "bad key"}'))
    engine = await routed(Route("hosted", remote(stub.url)), Route("local", RuleEngine(plan_rules)))
    with pytest.raises(EngineFault, match="EXPEDITER_ENGINE_API_KEY") as caught:
        await engine.reason("dry", Plan)
    await engine.stop()
    assert caught.value.retriable is False
    routing = caught.value.routing
    assert routing is not None
    assert routing.engine is None
    assert [f.reason for f in routing.failures] == ["refused"]
    assert engine.meters["local"].calls == 0


async def test_when_every_engine_fails_the_error_names_each(stub: Stub) -> None:
    stub.default = (503, '{"error": "down"}')
    engine = await routed(
        Route("hosted", remote(stub.url)),
        Route("second", remote(stub.url, name="second")),
    )
    with pytest.raises(EngineFault, match=r"every engine failed: hosted: server-error") as caught:
        await engine.reason("dry", Plan)
    await engine.stop()
    assert caught.value.retriable is True
    assert caught.value.routing is not None
    assert [f.engine for f in caught.value.routing.failures] == ["hosted", "second"]


async def test_a_single_engine_keeps_its_own_error(stub: Stub) -> None:
    stub.script.append((500, "{}"))
    engine = RoutingEngine.single(remote(stub.url))
    await engine.start()
    with pytest.raises(EngineError, match="answered 500") as caught:
        await engine.reason("dry", Plan)
    await engine.stop()
    assert caught.value.retriable is True
    assert engine.breaker("hosted") is None


async def test_the_breaker_opens_skips_probes_and_closes(stub: Stub) -> None:
    clock = Clock()
    stub.default = (500, "{}")
    breaker = BreakerSettings(failures=2, window_seconds=10, open_seconds=5)
    engine = await routed(
        Route("hosted", remote(stub.url)), Route("local", RuleEngine(plan_rules)),
        breaker=breaker, clock=clock,
    )  # fmt: skip
    hosted = engine.breaker("hosted")
    assert hosted is not None
    for _ in range(2):
        await engine.reason("dry", Plan)
    assert (hosted.state, stub.requests) == ("open", 2)
    skipped = await engine.reason("dry", Plan)
    assert stub.requests == 2, "an open circuit still called the engine"
    assert skipped.routing is not None
    assert [(f.reason, f.latency_ms) for f in skipped.routing.failures] == [("circuit-open", 0)]
    assert engine.meters["hosted"].fallbacks == {"server-error": 2, "circuit-open": 1}

    clock.now += 5
    assert hosted.state == "half-open"
    await engine.reason("dry", Plan)  # the probe fails: open again
    assert (hosted.state, stub.requests, hosted.opened) == ("open", 3, 2)
    clock.now += 5
    stub.default = GOOD
    probed = await engine.reason("dry", Plan)
    assert probed.routing is not None
    assert probed.routing.engine == "hosted"
    assert hosted.state == "closed"
    await engine.stop()


def test_failures_outside_the_window_do_not_open_the_circuit() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(failures=3, window_seconds=10), clock=clock)
    for _ in range(2):
        breaker.failed(breaker.admit() or "call")
    clock.now += 11
    breaker.failed("call")
    assert breaker.state == "closed"
    breaker.failed("call")
    breaker.failed("call")
    assert breaker.state == "open"


def test_half_open_lets_only_the_configured_probes_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(failures=1, open_seconds=1, probes=2), clock=clock)
    breaker.failed("call")
    assert breaker.admit() is None
    assert breaker.admit(force=True) == "probe", "the last engine left is always tried"
    breaker.abandoned("probe")
    clock.now += 1
    assert [breaker.admit(), breaker.admit(), breaker.admit()] == ["probe", "probe", None]
    breaker.abandoned("probe")  # a cancelled probe frees its slot
    assert breaker.admit() == "probe"


async def test_the_last_engine_is_tried_even_with_its_circuit_open(stub: Stub) -> None:
    clock = Clock()
    stub.default = (500, "{}")
    engine = await routed(
        Route("local", RuleEngine(plan_rules)), Route("hosted", remote(stub.url)),
        breaker=BreakerSettings(failures=1, open_seconds=60), clock=clock,
    )  # fmt: skip
    local = engine.breaker("local")
    assert local is not None
    local.failed("call")
    assert local.state == "open"
    with pytest.raises(EngineFault):
        await engine.reason("dry", Plan)
    assert stub.requests == 1
    stub.default = GOOD
    answered = await engine.reason("dry", Plan)
    assert answered.routing is not None
    assert answered.routing.engine == "hosted"
    await engine.stop()


def test_the_split_is_sticky_monotone_and_near_its_share() -> None:
    ten = SplitSettings(route="candidate", share=0.1)
    twenty = SplitSettings(route="candidate", share=0.2)
    ids = [str(uuid.uuid4()) for _ in range(4000)]
    sides = [split_side(workflow, ten) for workflow in ids]
    assert sides == [split_side(workflow, ten) for workflow in ids], "not sticky"
    low, high = binomial_bounds(len(ids), 0.1, 1e-6)
    assert low <= sides.count("candidate") <= high
    # Raising the share only adds workflows: none of the 10 % leaves the candidate.
    for workflow, side in zip(ids, sides, strict=True):
        if side == "candidate":
            assert split_side(workflow, twenty) == "candidate"


async def test_a_candidate_workflow_tries_the_candidate_then_the_primary(stub: Stub) -> None:
    split = SplitSettings(route="candidate", share=0.5)
    workflows = [f"wf-{n}" for n in range(40)]
    on_candidate = next(w for w in workflows if split_side(w, split) == "candidate")
    on_primary = next(w for w in workflows if split_side(w, split) == "primary")
    stub.default = (500, "{}")
    engine = await routed(
        Route("primary", RuleEngine(plan_rules, name="primary")),
        Route("candidate", remote(stub.url, name="candidate")),
        split=split,
    )
    first = await engine.reason("dry", Plan, workflow_id=on_primary)
    second = await engine.reason("dry", Plan, workflow_id=on_candidate)
    await engine.stop()
    assert first.routing is not None
    assert second.routing is not None
    assert (first.routing.engine, first.routing.split, first.routing.fallback) == (
        "primary", "primary", False
    )  # fmt: skip
    assert (second.routing.engine, second.routing.split, second.routing.fallback) == (
        "primary", "candidate", True
    )  # fmt: skip
    assert [f.engine for f in second.routing.failures] == ["candidate"]
    assert stub.requests == 1, "the primary side called the candidate"


def test_routes_from_the_environment_build_a_routing_engine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "EXPEDITER_ENGINE_ROUTES",
        '[{"name": "hosted", "kind": "openai", "model": "big", "timeout": 7},'
        ' {"name": "local", "kind": "rules"}, {"name": "next", "kind": "openai", "model": "new"}]',
    )
    monkeypatch.setenv("EXPEDITER_ENGINE_SPLIT", '{"route": "next", "share": 0.1}')
    monkeypatch.setenv("EXPEDITER_ENGINE_BREAKER__FAILURES", "3")
    settings = EngineSettings()
    engine = engine_from_settings(settings, rules=plan_rules)
    assert isinstance(engine, RoutingEngine)
    assert [(r.name, r.engine.model, r.timeout) for r in engine.routes] == [
        ("hosted", "big", 7.0), ("local", "rulebook", 120.0), ("next", "new", 120.0),
    ]  # fmt: skip
    assert settings.breaker.failures == 3
    assert engine.split == SplitSettings(route="next", share=0.1)
    assert (engine.name, engine.model) == ("hosted", "big")


@pytest.mark.parametrize(
    ("routes", "split", "message"),
    [
        ([{"name": "a", "kind": "rules"}, {"name": "a", "kind": "llama"}], None, "more than once"),
        ([{"name": "a", "kind": "rules"}], {"route": "b", "share": 0.1}, "does not name"),
        ([{"name": "a", "kind": "rules"}], {"route": "a", "share": 0.1}, "is the primary"),
    ],
)
def test_inconsistent_routes_name_the_variable(
    routes: list[dict[str, Any]], split: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        EngineSettings(
            routes=[RouteSettings.model_validate(r) for r in routes],
            split=SplitSettings.model_validate(split) if split else None,
        )
    assert "EXPEDITER_ENGINE_" in str(caught.value)


def test_a_candidate_is_a_route_a_kind_or_a_json_route() -> None:
    settings = EngineSettings(
        routes=[RouteSettings(name="hosted", kind="openai", model="big")], model="default"
    )
    assert candidate_settings(settings, "hosted").routes == settings.routes
    [llama] = candidate_settings(settings, "llama").routes
    assert (llama.name, llama.kind) == ("llama", "llama")
    chosen = candidate_settings(settings, '{"kind": "openai", "model": "next", "timeout": 9}')
    engine = engine_from_settings(chosen, rules=None)
    assert isinstance(engine, RoutingEngine)
    assert [(r.name, r.engine.model, r.timeout) for r in engine.routes] == [
        ("candidate", "next", 9)
    ]
    assert engine.breaker("candidate") is None, "a lone engine has no breaker"
    with pytest.raises(ConfigurationError, match="neither a route"):
        candidate_settings(settings, "gpt-9")
    with pytest.raises(ConfigurationError, match="not a valid route"):
        candidate_settings(settings, '{"kind": "nope"}')


async def test_llama_cpp_pythons_server_format_is_json_object_with_the_grammar_schema(
    stub: Stub,
) -> None:
    settings = EngineSettings(kind="openai", base_url=stub.url, response_format="json_object")
    engine = OpenAICompatibleEngine(settings)
    await engine.start()
    await engine.reason("dry", Plan)
    await engine.stop()
    [body] = stub.bodies
    assert body["response_format"]["type"] == "json_object"
    assert body["response_format"]["schema"]["properties"]["hours"]["enum"] == [0, 1, 2, 3]


async def test_a_refused_response_format_is_named_not_taken_for_a_failing_server(
    stub: Stub,
) -> None:
    # What llama-cpp-python's server 0.3 answers to OpenAI's json_schema format: a 500.
    stub.default = (
        500,
        json.dumps({"error": {"message": "1 validation error: ('body', 'response_format', "
                              "'type'): Input should be 'text' or 'json_object'"}}),
    )  # fmt: skip
    engine = await routed(Route("hosted", remote(stub.url)), Route("local", RuleEngine(plan_rules)))
    with pytest.raises(EngineError, match="EXPEDITER_ENGINE_RESPONSE_FORMAT=json_object") as caught:
        await engine.reason("dry", Plan)
    await engine.stop()
    assert caught.value.retriable is False
    assert engine.meters["local"].calls == 0
