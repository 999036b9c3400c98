"""Choosing the n-best weights by word error rate: a grid search over scores computed once.

Every hypothesis is scored once (:mod:`rnnlm_cli.score.tuning_data`); a point of the grid
then only re-adds numbers. The total of a hypothesis at a point is

    acoustic + lm_weight * lm + word_penalty * words                (all log10)
    lm = (1 - b) * forward + b * backward                           (b: --backward-weight)
    forward = sum over words of log10(λ P_model + (1 - λ) P_ngram)   (λ: --lambda, with --mix-lm)

as :func:`rnnlm_cli.score.nbest.combined` adds it when the lists are rescored with those
flags. Each utterance's choice is its best total, ties to the lowest rank, as
``--nbest-best`` picks; the WER of a point is the errors of the chosen hypotheses over the
reference words (:mod:`rnnlm_cli.score.wer`).

The LM weight and word penalty axes, unless given, are laid out from the lists themselves:
the weight at which the LM's spread within a list matches the acoustic spread (the median
over lists) sets the scale, and an axis whose best point lies on its edge is widened (at
most :data:`WIDENINGS` times), so the search neither needs the user to know the acoustic
scale (Kaldi's acoustic costs want weights near 10, SRILM lists scaled by the decoder near
1) nor stops at a border it drew itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnlm_cli.score.mixing import mix_log10_array
from rnnlm_cli.score.nbest import interpolated
from rnnlm_cli.score.scoring_config import TUNE_POINTS

POINTS = TUNE_POINTS
SHARES = tuple(round(0.1 * k, 1) for k in range(11))
"""The values tried for the mixture weight and the backward weight."""
WIDENINGS = 6
"""Times an automatic axis is doubled when the best point lies on its edge (up to 64 times its first reach)."""
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
        # Element by element as nbest.interpolated adds them, so a rescoring with the flags agrees.
        return np.fromiter((interpolated(f, g, backward_weight) for f, g in zip(forward, self.backward)),
                           dtype=np.float64, count=self.hypotheses)


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
        parts = [f"--lm-weight {_shown(self.lm_weight)}", f"--word-penalty {_shown(self.word_penalty)}"]
        if self.mix_weight is not None:
            parts.append(f"--lambda {_shown(self.mix_weight)}")
        # Weight 0 is the forward model alone: rescored without --backward-model.
        if self.backward_weight:
            parts.append(f"--backward-weight {_shown(self.backward_weight)}")
        return " ".join(parts)


def _shown(value: float) -> str:
    return f"{value + 0.0:g}"


@dataclass
class Surface:
    """Errors at every point of a grid: (mix, backward, lm weight, penalty)."""

    axes: Axes
    errors: np.ndarray

    def best(self) -> Choice:
        """The point of fewest errors. Ties go to the penalty nearest 0, then to the smallest
        mixture weight, backward weight and LM weight, in that order (a negative penalty before
        the positive one of the same size)."""
        order = np.abs(np.asarray(self.axes.word_penalties))
        keys = np.broadcast_to(order[None, None, None, :], self.errors.shape)
        flat = np.lexsort((keys.ravel(), self.errors.ravel()))  # errors first, |penalty| second
        m, b, w, p = np.unravel_index(flat[0], self.errors.shape)
        return self.choice(m, b, w, p)

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
        return np.take_along_axis(self._index[None].repeat(len(slot), 0), slot[:, :, None], 2)[:, :, 0]

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


def lm_scale(lists: ScoredLists) -> float:
    """The LM weight at which a list's LM spread matches its acoustic spread: the median over
    lists where both spread (1.0 when none do)."""
    ratios = []
    for start, stop in zip(lists.starts[:-1], lists.starts[1:]):
        acoustic, lm = lists.acoustic[start:stop], lists.forward[start:stop]
        acoustic, lm = acoustic[np.isfinite(acoustic)], lm[np.isfinite(lm)]
        if len(acoustic) > 1 and len(lm) > 1 and np.ptp(lm) > 0 and np.ptp(acoustic) > 0:
            ratios.append(np.ptp(acoustic) / np.ptp(lm))
    return float(np.median(ratios)) if ratios else 1.0


def word_cost(lists: ScoredLists) -> float:
    """The median of the LM's -log10 per word over hypotheses with words (1.0 when none)."""
    per_word = -lists.forward[lists.words > 0] / lists.words[lists.words > 0]
    per_word = per_word[np.isfinite(per_word)]
    return float(np.median(per_word)) if len(per_word) else 1.0


def nice_step(span: float, steps: int) -> float:
    """A step of 1, 2 or 5 times a power of ten, at least ``span / steps``: printed grid values stay short."""
    raw = max(span / steps, 1e-12)
    power = 10.0 ** math.floor(math.log10(raw))
    return next(k * power for k in (1, 2, 5, 10) if k * power >= raw * (1 - 1e-9))


def lm_weight_axis(top: float, points: int) -> tuple[float, ...]:
    step = nice_step(top, points - 1)
    return tuple(_round(step * k, step) for k in range(points))


def penalty_axis(reach: float, points: int) -> tuple[float, ...]:
    half = points // 2
    step = nice_step(reach, max(half, 1))
    return tuple(_round(step * k, step) for k in range(-half, points - half))


def span_axis(low: float, high: float, points: int) -> tuple[float, ...]:
    """``points`` values from ``low`` to ``high``, both included (one value when they are equal)."""
    if points == 1 or low == high:
        return (low,)
    return tuple(float(v) for v in np.linspace(low, high, points))


