"""Linear interpolation of two language models, word by word, and the weight that fits it best.

    P(w | h) = weight * P_rnn(w | h) + (1 - weight) * P_ngram(w | h)

``weight`` is the RNN's share, as in Mikolov's rnnlm ``-lambda``. Scores travel as log10
probabilities; the sum is taken in log space, so it neither underflows for very
unlikely words nor turns ``-inf`` on one side into NaN. The best weight is found by EM
for a two-component mixture with fixed components, as SRILM's ``compute-best-mix`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnlm_cli.units import LN10, perplexity_log10


@dataclass(frozen=True)
class FitResult:
    """The interpolation weight EM settled on, and the perplexities it was judged by."""

    weight: float
    """The RNN's weight; the n-gram model gets ``1 - weight``."""
    iterations: int
    """EM steps taken."""
    converged: bool
    """Whether the last step moved the weight by less than the tolerance."""
    rnn_ppl: float
    """Perplexity of the RNN alone over the entries."""
    ngram_ppl: float
    """Perplexity of the n-gram model alone over the entries."""
    mix_ppl: float
    """Perplexity of the mixture at ``weight``."""
    words: int = 0
    """Entries the weight was fitted on (words and line ends)."""


def mix_log10(rnn: float, ngram: float, weight: float) -> float:
    """log10(weight * 10**rnn + (1 - weight) * 10**ngram); weight 1 or 0 gives that side exactly."""
    _check_weight(weight)
    if weight == 1.0:
        return rnn
    if weight == 0.0:
        return ngram
    a = rnn + math.log10(weight)
    b = ngram + math.log10(1.0 - weight)
    high, low = (a, b) if a >= b else (b, a)
    if high == -math.inf:
        return -math.inf
    return high + math.log1p(10.0 ** (low - high)) / LN10


def mix_log10_array(rnn: np.ndarray, ngram: np.ndarray, weight: float) -> np.ndarray:
    """:func:`mix_log10` element by element, as float64."""
    _check_weight(weight)
    rnn = np.asarray(rnn, dtype=np.float64)
    ngram = np.asarray(ngram, dtype=np.float64)
    if weight == 1.0:
        return np.broadcast_arrays(rnn, ngram)[0].copy()
    if weight == 0.0:
        return np.broadcast_arrays(ngram, rnn)[0].copy()
    a = (rnn + math.log10(weight)) * LN10
    b = (ngram + math.log10(1.0 - weight)) * LN10
    return np.logaddexp(a, b) / LN10


def fit_weight(rnn: np.ndarray, ngram: np.ndarray, start: float = 0.5, tolerance: float = 1e-5,
               max_iterations: int = 200) -> FitResult:
    """The RNN weight that maximises the mixture's likelihood of the entries, by EM.

    ``rnn`` and ``ngram`` are log10 probabilities of the same words. Each step sets the
    weight to the mean posterior of the RNN component,
    ``w <- mean_i(w p_i / (w p_i + (1 - w) q_i))``; the likelihood is concave in ``w``,
    so EM climbs to its one maximum. Entries where both models give ``-inf`` have no
    mixture that explains them and are refused.
    """
    rnn = np.asarray(rnn, dtype=np.float64).ravel()
    ngram = np.asarray(ngram, dtype=np.float64).ravel()
    if rnn.shape != ngram.shape:
        raise ValueError(f"rnn and ngram scores differ in length: {rnn.size} and {ngram.size}")
    if rnn.size == 0:
        raise ValueError("no scores to fit a weight on")
    if np.isnan(rnn).any() or np.isnan(ngram).any():
        raise ValueError("scores hold NaN")
    both = np.isneginf(rnn) & np.isneginf(ngram)
    if both.any():
        raise ValueError(f"{int(both.sum())} entries are -inf under both models: no weight can score them")
    if not 0.0 < start < 1.0:
        raise ValueError(f"start must lie strictly between 0 and 1 (EM never leaves 0 or 1), got {start}")
    # The posterior is sigmoid(ln(p/q) + ln(w/(1-w))); -inf on one side makes it exactly 0 or 1.
    log_ratio = (rnn - ngram) * LN10  # (N,)
    weight = start
    iterations = 0
    converged = False
    while iterations < max_iterations:
        logit = log_ratio + math.log(weight / (1.0 - weight))
        updated = float(np.mean(np.exp(-np.logaddexp(0.0, -logit))))
        iterations += 1
        step = abs(updated - weight)
        weight = updated
        # A posterior mean of exactly 0 or 1 is a fixed point: one model alone explains everything.
        if step < tolerance or weight in (0.0, 1.0):
            converged = True
            break
    mixed = mix_log10_array(rnn, ngram, weight)
    return FitResult(weight=weight, iterations=iterations, converged=converged, rnn_ppl=_perplexity(rnn),
                     ngram_ppl=_perplexity(ngram), mix_ppl=_perplexity(mixed), words=int(rnn.size))


def _perplexity(log10_probs: np.ndarray) -> float:
    return perplexity_log10(float(np.sum(log10_probs)), log10_probs.size)


def _check_weight(weight: float) -> None:
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the interpolation weight must lie in [0, 1], got {weight}")
