"""The grid search behind ``rnnlm eval --tune``: every hypothesis' total at each point of a grid
of weights, each list's choice, and the errors of those choices (:mod:`rnnlm_cli.score.tuning`
lays the grid out and reads the result).

The total of a hypothesis at a point is

    acoustic + lm_weight * lm + word_penalty * words                (all log10)
    lm = (1 - b) * forward + b * backward                           (b: --backward-weight)
    forward = sum over words of log10(λ P_model + (1 - λ) P_ngram)   (λ: --lambda, with --mix-lm)

as :func:`rnnlm_cli.score.nbest.combined` adds it when the lists are rescored with those
flags; each list's choice is its best total, ties to the lowest rank, as ``--nbest-best`` picks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnnlm_cli.score.mixing import mix_log10_array
from rnnlm_cli.score.nbest import interpolated

SHARES = tuple(round(0.1 * k, 1) for k in range(11))
"""The values tried for the mixture weight and the backward weight."""
_CELLS = 1 << 22
"""Totals computed at once (penalties x lists x hypotheses), to bound memory for long lists."""


@dataclass
class ScoredLists:
    """Every hypothesis' scores, flat, list after list in input order (ranks ascending)."""

    utterances: list[str]
    starts: np.ndarray
    """(L + 1,) where each list begins in the flat arrays, and their length last."""
    acoustic: np.ndarray
    """(H,) log10."""
    words: np.ndarray
    """(H,) words of each hypothesis."""
    errors: np.ndarray
    """(H,) word errors against the utterance's reference."""
    reference_words: int
    forward: np.ndarray
    """(H,) the model's log10 score of each hypothesis (alone, without the n-gram model)."""
    word_model: np.ndarray | None = None
    """With an n-gram model: (N,) each scored word's log10 under the model, </s> included ..."""
    word_ngram: np.ndarray | None = None
    """... (N,) under the n-gram model ..."""
    word_owner: np.ndarray | None = None
    """... (N,) and the hypothesis it belongs to."""
    backward: np.ndarray | None = None
    """(H,) the backward model's log10 score of each hypothesis."""
    texts: list[str] | None = None
    """(H) each hypothesis' words, single-spaced."""
    references: list[str] | None = None
    """(L) each utterance's reference words."""

    @property
    def hypotheses(self) -> int:
        return len(self.acoustic)

    def lm(self, mix_weight: float | None, backward_weight: float | None) -> np.ndarray:
        """(H,) the LM score of every hypothesis at these weights."""
        forward = self.forward
        if mix_weight is not None and self.word_model is not None:
            mixed = mix_log10_array(self.word_model, self.word_ngram, mix_weight)
            forward = np.bincount(self.word_owner, weights=mixed, minlength=self.hypotheses)
        if backward_weight is None or self.backward is None:
            return forward
        # The same arithmetic on whole arrays as on one hypothesis' scores when rescoring with the flags.
        return interpolated(forward, self.backward, backward_weight)


@dataclass(frozen=True)
class Axes:
    """The grid: values of each weight (one value: held where the user gave it)."""

    lm_weights: tuple[float, ...]
    word_penalties: tuple[float, ...]
    mix_weights: tuple[float | None, ...] = (None,)
    backward_weights: tuple[float | None, ...] = (None,)

    @property
    def size(self) -> int:
        return len(self.lm_weights) * len(self.word_penalties) * len(self.mix_weights) * len(self.backward_weights)


@dataclass(frozen=True)
class Choice:
    """A point of the grid and the errors of the hypotheses it chooses."""

    lm_weight: float
    word_penalty: float
    mix_weight: float | None
    backward_weight: float | None
    errors: int

    def flags(self) -> str:
        """The point as the flags of ``rnnlm eval --nbest`` that rescore with it."""
        parts = [f"--lm-weight {shown(self.lm_weight)}", f"--word-penalty {shown(self.word_penalty)}"]
        if self.mix_weight is not None:
            parts.append(f"--lambda {shown(self.mix_weight)}")
        # Weight 0 is the forward model alone: rescored without --backward-model.
        if self.backward_weight:
            parts.append(f"--backward-weight {shown(self.backward_weight)}")
        return " ".join(parts)


def shown(value: float) -> str:
    """The shortest text that reads back as ``value`` exactly ("1.9", "5", "7.333333333333333")."""
    text = repr(value + 0.0)
    return text[:-2] if text.endswith(".0") else text


