"""Bench: the reasoning agent's tokens/s through the worker against raw llama-cpp-python, on
the same GGUF, grammar, prompts and max tokens, in the same run.

- Worker: ``agents/reasoning.py`` on the llama engine (Gemma 3 270M by default, or
  ``EXPEDITER_ENGINE_MODEL_PATH``), fed ``--tasks`` plan requests filled into its task topic
  beforehand. Timed from the moment it holds its partitions (model loaded and warmed) until a
  reader has every result; tokens are the results' ``usage.completion_tokens``.
- Raw: ``llama_cpp.Llama`` with the engine's load options, warmed the same way, generating the
  same chat messages (the agent's SYSTEM and prompts) under the same grammar (the Plan's
  serialization schema, as the engine builds it) with the same max tokens and sampling, one
  after another; timed around the generations, tokens from llama.cpp's usage.

Greedy decoding (temperature 0) makes both sides generate the same tokens, so the figure is the
worker, the broker and the engine's wrapper against the raw library on the same work: their
overhead, and the engine's sampler chain, which checks the grammar on the chosen token before
the whole vocabulary (:mod:`expediter.reasoning.sampling`), and so puts the ratio above 1 on a
CPU. They take turns
for ``--rounds`` rounds (fresh topics each; the model loaded once per side per round) and the
medians count. The last line is one JSON object; ``ratio`` = worker tokens/s / raw tokens/s.

    .venv/bin/python bench/bench_llm.py [--tasks 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from common import agent_topics, emit, scratch_topics

from expediter import load_agent
from expediter.dev import provided_broker
from expediter.events import Producer, ResultEvent, TaskEvent, decode, to_record
from expediter.messaging import TopicNames, client_options, connected
from expediter.reasoning import LlamaEngine
from expediter.reasoning.cores import available_cores
from expediter.reasoning.grammars import grammar_schema
from expediter.settings import DevSettings, EngineSettings, KafkaSettings, WorkerSettings
from expediter.worker import looping
from expediter.worker.working import Worker

AGENT_FILE = Path(__file__).resolve().parents[1] / "agents" / "reasoning.py"
CAPABILITY = "reasoning"
PARTITIONS = 2
GOALS = ["Plan today's work for the field", "Protect the crop this week"]
CONTEXTS: list[dict[str, Any]] = [
    {"pests": 14, "moisture_pct": 30},
    {"pests": 3, "moisture_pct": 12},
    {"pests": 0, "moisture_pct": 8, "crop": "maize"},
]


def agent_module() -> ModuleType:
    """The reasoning agent's module, for its prompt, SYSTEM, Plan and MAX_TOKENS."""
    spec = importlib.util.spec_from_file_location("bench_reasoning_agent", AGENT_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def inputs(module: ModuleType, count: int) -> list[Any]:
    cases = [(goal, context) for goal in GOALS for context in CONTEXTS]
    return [
        module.ReasoningInput(goal=cases[n % len(cases)][0], field_id=f"field-{n}",
                              context=cases[n % len(cases)][1])
        for n in range(count)
    ]  # fmt: skip


async def worker_tokens_per_s(
    settings: KafkaSettings, engine: LlamaEngine, tasks: list[Any]
) -> tuple[float, int, int]:
    """Tokens/s through a worker, its completion tokens, and how many tasks failed."""
    names = TopicNames(prefix=f"bl{uuid.uuid4().hex[:6]}.")
    async with scratch_topics(settings, agent_topics(names, CAPABILITY, PARTITIONS)):
        return await _worker_phase(settings, engine, names, tasks)


async def _worker_phase(
    settings: KafkaSettings, engine: LlamaEngine, names: TopicNames, tasks: list[Any]
) -> tuple[float, int, int]:
    producer_info = Producer(name="bench", version="0")
    async with connected(AIOKafkaProducer(**client_options(settings)), settings) as producer:
        for n, task in enumerate(tasks):
            event = TaskEvent(producer=producer_info, workflow_id=f"wf-{n:04d}", step_id="plan",
                              capability=CAPABILITY, input=task.model_dump())  # fmt: skip
            record = to_record(event)
            await producer.send(names.tasks(CAPABILITY), record.value, key=record.key,
                                headers=record.headers)  # fmt: skip
        await producer.flush()
    worker_settings = WorkerSettings(
        topic_prefix=names.prefix, instance=f"bench-{uuid.uuid4().hex[:6]}", http_port=0,
        retry_tiers=[],
    )  # fmt: skip
    worker = Worker(load_agent(AGENT_FILE), engine, kafka=settings, settings=worker_settings)
    results: list[ResultEvent[Any]] = []

    async def collect() -> float:
        consumer = AIOKafkaConsumer(
            names.results, **client_options(settings), auto_offset_reset="earliest",
            isolation_level="read_committed",
        )  # fmt: skip
        async with connected(consumer, settings):
            while len(results) < len(tasks):
                for records in (await consumer.getmany(timeout_ms=100)).values():
                    results.extend(decode(r.value, ResultEvent) for r in records)
        return time.monotonic()

    reader = asyncio.create_task(collect())
    running = asyncio.create_task(worker.run())
    while not worker.assignments:  # loaded, warmed, joined and holding its partitions
        if running.done():
            await running
        await asyncio.sleep(0.005)
    started = time.monotonic()
    finished = await reader
    worker.request_stop()
    await running
    tokens = sum(result.usage.completion_tokens for result in results)
    failed = sum(result.status == "failed" for result in results)
    return tokens / (finished - started), tokens, failed


def raw_tokens_per_s(
    module: ModuleType, engine_settings: EngineSettings, model_path: Path, tasks: list[Any]
) -> tuple[float, int]:
    """Tokens/s of plain llama-cpp-python on the same work, and its completion tokens."""
    from llama_cpp.llama import Llama
    from llama_cpp.llama_grammar import LlamaGrammar

    threads = engine_settings.n_threads or available_cores()
    llm = Llama(model_path=str(model_path), n_ctx=engine_settings.n_ctx, n_threads=threads,
                n_threads_batch=threads, n_batch=engine_settings.n_batch,
                n_gpu_layers=engine_settings.n_gpu_layers, flash_attn=engine_settings.flash_attn,
                seed=engine_settings.seed, verbose=False)  # fmt: skip
    try:
        schema = grammar_schema(module.Plan.model_json_schema(mode="serialization"))
        grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        llm.create_chat_completion(messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
                                   temperature=0.0)  # fmt: skip
        tokens = 0
        started = time.monotonic()
        for task in tasks:
            reply: Any = llm.create_chat_completion(
                messages=[{"role": "system", "content": module.SYSTEM},
                          {"role": "user", "content": module.prompt_for(task)}],
                grammar=grammar, max_tokens=module.MAX_TOKENS,
                temperature=engine_settings.temperature, top_p=engine_settings.top_p,
                seed=engine_settings.seed,
            )  # fmt: skip
            tokens += int(reply["usage"]["completion_tokens"])
        elapsed = time.monotonic() - started
    finally:
        llm.close()
    return tokens / elapsed, tokens


async def main(args: argparse.Namespace) -> None:
    module = agent_module()
    tasks = inputs(module, args.tasks)
    engine_settings = EngineSettings(kind="llama")
    model_path: Path | None = engine_settings.model_path
    async with provided_broker(DevSettings(dir=Path(".expediter/bench"))) as broker:
        emit({"broker": broker.kind, "bootstrap": broker.bootstrap,
              "max_tokens": module.MAX_TOKENS})  # fmt: skip
        worker_rates, raw_rates = [], []
        for n in range(args.rounds):
            # Worker first in odd rounds (its engine finds the default model for the raw side),
            # raw first in even ones: a neighbour's burst on the shared cores should not always
            # land on the same side.
            order = ["worker", "raw"] if n % 2 == 0 else ["raw", "worker"]
            row: dict[str, Any] = {"phase": "round", "round": n + 1}
            for side in order:
                if side == "worker":
                    engine = LlamaEngine(engine_settings)
                    rate, tokens, failed = await worker_tokens_per_s(broker.settings, engine, tasks)
                    model_path = engine.model_path
                    worker_rates.append(rate)
                    row |= {"worker_tokens_per_s": round(rate, 2), "worker_tokens": tokens,
                            "worker_failed": failed, "threads": engine.threads}  # fmt: skip
                else:
                    assert model_path is not None
                    rate, tokens = await asyncio.to_thread(
                        raw_tokens_per_s, module, engine_settings, model_path, tasks
                    )
                    raw_rates.append(rate)
                    row |= {"raw_tokens_per_s": round(rate, 2), "raw_tokens": tokens}
            emit(row | {"ratio": round(worker_rates[-1] / raw_rates[-1], 3)})
        worker_rate, raw_rate = statistics.median(worker_rates), statistics.median(raw_rates)
        emit({"bench": "llm", "tasks": args.tasks, "rounds": args.rounds,
              "model": model_path.name if model_path else None, "max_tokens": module.MAX_TOKENS,
              "worker_tokens_per_s": round(worker_rate, 2), "raw_tokens_per_s": round(raw_rate, 2),
              "ratio": round(worker_rate / raw_rate, 3)})  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=6, help="plan requests per side per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians count)")
    looping.run(main(parser.parse_args()), WorkerSettings().event_loop)
