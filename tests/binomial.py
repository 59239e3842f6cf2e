"""Exact binomial bounds, for tests that check a random share (a traffic split) without
flaking: the bounds come from the distribution, not from a guess."""

from __future__ import annotations

import math


def binomial_bounds(n: int, p: float, alpha: float) -> tuple[int, int]:
    """The narrowest ``(low, high)`` such that a Binomial(``n``, ``p``) count falls below
    ``low`` with probability at most ``alpha / 2``, and above ``high`` likewise: a correct
    sampler fails a check against them with probability at most ``alpha``."""

    def pmf(k: int) -> float:
        # In logs: math.comb(4000, 2000) overflows a float.
        log = (
            math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p)
        )  # fmt: skip
        return math.exp(log)

    low, tail = 0, 0.0
    while tail + pmf(low) <= alpha / 2:
        tail += pmf(low)
        low += 1
    high, tail = n, 0.0
    while tail + pmf(high) <= alpha / 2:
        tail += pmf(high)
        high -= 1
    return low, high
