"""JSON Schemas as llama.cpp's grammar converter needs them, for engines that hold a model's
output to an output model by a grammar: the in-process llama engine, and llama.cpp's servers
asked for ``json_object`` with a schema. Called by :mod:`expediter.reasoning.llama` and
:mod:`expediter.reasoning.remote`.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["grammar_schema"]

_MAX_ENUM = 256
"""Wider integer ranges stay plain integers (checked after generation): a longer alternation
would make the grammar, and every sampled token, slower."""


def grammar_schema(schema: Any) -> Any:
    """``schema`` with each small bounded integer range spelled out as an enum.

    llama-cpp-python's schema-to-grammar converter ignores minimum and maximum, so a bounded
    integer would be checked only after generation; as an enum the grammar holds the model to it.
    """
    if isinstance(schema, list):
        return [grammar_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    rewritten = {key: grammar_schema(value) for key, value in schema.items()}
    if rewritten.get("type") != "integer" or "enum" in rewritten:
        return rewritten
    lows, highs = [], []
    if isinstance(bound := rewritten.get("minimum"), int | float):
        lows.append(math.ceil(bound))
    if isinstance(bound := rewritten.get("exclusiveMinimum"), int | float):
        lows.append(math.floor(bound) + 1)
    if isinstance(bound := rewritten.get("maximum"), int | float):
        highs.append(math.floor(bound))
    if isinstance(bound := rewritten.get("exclusiveMaximum"), int | float):
        highs.append(math.ceil(bound) - 1)
    if not lows or not highs or min(highs) - max(lows) >= _MAX_ENUM:
        return rewritten
    step = rewritten.get("multipleOf", 1)
    values = [n for n in range(max(lows), min(highs) + 1) if n % step == 0]
    return {"enum": values} if values else rewritten
