"""The expected work of one task, in tokens: a producer's header, or an estimator's guess.

A producer that knows how big a task is (a plan of 4,000 tokens, a 20-token classification)
says so in the task record's header :data:`EXPECTED_TOKENS_HEADER`. Otherwise the agent's
:class:`TokenEstimator` guesses from the input's size: ``tokens_per_byte`` times the record's
bytes, calibrated by the tokens measured on finished tasks (:meth:`TokenEstimator.observe`), so
the guess converges on what the agent's engine really spends per byte of input.

The same estimate is made in two places from the same record: by the external scaler, which sums
it over pending tasks (:mod:`expediter.scaling.summing`), and by the worker, which records it on
the result next to the actual tokens, so that the estimator's error can be measured.

Pure: no I/O. Who calls it: :mod:`expediter.scaler` (``expediter scaler``) and the worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from expediter.errors import ConfigurationError

__all__ = [
    "DEFAULT_TOKENS_PER_BYTE",
    "EXPECTED_TOKENS_HEADER",
    "EstimateSource",
    "TokenEstimate",
    "TokenEstimator",
    "header_tokens",
]

EXPECTED_TOKENS_HEADER = "expediter-expected-tokens"
"""A task record's header: the work the producer expects, a whole number of tokens (ASCII)."""

DEFAULT_TOKENS_PER_BYTE = 0.25
"""About four bytes of English text per token, the usual rule for BPE tokenizers; replaced by
the measured ratio once tasks finish."""

_MAX_TOKENS = 10_000_000
"""A header above this is refused as a mistake (no single task spends ten million tokens)."""

EstimateSource = Literal["header", "estimator"]


@dataclass(frozen=True)
class TokenEstimate:
    """How many tokens a task is expected to cost, and where the number came from."""

    tokens: int
    source: EstimateSource


def header_tokens(headers: Iterable[tuple[str, bytes]]) -> int | None:
    """The producer's expected tokens, or None without a usable header.

    A malformed header (not a whole number, negative, absurdly large) is ignored rather than
    refused: the task itself is fine, only its hint is, and the estimator still has a guess.
    """
    for name, value in headers:
        if name != EXPECTED_TOKENS_HEADER:
            continue
        try:
            tokens = int(value.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            return None
        return tokens if 0 <= tokens <= _MAX_TOKENS else None
    return None


class TokenEstimator:
    """Guesses a task's tokens from its size; calibrated by measured tokens per byte.

    Calibration keeps the ratio of sums (tokens spent / bytes of input) over every observed
    task, weighted toward recent ones by ``decay`` per observation, so a change of model or
    prompt shows within a few hundred tasks. Until ``warmup`` tasks were observed, the prior
    ``tokens_per_byte`` is blended in, so one odd task does not swing the guess.
    """

    def __init__(
        self,
        tokens_per_byte: float = DEFAULT_TOKENS_PER_BYTE,
        *,
        minimum: int = 1,
        decay: float = 0.995,
        warmup: int = 20,
    ) -> None:
        if tokens_per_byte <= 0:
            raise ConfigurationError(
                f"tokens_per_byte must be > 0, got {tokens_per_byte}; e.g. "
                f"{DEFAULT_TOKENS_PER_BYTE} (four bytes a token)"
            )
        if not 0 < decay <= 1:
            raise ConfigurationError(f"decay must be in (0, 1], got {decay}; e.g. 0.995")
        self.prior = tokens_per_byte
        self.minimum = minimum
        self.decay = decay
        self.warmup = warmup
        self._tokens = 0.0
        self._bytes = 0.0
        self.observed = 0

    @property
    def tokens_per_byte(self) -> float:
        """The current ratio: the prior, blended with the measured one as tasks finish."""
        if self._bytes <= 0:
            return self.prior
        measured = self._tokens / self._bytes
        weight = min(1.0, self.observed / self.warmup) if self.warmup else 1.0
        return weight * measured + (1 - weight) * self.prior

    def observe(self, input_bytes: int, tokens: int) -> None:
        """One finished task: its input's size and the tokens it actually spent.

        A task that spent no tokens (no engine call, a rule engine) says nothing about the
        engine's tokens per byte and is left out."""
        if input_bytes <= 0 or tokens <= 0:
            return
        self._tokens = self._tokens * self.decay + tokens
        self._bytes = self._bytes * self.decay + input_bytes
        self.observed += 1

    def guess(self, input_bytes: int) -> int:
        """Tokens for an input of ``input_bytes`` bytes, at least ``minimum``."""
        return max(self.minimum, round(input_bytes * self.tokens_per_byte))

    def estimate(
        self, input_bytes: int, headers: Iterable[tuple[str, bytes]] = ()
    ) -> TokenEstimate:
        """The header's number when the producer stated one, else :meth:`guess`."""
        stated = header_tokens(headers)
        if stated is not None:
            return TokenEstimate(stated, "header")
        return TokenEstimate(self.guess(input_bytes), "estimator")
