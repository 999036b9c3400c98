"""Finding the weight of a neural model in a per-word mix with an n-gram model.

Like SRILM's ``compute-best-mix``: score a held-out text with both models, word by word,
and run EM on the mixture weight. The neural model decides what is an OOV (those words
are left out, as they are when scoring); the line ends count as words, as in ``ppl``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnlm_cli.errors import DataError


@dataclass(frozen=True)
class MixFit:
    weight: float
    """The neural model's weight that maximises the held-out likelihood."""
    iterations: int
    words: int
    """Words and line ends the fit saw (OOVs and words neither model can predict left out)."""
    ppl_model: float
    ppl_ngram: float
    ppl_mix: float


def fit_mix_weight(model, tokenizer, path: str, device, config, ngram, *, strict: bool = False) -> MixFit:
    """Score ``path`` with both models (``config``'s context, cache, dynamic evaluation and
    precision apply to the neural side) and fit the mixture weight on it. The model's
    weights are the trained ones again afterwards."""
    from rnnlm_cli.score.evaluate import evaluate_file
    from rnnlm_cli.score.mixing import fit_weight

    if ngram is None:
        raise ValueError("fitting the mixture weight needs the n-gram model")
    model_scores: list[float] = []
    ngram_scores: list[float] = []

    def collect(text, words, ends_line) -> None:
        for word in words:
            if not word.oov and (word.model_log10 > -math.inf or word.ngram_log10 > -math.inf):
                model_scores.append(word.model_log10)
                ngram_scores.append(word.ngram_log10)

    evaluate_file(model, tokenizer, path, device, config, ngram=ngram, strict=strict, on_words=collect)
    if not model_scores:
        raise DataError(f"{path}: no words both models can score")
    fit = fit_weight(np.asarray(model_scores), np.asarray(ngram_scores))
    return MixFit(weight=fit.weight, iterations=fit.iterations, words=len(model_scores),
                  ppl_model=fit.rnn_ppl, ppl_ngram=fit.ngram_ppl, ppl_mix=fit.mix_ppl)

