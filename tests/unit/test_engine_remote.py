"""The OpenAI-compatible engine against a fake chat completions server on 127.0.0.1.

The server is a fake at the boundary of an external HTTP API that this project does not own
(vLLM, llama-server, any OpenAI-compatible endpoint): it checks what the engine sends (bearer
token, messages, the json_schema response_format) and answers with canned completions, errors or
silence, so that each failure maps to the right EngineError without a model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import BaseModel, Field, SecretStr

from expediter.errors import EngineError
from expediter.reasoning import OpenAICompatibleEngine
from expediter.settings import EngineSettings

API_KEY = "sk-test-not-a-secret"


class Decision(BaseModel):
    action: str
    priority: int = Field(ge=1, le=5)


@dataclass
class FakeServer:
    """Answers each POST with the next canned (status, body), after ``delay`` seconds."""

    url: str = ""
    replies: list[tuple[int, Any]] = field(default_factory=list)
    requests: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    delay: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.json()))
        if self.delay:
            await asyncio.sleep(self.delay)
        status, body = self.replies.pop(0)
        text = body if isinstance(body, str) else json.dumps(body)
        return web.Response(status=status, text=text, content_type="application/json")


def completion(content: str, *, prompt_tokens: int = 31, completion_tokens: int = 9) -> Any:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


@pytest_asyncio.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}/v1"
    yield fake
    await runner.cleanup()


def engine_for(url: str, *, timeout: float = 5.0) -> OpenAICompatibleEngine:
    return OpenAICompatibleEngine(
        EngineSettings(
            kind="openai",
            base_url=url,
            api_key=SecretStr(API_KEY),
            model="gemma-test",
            timeout=timeout,
            temperature=0.0,
        )
    )


async def test_a_completion_is_validated_and_its_usage_reported(
    server: FakeServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.replies.append((200, completion('{"action": "irrigate", "priority": 2}')))
    engine = engine_for(server.url)
    await engine.start()
    await engine.start()  # idempotent: keeps the first session
    with caplog.at_level(logging.DEBUG):
        reasoned = await engine.reason(
            "Field 7 is dry", Decision, system="You plan farm work.", max_tokens=64
        )
    await engine.stop()
    await engine.stop()

    assert reasoned.output == Decision(action="irrigate", priority=2)
    assert reasoned.usage.prompt_tokens == 31
    assert reasoned.usage.completion_tokens == 9

    [(headers, body)] = server.requests
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == "gemma-test"
    assert body["messages"] == [
        {"role": "system", "content": "You plan farm work."},
        {"role": "user", "content": "Field 7 is dry"},
    ]
    assert body["max_tokens"] == 64
    assert body["temperature"] == 0.0
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "Decision",
            "schema": Decision.model_json_schema(),
            "strict": True,
        },
    }
    assert API_KEY not in caplog.text


async def test_without_a_system_prompt_only_the_user_message_is_sent(server: FakeServer) -> None:
    server.replies.append((200, completion('{"action": "wait", "priority": 5}')))
    engine = engine_for(server.url)
    await engine.start()
    try:
        await engine.reason("Anything to do?", Decision)
    finally:
        await engine.stop()
    [(_, body)] = server.requests
    assert body["messages"] == [{"role": "user", "content": "Anything to do?"}]
    assert body["max_tokens"] == 256


async def test_raw_newlines_inside_strings_are_tolerated(server: FakeServer) -> None:
    # Grammar-constrained servers (llama-server) let a raw newline into a JSON string.
    server.replies.append((200, completion('{"action": "irrigate\nthen check", "priority": 1}')))
    engine = engine_for(server.url)
    await engine.start()
    try:
        reasoned = await engine.reason("Field 7 is dry", Decision)
    finally:
        await engine.stop()
    assert reasoned.output.action == "irrigate\nthen check"


@pytest.mark.parametrize(
    "content",
    ["I think you should irrigate.", '{"action": "irrigate", "priority": 9}'],
    ids=["not-json", "out-of-bounds"],
)
async def test_invalid_output_is_a_permanent_error(server: FakeServer, content: str) -> None:
    server.replies.append((200, completion(content)))
    engine = engine_for(server.url)
    await engine.start()
    try:
        with pytest.raises(EngineError, match="not a valid Decision") as caught:
            await engine.reason("Field 7 is dry", Decision)
    finally:
        await engine.stop()
    assert caught.value.retriable is False
    assert server.url in str(caught.value)


@pytest.mark.parametrize("status", [503, 429])
async def test_overload_is_retriable(server: FakeServer, status: int) -> None:
    server.replies.append((status, {"error": {"message": "busy"}}))
    engine = engine_for(server.url)
    await engine.start()
    try:
        with pytest.raises(EngineError, match=str(status)) as caught:
            await engine.reason("x", Decision)
    finally:
        await engine.stop()
    assert caught.value.retriable is True


async def test_a_refused_key_is_permanent_and_names_the_variable(server: FakeServer) -> None:
    server.replies.append((401, {"error": {"message": "invalid api key"}}))
    engine = engine_for(server.url)
    await engine.start()
    try:
        with pytest.raises(EngineError, match="EXPEDITER_ENGINE_API_KEY") as caught:
            await engine.reason("x", Decision)
    finally:
        await engine.stop()
    assert caught.value.retriable is False
    assert API_KEY not in str(caught.value)


async def test_an_unreachable_server_is_retriable_and_names_the_base_url() -> None:
    # A port that was free a moment ago: nothing listens there.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    engine = engine_for(url)
    await engine.start()
    try:
        with pytest.raises(EngineError, match="EXPEDITER_ENGINE_BASE_URL") as caught:
            await engine.reason("x", Decision)
    finally:
        await engine.stop()
    assert caught.value.retriable is True
    assert url in str(caught.value)


async def test_a_slow_server_times_out_retriably(server: FakeServer) -> None:
    server.delay = 1.0
    server.replies.append((200, completion('{"action": "late", "priority": 1}')))
    engine = engine_for(server.url, timeout=0.2)
    await engine.start()
    try:
        with pytest.raises(EngineError, match="EXPEDITER_ENGINE_TIMEOUT") as caught:
            await engine.reason("x", Decision)
    finally:
        await engine.stop()
    assert caught.value.retriable is True