@dataclass
class Surface:
    """Errors at every point of a grid: (mix, backward, lm weight, penalty)."""

    axes: Axes
    errors: np.ndarray

    def best(self) -> Choice:
        """The point of fewest errors. Ties go to the point whose neighbours (the 3 x 3 block of LM
        weights and penalties around it, edges repeated) have the fewest errors in all, the middle of
        a flat valley rather than its rim; then to the penalty nearest 0; then to the smallest
        mixture weight, backward weight and LM weight, in that order."""
        errors = self.errors
        _, _, weights, penalties = errors.shape
        padded = np.pad(errors, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
        around = sum(padded[:, :, 1 + dw:1 + dw + weights, 1 + dp:1 + dp + penalties]
                     for dw in (-1, 0, 1) for dp in (-1, 0, 1))
        nearness = np.broadcast_to(np.abs(np.asarray(self.axes.word_penalties))[None, None, None, :], errors.shape)
        flat = np.lexsort((nearness.ravel(), around.ravel(), errors.ravel()))  # errors first
        return self.choice(*np.unravel_index(flat[0], errors.shape))

    def choice(self, m: int, b: int, w: int, p: int) -> Choice:
        a = self.axes
        return Choice(a.lm_weights[w], a.word_penalties[p], a.mix_weights[m], a.backward_weights[b],
                      int(self.errors[m, b, w, p]))

    def index(self, choice: Choice) -> tuple[int, int, int, int]:
        a = self.axes
        return (a.mix_weights.index(choice.mix_weight), a.backward_weights.index(choice.backward_weight),
                a.lm_weights.index(choice.lm_weight), a.word_penalties.index(choice.word_penalty))


class Chooser:
    """Picks each list's best hypothesis under given weights, for many penalties at once."""

    def __init__(self, lists: ScoredLists) -> None:
        lengths = np.diff(lists.starts)
        width = int(lengths.max())
        slots = np.arange(width)[None, :]  # (1, K)
        self._real = slots < lengths[:, None]  # (L, K)
        self._index = np.where(self._real, lists.starts[:-1, None] + slots, 0)  # (L, K) flat index
        self._acoustic = np.where(self._real, lists.acoustic[self._index], -np.inf)
        self._words = np.where(self._real, lists.words[self._index], 0)
        self._errors = np.where(self._real, lists.errors[self._index], 0)
        self._lists = lists

    def chosen(self, lm: np.ndarray, lm_weight: float, penalties: np.ndarray) -> np.ndarray:
        """(P, L) the flat index of each list's choice at each penalty."""
        lm_term = 0.0 if lm_weight == 0 else np.where(self._real, lm_weight * lm[self._index], 0.0)
        base = self._acoustic + lm_term  # (L, K); a padded slot stays -inf
        rows = max(1, _CELLS // max(base.size, 1))
        picks = []
        for start in range(0, len(penalties), rows):
            part = penalties[start:start + rows]
            totals = base[None] + part[:, None, None] * self._words[None]  # (P, L, K)
            # argmax takes the first of equal totals: the lowest rank. A list whose totals are
            # all -inf keeps its first hypothesis, as --nbest-best does.
            picks.append(np.argmax(totals, axis=2))
        slot = np.concatenate(picks)  # (P, L)
        return self._index[np.arange(self._index.shape[0]), slot]

    def errors(self, lm: np.ndarray, lm_weight: float, penalties: np.ndarray) -> np.ndarray:
        """(P,) the errors of the choices at each penalty."""
        return self._lists.errors[self.chosen(lm, lm_weight, penalties)].sum(axis=1)

    def oracle_errors(self) -> int:
        return int(np.where(self._real, self._errors, np.iinfo(np.int64).max).min(axis=1).sum())


def search(lists: ScoredLists, axes: Axes, chooser: Chooser | None = None) -> Surface:
    """The errors at every point of ``axes``."""
    chooser = chooser or Chooser(lists)
    penalties = np.asarray(axes.word_penalties, dtype=np.float64)
    errors = np.zeros((len(axes.mix_weights), len(axes.backward_weights), len(axes.lm_weights), len(penalties)),
                      dtype=np.int64)
    for m, mix_weight in enumerate(axes.mix_weights):
        for b, backward_weight in enumerate(axes.backward_weights):
            lm = lists.lm(mix_weight, backward_weight)
            for w, lm_weight in enumerate(axes.lm_weights):
                errors[m, b, w] = chooser.errors(lm, lm_weight, penalties)
    return Surface(axes, errors)


