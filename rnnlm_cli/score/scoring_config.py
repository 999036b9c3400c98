"""What ``rnnlm eval`` is asked to do beyond plain scoring, checked once, and the parts it needs;
and how it reads n-best lists (:class:`NBestConfig`).

Defaults for the neural cache were tuned on the first 300 lines of WikiText-2's validation
split with a 1x256 tied LSTM (see the README's scoring section); the cache's ``theta`` scales
with the size of the features, so a very different model may want others. Dynamic
evaluation's learning rate, which differs by several times between two models of one recipe,
is fitted to the model on the text being scored unless one is given
(:mod:`rnnlm_cli.score.dynamic_fit`).

Importing this module does not import torch, so the command line can read its defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rnnlm_cli.config import AMP_MODES, check_values
from rnnlm_cli.errors import UsageError

CONTEXTS = ("stream", "sentence")
DYNAMIC_RULES = ("rms", "sgd")
"""Dynamic evaluation's steps: RMS-normalised with a global prior (Krause et al.), or plain SGD."""
DYNAMIC_WEIGHTS = ("output", "all")
"""The weights dynamic evaluation adapts: the decoder's, or every one."""
DEBUG_LEVELS = (0, 1, 2)
MAX_CACHE = 100_000
"""Largest --cache: each chunk scores against the whole window, a (chunk, window) matrix."""
MAX_SEGMENT = 4096
"""Largest --dynamic-segment: a segment's (T, V) logits and their gradient are held at once."""


@dataclass(frozen=True)
class ScoringConfig:
    context: str = "stream"
    """stream: the state carries across lines; sentence: every line alone."""
    unk: bool = False
    """Score OOV words as <unk> instead of leaving them out."""
    cache: int = 0
    """Neural cache over the last N positions; 0 = off."""
    cache_theta: float = 0.5
    """Cache: the inverse temperature of the dot products between features."""
    cache_lambda: float = 0.2
    """Cache: its weight in the mix with the model's prediction."""
    dynamic: bool = False
    """Dynamic evaluation: adapt the weights on each segment after scoring it."""
    dynamic_rule: str = "rms"
    """Dynamic evaluation: rms (steps divided by each weight tensor's gradient RMS) or sgd."""
    dynamic_weights: str = "output"
    """Dynamic evaluation: the weights adapted, the decoder's (output) or all."""
    dynamic_lr: float | None = None
    """Dynamic evaluation: learning rate; None: fitted on the text's first tokens."""
    dynamic_decay: float = 0.01
    """Dynamic evaluation: pull towards the trained weights per step (0 = none; with rms, scaled per tensor
    by its gradient RMS over the mean)."""
    dynamic_segment: int = 96
    """Dynamic evaluation: tokens per adaptation step. Every step reads and writes every adapted weight,
    so shorter segments adapt sooner at a cost in speed (README: 20 tokens give a few points more)."""
    mix_weight: float = 0.5
    """With an n-gram model: the neural model's weight in the per-word mix."""
    amp: str = "off"
    """Precision of the matrix products: off (float32), bf16, or auto (bf16 where native)."""
    lm_weight: float = 1.0
    """n-best: the weight of the language model score in each hypothesis' total."""
    word_penalty: float = 0.0
    """n-best: log10 score added per word of each hypothesis."""
    backward_weight: float = 0.5
    """n-best with a backward model: its share b of the LM score, (1 - b) * forward + b * backward."""

    def __post_init__(self) -> None:
        # Every float must be finite: a NaN weight would rank every hypothesis as equal.
        check_values(self, {"mix_weight": "--lambda"})
        if self.context not in CONTEXTS:
            raise UsageError(f"--context must be one of {', '.join(CONTEXTS)}, got {self.context!r}")
        if not 0 <= self.cache <= MAX_CACHE:
            raise UsageError(f"--cache must be 0 (off) or a number of positions up to {MAX_CACHE}, got {self.cache}")
        if not self.cache_theta >= 0:
            raise UsageError(f"--cache-theta must be a finite number >= 0, got {self.cache_theta}")
        if not 0.0 <= self.cache_lambda <= 1.0:
            raise UsageError(f"--cache-lambda must be within [0, 1], got {self.cache_lambda}")
        if self.dynamic_rule not in DYNAMIC_RULES:
            raise UsageError(f"--dynamic-rule must be one of {', '.join(DYNAMIC_RULES)}, got {self.dynamic_rule!r}")
        if self.dynamic_weights not in DYNAMIC_WEIGHTS:
            raise UsageError(f"--dynamic-weights must be one of {', '.join(DYNAMIC_WEIGHTS)}, "
                             f"got {self.dynamic_weights!r}")
        if self.dynamic_lr is not None and not 0 < self.dynamic_lr < math.inf:
            raise UsageError(f"--dynamic-lr must be a positive number, got {self.dynamic_lr}")
        if not 0.0 <= self.dynamic_decay <= 1.0:
            raise UsageError(f"--dynamic-decay must be within [0, 1], got {self.dynamic_decay}")
        if not 1 <= self.dynamic_segment <= MAX_SEGMENT:
            raise UsageError(f"--dynamic-segment must be between 1 and {MAX_SEGMENT}, got {self.dynamic_segment}")
        if not 0.0 <= self.backward_weight <= 1.0:
            raise UsageError(f"--backward-weight must be within [0, 1], got {self.backward_weight}")
        if not 0.0 <= self.mix_weight <= 1.0:
            raise UsageError(f"--lambda must be within [0, 1], got {self.mix_weight}")
        if self.amp not in AMP_MODES:
            raise UsageError(f"--amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")

    def precision(self, device):
        """The autocast context the model runs in: bf16 matrix products when ``amp`` asks
        for them; log-softmaxes and the sums of scores stay float32 either way."""
        from rnnlm_cli.device import amp_enabled, bf16_autocast

        return bf16_autocast(device, amp_enabled(self.amp, device))

    def build_cache(self):
        if not self.cache:
            return None
        from rnnlm_cli.score.cache import NeuralCache

        return NeuralCache(self.cache, self.cache_theta, self.cache_lambda)

    def build_dynamic(self, model):
        """None, a :class:`~rnnlm_cli.score.dynamic.DynamicEvaluation` at the rate given, or a
        :class:`~rnnlm_cli.score.dynamic_fit.StreamFit` that fits it on the text's first tokens."""
        if not self.dynamic:
            return None
        from rnnlm_cli.score.dynamic_fit import StreamFit

        how = dict(weights=self.dynamic_weights, segment=self.dynamic_segment)
        if self.dynamic_lr is None:
            return StreamFit(self.dynamic_rule, self.dynamic_decay, **how)
        if self.dynamic_rule == "rms":
            # A rate given: the RMS statistics still come from the text's first tokens.
            return StreamFit(self.dynamic_rule, self.dynamic_decay, rate=self.dynamic_lr, **how)
        from rnnlm_cli.score.dynamic import DynamicEvaluation

        return DynamicEvaluation(model, self.dynamic_lr, self.dynamic_decay, **how)


