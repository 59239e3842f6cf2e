"""The OpenAI-compatible engine: a chat completion from a server (vLLM, llama-server), with the
output held to the output model's JSON schema by ``response_format``.

Chosen by :func:`expediter.reasoning.engine_from_settings` when ``EXPEDITER_ENGINE_KIND=openai``;
the worker starts and stops it, agent handlers call it through ``TaskContext.reason``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from expediter.errors import EngineError
from expediter.events import TokenUsage
from expediter.reasoning.faults import EngineFault
from expediter.reasoning.grammars import grammar_schema
from expediter.reasoning.protocol import OutputT, Reasoned
from expediter.settings import EngineSettings

if TYPE_CHECKING:
    import aiohttp  # imported when an engine starts: a worker without one never loads it

__all__ = ["OpenAICompatibleEngine"]

log = logging.getLogger(__name__)

# OpenAI's rule for json_schema names; vLLM and llama-server accept anything it accepts.
_SCHEMA_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_BODY_EXCERPT = 300


def _schema_name(output_model: type[Any]) -> str:
    return _SCHEMA_NAME_UNSAFE.sub("_", output_model.__name__)[:64] or "output"


def _wants_json_object(status: int, text: str) -> bool:
    """The reply of llama-cpp-python's server (422, or 500 in 0.3.x) to a response_format it
    does not take: its validation error names the field and the formats it accepts."""
    return status in (400, 422, 500) and "response_format" in text and "json_object" in text


def _int_field(usage: Any, key: str) -> int:
    value = usage.get(key) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and value >= 0 else 0


class OpenAICompatibleEngine:
    """A :class:`~expediter.reasoning.protocol.ReasoningEngine` that POSTs to
    ``{base_url}/chat/completions`` over one pooled aiohttp session."""

    def __init__(self, settings: EngineSettings, *, name: str = "openai") -> None:
        self._settings = settings
        self._name = name
        self._url = settings.base_url.rstrip("/") + "/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        return self._settings.model

    async def start(self) -> None:
        """Open the connection pool; a second call keeps the first pool."""
        if self._session is not None:
            return
        headers = {"Content-Type": "application/json"}
        if self._settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self._settings.api_key.get_secret_value()}"
        import aiohttp

        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=self._settings.timeout)
        )

    async def stop(self) -> None:
        """Close the pool; safe to call when never started or already stopped."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def reason(
        self,
        prompt: str,
        output_model: type[OutputT],
        *,
        system: str | None = None,
        max_tokens: int = 256,
        workflow_id: str | None = None,
    ) -> Reasoned[OutputT]:
        if self._session is None:
            raise EngineError(
                "the openai engine was asked to reason before start(): call `await "
                "engine.start()` first (the worker does so before joining its group)",
                retriable=False,
            )
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        body = {
            "model": self._settings.model,
            "messages": messages,
            "temperature": self._settings.temperature,
            "max_tokens": max_tokens,
            "response_format": self._response_format(output_model),
        }
        reply = await self._post(body)
        content, finish_reason, usage = self._unpack(reply)
        try:
            # strict=False: llama-server's JSON grammar lets raw control characters (a newline)
            # into strings, which strict JSON forbids; re-dumping escapes them and keeps
            # pydantic's JSON-mode validation (strict models accept ISO dates, enum values).
            output = output_model.model_validate_json(json.dumps(json.loads(content, strict=False)))
        except (json.JSONDecodeError, ValidationError) as exc:
            detail = (
                f"{exc.error_count()} error(s): {exc.errors()[0]['msg']}"
                if isinstance(exc, ValidationError)
                else f"not JSON: {exc.msg}"
            )
            hint = (
                f"the reply was cut at max_tokens={max_tokens}: ask for more tokens"
                if finish_reason == "length"
                else "check that the server applies response_format (vLLM, llama-server do)"
            )
            raise EngineFault(
                f"{self._url} returned output that is not a valid {output_model.__name__} "
                f"({detail}); {hint}",
                reason="invalid-output",
                retriable=False,
            ) from exc
        return Reasoned(output=output, usage=usage)

    def _response_format(self, output_model: type[Any]) -> dict[str, Any]:
        schema = output_model.model_json_schema()
        if self._settings.response_format == "json_object":
            # llama.cpp's servers turn the schema into a grammar whose converter ignores integer
            # bounds: small ranges go as enums, as the in-process engine sends them.
            return {"type": "json_object", "schema": grammar_schema(schema)}
        return {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(output_model), "schema": schema, "strict": True},
        }

    async def _post(self, body: dict[str, Any]) -> Any:
        import aiohttp

        assert self._session is not None
        try:
            async with self._session.post(self._url, json=body) as response:
                text = await response.text()
                status = response.status
        except TimeoutError as exc:
            raise EngineFault(
                f"{self._url} did not answer within {self._settings.timeout:g} s: the server is "
                "overloaded or the model is slow; raise EXPEDITER_ENGINE_TIMEOUT or add replicas",
                reason="timeout",
                retriable=True,
            ) from exc
        except aiohttp.ClientError as exc:
            raise EngineFault(
                f"cannot reach the engine at {self._url} ({type(exc).__name__}: {exc}): start the "
                "server or point EXPEDITER_ENGINE_BASE_URL at it",
                reason="transport",
                retriable=True,
            ) from exc
        if status != 200:
            raise self._status_error(status, text)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise EngineFault(
                f"{self._url} answered 200 with a body that is not JSON ({text[:_BODY_EXCERPT]!r}):"
                " check that EXPEDITER_ENGINE_BASE_URL points at an OpenAI-compatible /v1 root",
                reason="malformed-reply",
                retriable=False,
            ) from exc

    def _status_error(self, status: int, text: str) -> EngineError:
        excerpt = text[:_BODY_EXCERPT]
        if _wants_json_object(status, text) and self._settings.response_format == "json_schema":
            # llama-cpp-python's server answers 500 to a json_schema request: not a failing
            # server but a refused request, which no retry or fallback cures.
            return EngineError(
                f"{self._url} refused response_format json_schema ({status}: {excerpt!r}): this "
                "server wants json_object (llama-cpp-python's server); set "
                "EXPEDITER_ENGINE_RESPONSE_FORMAT=json_object (or the route's response_format)",
                retriable=False,
            )
        if status == 429 or status >= 500:
            return EngineFault(
                f"{self._url} answered {status} ({excerpt!r}): the server is busy or failing; "
                "the task is retried",
                reason="server-error",
                retriable=True,
            )
        if status in (401, 403):
            fix = "set EXPEDITER_ENGINE_API_KEY to a key this server accepts"
        elif status == 404:
            fix = (
                "check EXPEDITER_ENGINE_BASE_URL (the /v1 root) and EXPEDITER_ENGINE_MODEL "
                f"(now {self._settings.model!r})"
            )
        else:
            fix = (
                "the server refused the request; check EXPEDITER_ENGINE_MODEL and that it "
                "supports response_format json_schema"
            )
        return EngineError(f"{self._url} answered {status} ({excerpt!r}): {fix}", retriable=False)

    def _unpack(self, reply: Any) -> tuple[str, str | None, TokenUsage]:
        try:
            choice = reply["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise EngineFault(
                f"{self._url} answered without choices[0].message.content "
                f"({str(reply)[:_BODY_EXCERPT]!r}): check that EXPEDITER_ENGINE_BASE_URL points "
                "at an OpenAI-compatible chat completions API",
                reason="malformed-reply",
                retriable=False,
            ) from exc
        if not isinstance(content, str):
            raise EngineFault(
                f"{self._url} answered with empty content (a refusal or a tool call?): the model "
                "must answer in text; check EXPEDITER_ENGINE_MODEL",
                reason="invalid-output",
                retriable=False,
            )
        usage_field = reply.get("usage") if isinstance(reply, dict) else None
        usage = TokenUsage(
            prompt_tokens=_int_field(usage_field, "prompt_tokens"),
            completion_tokens=_int_field(usage_field, "completion_tokens"),
        )
        finish = choice.get("finish_reason") if isinstance(choice, dict) else None
        log.debug(
            "engine %s answered: %d prompt + %d completion tokens, finish=%s",
            self._url,
            usage.prompt_tokens,
            usage.completion_tokens,
            finish,
        )
        return content, finish if isinstance(finish, str) else None, usage
