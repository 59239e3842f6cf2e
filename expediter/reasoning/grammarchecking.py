"""Checks an output model's grammar in a child process before the llama engine uses it.

llama.cpp parses a GBNF grammar in native code when a generation starts, with the model's
vocabulary. A grammar it cannot parse does not raise in Python: llama-cpp-python gets a NULL
sampler and the process crashes, or an assertion aborts it. In a worker that is a dead replica
mid-task, and the next replica that takes the task dies the same way. So the engine first has a
child process parse the grammar against the same model's vocabulary (loaded alone, no weights:
well under a second) and turns a refusal or a crash into a :class:`ConfigurationError` that
names the output model.

Called by :class:`expediter.reasoning.llama.LlamaEngine` (``prepare``, which the worker calls
for its agent's output model before it joins its group, and the first call for any other model).
The child is this module run as ``python -m expediter.reasoning.grammarchecking MODEL`` with the
grammar on stdin; it exits 0 when llama.cpp built a sampler, 2 when it refused the grammar.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from expediter.errors import ConfigurationError

__all__ = ["check_grammar", "grammar_text"]

_REFUSED = 2
_TIMEOUT = 120.0


def grammar_text(schema_json: str, output_name: str) -> str:
    """llama-cpp-python's GBNF for a JSON schema; its converter's own failures (an assertion, a
    pattern it cannot read) as a ConfigurationError naming the output model."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        text: str = json_schema_to_gbnf(schema_json)
        return text
    except Exception as exc:  # the converter raises AssertionError, ValueError, KeyError...
        raise ConfigurationError(
            f"llama-cpp-python cannot turn output model {output_name}'s JSON schema into a "
            f"grammar ({type(exc).__name__}: {exc}): simplify {output_name} (a pattern, a format "
            "or a json_schema_extra it cannot read) or use another engine kind"
        ) from exc


def check_grammar(grammar: str, model_path: Path, output_name: str) -> None:
    """Parse ``grammar`` with ``model_path``'s vocabulary in a child process; raise
    ConfigurationError naming ``output_name`` when llama.cpp refuses it or crashes on it."""
    try:
        child = subprocess.run(
            [sys.executable, "-m", __name__, str(model_path)],
            input=grammar, capture_output=True, text=True, timeout=_TIMEOUT, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise ConfigurationError(
            f"llama.cpp did not finish parsing output model {output_name}'s grammar within "
            f"{_TIMEOUT:g} s: simplify {output_name} (fewer nested or optional fields)"
        ) from exc
    if child.returncode == 0:
        return
    said = " / ".join(
        line.strip()
        for line in child.stderr.splitlines()
        if "grammar" in line or "error" in line.lower() or "assert" in line.lower()
    )[-600:]
    if child.returncode < 0:
        how = f"crashed llama.cpp's grammar parser ({signal.Signals(-child.returncode).name})"
    elif child.returncode == _REFUSED:
        how = "was refused by llama.cpp's grammar parser"
    else:
        how = f"could not be checked (the check exited {child.returncode})"
    raise ConfigurationError(
        f"output model {output_name}'s grammar {how}: {said or 'no detail'}. A generation with "
        f"it would crash this worker, so it does not start: simplify {output_name} (a pattern "
        "or a json_schema_extra llama.cpp cannot read) or use another engine kind"
    )


def _parse(model_path: str, grammar: str) -> int:
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(model_path.encode(), params)
    if not model:
        print(f"error: llama.cpp could not load the vocabulary of {model_path}", file=sys.stderr)
        return 1
    try:
        vocab = llama_cpp.llama_model_get_vocab(model)
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not sampler:
            return _REFUSED
        llama_cpp.llama_sampler_free(sampler)
        return 0
    finally:
        llama_cpp.llama_model_free(model)


if __name__ == "__main__":
    sys.exit(_parse(sys.argv[1], sys.stdin.read()))