def _round(value: float, step: float) -> float:
    decimals = max(0, -math.floor(math.log10(step)) + 1)
    return round(value, decimals) + 0.0


@dataclass(frozen=True)
class TuneRequest:
    """What to search: a weight given is held at its value, the others are searched."""

    points: int = POINTS
    """Values per automatic or ranged axis (LM weight, word penalty)."""
    lm_weight: float | None = None
    lm_range: tuple[float, float] | None = None
    word_penalty: float | None = None
    penalty_range: tuple[float, float] | None = None
    mix_weight: float | None = None
    backward_weight: float | None = None


@dataclass
class TuningResult:
    """The search's outcome, and the reference points it is judged against."""

    lists: ScoredLists
    surface: Surface
    best: Choice
    forward_best: Choice | None
    """With a backward model searched from weight 0: the best point of the forward model alone."""
    acoustic_errors: int
    """Errors of each list's best acoustic score (ties: lowest rank)."""
    oracle_errors: int
    """Errors of each list's fewest-error hypothesis."""
    notes: list[str]

    def wer(self, errors: int) -> float:
        return errors / self.lists.reference_words

    def transcripts(self, choice: Choice | None) -> list[str]:
        """The hypotheses ``choice`` picks (None: the acoustic scores alone), one per utterance."""
        lists = self.lists
        chooser = Chooser(lists)
        if choice is None:
            picked = chooser.chosen(np.zeros(lists.hypotheses), 0.0, np.zeros(1))[0]
        else:
            lm = lists.lm(choice.mix_weight, choice.backward_weight)
            picked = chooser.chosen(lm, choice.lm_weight, np.array([choice.word_penalty]))[0]
        return [lists.texts[index] for index in picked]


def tune(lists: ScoredLists, request: TuneRequest = TuneRequest()) -> TuningResult:
    """Search the weights of ``request`` on ``lists`` by WER."""
    chooser = Chooser(lists)
    top = 8.0 * lm_scale(lists)
    # A penalty of the LM's cost per word at the largest weight undoes its preference for short hypotheses.
    reach = top * word_cost(lists)
    mix = _share_axis(lists.word_model is not None, request.mix_weight)
    backward = _share_axis(lists.backward is not None, request.backward_weight)
    for widening in range(WIDENINGS + 1):
        axes = Axes(_axis(request.lm_weight, request.lm_range, lambda: lm_weight_axis(top, request.points),
                          request.points),
                    _axis(request.word_penalty, request.penalty_range,
                          lambda: penalty_axis(reach, request.points), request.points), mix, backward)
        surface = search(lists, axes, chooser)
        best = surface.best()
        wider_lm = _automatic(request.lm_weight, request.lm_range) and best.lm_weight == axes.lm_weights[-1] > 0
        wider_penalty = (_automatic(request.word_penalty, request.penalty_range)
                         and best.word_penalty in (axes.word_penalties[0], axes.word_penalties[-1])
                         and len(axes.word_penalties) > 1)
        if widening == WIDENINGS or not (wider_lm or wider_penalty):
            break
        top, reach = top * (2.0 if wider_lm else 1.0), reach * (2.0 if wider_penalty else 1.0)
    zero = chooser.errors(np.zeros(lists.hypotheses), 0.0, np.zeros(1))
    notes = _edge_notes(surface, best)
    if len(backward) > 1 and best.backward_weight == 0.0:
        notes.append("the backward model lowered no WER on these lists: rescore without --backward-model")
    return TuningResult(lists, surface, best, _forward_best(surface), int(zero[0]), chooser.oracle_errors(), notes)


def _share_axis(present: bool, held: float | None) -> tuple[float | None, ...]:
    if not present:
        return (None,)
    return (held,) if held is not None else SHARES


def _automatic(held: float | None, span: tuple[float, float] | None) -> bool:
    return held is None and span is None


def _axis(held: float | None, span: tuple[float, float] | None, automatic, points: int) -> tuple[float, ...]:
    if held is not None:
        return (held,)
    if span is not None:
        return span_axis(span[0], span[1], points)
    return automatic()


def _forward_best(surface: Surface) -> Choice | None:
    """The best point with the backward weight at 0, when the backward weight was searched."""
    axes = surface.axes
    if len(axes.backward_weights) < 2 or 0.0 not in axes.backward_weights:
        return None
    b = axes.backward_weights.index(0.0)
    alone = Axes(axes.lm_weights, axes.word_penalties, axes.mix_weights, (0.0,))
    return Surface(alone, surface.errors[:, b:b + 1]).best()


def _edge_notes(surface: Surface, best: Choice) -> list[str]:
    """What the user should hear of: a best point on an edge the search could not move."""
    axes, notes = surface.axes, []
    weights, penalties = axes.lm_weights, axes.word_penalties
    if len(weights) > 1 and best.lm_weight == weights[-1]:
        notes.append(f"the best LM weight, {_shown(best.lm_weight)}, is the largest tried: "
                     f"a wider --tune-lm-weights may find a better one")
    if len(penalties) > 1 and best.word_penalty in (penalties[0], penalties[-1]):
        notes.append(f"the best word penalty, {_shown(best.word_penalty)}, is at the edge of those tried: "
                     f"a wider --tune-word-penalties may find a better one")
    return notes
