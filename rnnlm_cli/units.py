"""The units scores come in, and perplexity from each.

Training reports losses in nats per token (natural log); scoring reports log10
probabilities, as SRILM does. Both perplexities answer ``inf`` rather than raising
OverflowError when the number passes what a float holds (a diverged model), so a log
line or a JSON report is still written.
"""

from __future__ import annotations

import math

LN10 = math.log(10.0)
"""ln(10): a natural-log score divided by it is a log10 score."""

MAX_NATS = 700.0
"""Mean losses from here on give an ``inf`` perplexity: ``exp`` overflows just past 709.78."""
MAX_DECADES = 300.0
"""log10 perplexities from here on give ``inf``, short of the float limit near 10**308."""


def perplexity(nats_per_token: float) -> float:
    """``exp(nats_per_token)``: the perplexity of a mean natural-log loss; ``inf`` from
    :data:`MAX_NATS` on, and for NaN."""
    return math.exp(nats_per_token) if nats_per_token < MAX_NATS else math.inf


def perplexity_log10(logprob: float, count: int) -> float:
    """``10 ** (-logprob / count)``: SRILM's perplexity of ``count`` events whose log10
    probabilities sum to ``logprob``; NaN when nothing was counted, ``inf`` from
    :data:`MAX_DECADES` on, and for a NaN ``logprob``."""
    if count <= 0:
        return math.nan
    exponent = -logprob / count
    return 10.0 ** exponent if exponent < MAX_DECADES else math.inf
