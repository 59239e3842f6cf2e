"""Greedy decoding under a grammar that checks the grammar on the chosen token first.

llama-cpp-python's sampler chain applies the grammar to every token of the vocabulary before
greedy picks one: for each candidate, llama.cpp decodes the token's text and runs it against the
grammar's stacks. With Gemma 3's 262,144-token vocabulary that costs more than the model itself
on a CPU (measured on 2 cores: 7.2 tokens/s with the grammar, 17.3 without).

Greedy takes the highest logit. If that token is one the grammar allows, it is also the highest
among the allowed ones, so checking only it gives the same token. Only when the grammar refuses
it is the grammar applied to the whole vocabulary, as before. The answer is the same token for
token (the test generates with both chains and compares), and most tokens take the short way.
llama.cpp's own ``common`` sampler does the same, for the same reason.

Only greedy decoding (temperature 0, the default) takes this way: with sampling, a token drawn
from the unconstrained distribution and then accepted would change the distribution. Called by
:mod:`expediter.reasoning.llama` (its ``Llama`` subclass builds its sampler chains here).
"""

from __future__ import annotations

import ctypes
import logging
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["GrammarChecks", "greedy_grammar_chain"]

log = logging.getLogger(__name__)


@dataclass
class GrammarChecks:
    """How the grammar was applied, per sampled token, since the engine was made (the tests
    read it to see that both ways were taken)."""

    chosen_only: int = 0
    """Tokens whose greedy choice the grammar allowed: only that token was checked."""
    whole_vocabulary: int = 0
    """Tokens whose greedy choice the grammar refused: the grammar went over every token."""


def greedy_grammar_chain(
    llama: Any, grammar: Any, penalties: dict[str, Any], checks: GrammarChecks
) -> Any:
    """A sampler chain equal to llama-cpp-python's greedy one with ``grammar`` (penalties, the
    grammar, greedy), with the grammar checked on the chosen token first.

    ``llama`` is the ``Llama`` instance, ``grammar`` a ``LlamaGrammar``, ``penalties`` the
    keyword arguments of ``LlamaSampler.add_penalties`` as the stock chain passes them.
    """
    import llama_cpp
    from llama_cpp import _internals

    # Typed as Any: the bindings' annotations are partial (untyped methods), and this module
    # only ever passes their objects back to them.
    lib: Any = llama_cpp
    internals: Any = _internals
    chain = internals.LlamaSampler()
    chain.add_penalties(**penalties)
    lazy = _ChosenFirst(lib, llama._model, grammar, checks)
    lib.llama_sampler_chain_add(chain.sampler, lazy.pointer)
    # llama-cpp-python takes the samplers it lists here out of the chain before it frees it,
    # so that llama.cpp does not free memory Python owns. The grammar sampler inside ours is
    # llama.cpp's: ``lazy.free`` frees it, before the chain (an exit stack unwinds last-in
    # first), when nothing can call it any more.
    chain.custom_samplers.append((lib.llama_sampler_chain_n(chain.sampler) - 1, lazy))
    chain._exit_stack.callback(lazy.free)
    chain.add_greedy()
    return chain


class _ChosenFirst:
    """A llama.cpp sampler, written in Python, wrapping llama.cpp's grammar sampler."""

    def __init__(self, lib: Any, model: Any, grammar: Any, checks: GrammarChecks) -> None:
        import numpy as np  # comes with llama-cpp-python, like this module's only caller

        self._lib = lib
        self._checks = checks
        self._as_array = np.ctypeslib.as_array
        # llama.cpp's llama_token_data: id, logit, p (12 bytes, no padding).
        self._record = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])
        self._grammar = lib.llama_sampler_init_grammar(
            model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self._grammar:
            raise ValueError("llama.cpp could not build the grammar sampler")
        self._one = lib.llama_token_data()
        self._one_array = lib.llama_token_data_array(
            data=ctypes.pointer(self._one), size=1, selected=-1, sorted=False
        )
        # The callbacks' C wrappers must live as long as llama.cpp may call them: kept here.
        self._callbacks = (
            lib.llama_sampler_i_apply(self._apply),
            lib.llama_sampler_i_accept(self._accept),
            lib.llama_sampler_i_reset(self._reset),
        )
        iface = lib.llama_sampler_i()
        iface.name = lib.llama_sampler_i_name(0)
        iface.apply, iface.accept, iface.reset = self._callbacks
        iface.clone = lib.llama_sampler_i_clone(0)
        iface.free = lib.llama_sampler_i_free(0)
        self._iface = iface
        self._sampler = lib.llama_sampler()
        self._sampler.iface = ctypes.pointer(iface)
        self._sampler.ctx = None
        self.pointer = ctypes.pointer(self._sampler)

    def free(self) -> None:
        if self._grammar:
            self._lib.llama_sampler_free(self._grammar)
            self._grammar = None

    def _apply(self, _sampler: Any, candidates: Any) -> None:
        try:
            if self._chosen_is_allowed(candidates.contents):
                self._checks.chosen_only += 1
                return
        except Exception:  # an exception cannot cross into C: take the long way instead
            log.exception("checking the grammar on the chosen token failed")
        self._checks.whole_vocabulary += 1
        self._lib.llama_sampler_apply(self._grammar, candidates)

    def _chosen_is_allowed(self, array: Any) -> bool:
        # A view of llama.cpp's array, no copy. argmax takes the first highest logit, in array
        # order: the greedy sampler's own rule.
        raw = ctypes.cast(array.data, ctypes.POINTER(ctypes.c_byte))
        size = array.size * self._record.itemsize
        data = self._as_array(raw, shape=(size,)).view(self._record)
        best = int(data["logit"].argmax())
        one = self._one
        one.id, one.logit, one.p = int(data["id"][best]), float(data["logit"][best]), 0.0
        self._one_array.size, self._one_array.selected = 1, -1
        self._lib.llama_sampler_apply(self._grammar, ctypes.byref(self._one_array))
        return bool(self._one_array.size == 1 and one.logit != -math.inf)

    def _accept(self, _sampler: Any, token: int) -> None:
        self._lib.llama_sampler_accept(self._grammar, token)

    def _reset(self, _sampler: Any) -> None:
        self._lib.llama_sampler_reset(self._grammar)