NBEST_FORMATS = ("auto", "srilm", "kaldi")
"""Layouts of n-best lists (see :mod:`rnnlm_cli.score.nbest`)."""
QUERY_FORMATS = ("srilm", "kenlm")
"""Layouts of ``--query`` answers: ``word=log10`` fields, or KenLM's ``word=ID ORDER log10``."""
NBEST_OUTPUTS = ("rescored", "sentence-scores", "token-scores")
"""What ``--nbest`` prints: rescored lists (SRILM's ``rescore-reweight``), one log10 score per
hypothesis (Mikolov's ``rnnlm -nbest``, for Kaldi's ``rnnlm_compute_scores.sh``), or the cost
of every word and sentence end (Kaldi's ``steps/pytorchnn``); see :mod:`rnnlm_cli.score.kaldi`."""
TUNE_POINTS = 21
"""Values per axis of ``--tune``'s LM weight and word penalty grid; odd, so a penalty of 0 is on it."""
CARRY_STATES = ("none", "best")
"""Where each n-best list's scoring starts: a fresh state, or the state after the previous list's best."""


@dataclass(frozen=True)
class NBestConfig:
    """How n-best lists are read and ordered; the weights of the totals are the
    :class:`ScoringConfig`'s ``lm_weight`` and ``word_penalty``.

    ``format`` and ``acoustic`` are checked where the lists are read
    (:func:`rnnlm_cli.score.nbest.iter_nbest`), beside every other fault a list can have."""

    format: str = "auto"
    """Layout of the lists: auto, srilm or kaldi (see :mod:`rnnlm_cli.score.nbest`)."""
    acoustic: str | None = None
    """Kaldi lists: a table of 'KEY cost' acoustic costs (natural log); None: every acoustic score is 0."""
    sort: bool = False
    """Order each list by total, best first (ties by rank); otherwise the input order."""
    output: str = "rescored"
    """rescored, sentence-scores (log10 per hypothesis) or token-scores (cost per word and sentence end)."""
    cost: bool = False
    """sentence-scores: print Kaldi's 'KEY cost' (negated natural log) instead of the log10 score alone."""
    symbols: str | None = None
    """A Kaldi symbol table ('word id' lines): hypotheses are integer ids to map to words."""
    carry_state: str = "none"
    """none: every hypothesis from a fresh state; best: from the state after the previous list's best."""

    def __post_init__(self) -> None:
        if self.output not in NBEST_OUTPUTS:
            raise UsageError(f"--output must be one of {', '.join(NBEST_OUTPUTS)}, got {self.output!r}")
        if self.carry_state not in CARRY_STATES:
            raise UsageError(f"--carry-state must be one of {', '.join(CARRY_STATES)}, got {self.carry_state!r}")
        if self.cost and self.output != "sentence-scores":
            raise UsageError("--cost is a layout of --output sentence-scores")
        if self.sort and self.output != "rescored":
            raise UsageError(f"--nbest-sort orders --output rescored; {self.output} keeps the input order")

    @property
    def plain(self) -> bool:
        """Only SRILM-style rescoring asked for, each hypothesis from a fresh state."""
        return self.output == "rescored" and self.symbols is None and self.carry_state == "none"
