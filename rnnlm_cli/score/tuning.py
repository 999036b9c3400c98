"""Choosing the n-best weights by word error rate: the grid laid out, searched
(:mod:`rnnlm_cli.score.tuning_grid`) and read.

Every hypothesis is scored once (:mod:`rnnlm_cli.score.tuning_data`); a point of the grid
then only re-adds numbers; the WER of a point is the errors of the chosen hypotheses over the
reference words (:mod:`rnnlm_cli.score.wer`).

The LM weight and word penalty axes, unless given, are laid out from the lists themselves:
the weight at which the LM's spread within a list matches the acoustic spread (the median
over lists) sets the scale. An axis whose best point lies in its outer quarter is widened (at
most :data:`WIDENINGS` times), then a finer grid is searched around the best, so the search
neither needs the user to know the acoustic scale (Kaldi's unscaled acoustic costs want
weights near 10 or more, SRILM lists scaled by the decoder near 1) nor stops at a border it
drew itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rnnlm_cli.score.scoring_config import TUNE_POINTS
from rnnlm_cli.score.tuning_grid import SHARES, Axes, Choice, Chooser, ScoredLists, Surface, search, shown

__all__ = ["POINTS", "SHARES", "Axes", "Choice", "Chooser", "ScoredLists", "Surface", "TuneRequest", "TuningResult",
           "lm_scale", "lm_weight_axis", "nice_step", "penalty_axis", "search", "span_axis", "tune", "word_cost"]

POINTS = TUNE_POINTS
WIDENINGS = 6
"""Times an automatic axis is doubled while the best point lies in its outer quarter (up to 64 times its first reach)."""


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
    coarse: Surface | None = None
    """The first, wider grid (``surface`` is the finer one around its best, where there is one)."""

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
    """Search the weights of ``request`` on ``lists`` by WER: a coarse grid, widened while its best
    lies near an edge, then a finer one around that best (automatic axes only)."""
    chooser = Chooser(lists)
    mix = _share_axis(lists.word_model is not None, request.mix_weight)
    backward = _share_axis(lists.backward is not None, request.backward_weight)
    coarse = _coarse(lists, request, chooser, mix, backward)
    surface = _refined(lists, request, chooser, coarse) or coarse
    best = surface.best()
    # The fine grid holds the coarse best where its step divides the coarse one; with very few
    # points it may not, and the coarse best then stands.
    if coarse.best().errors < best.errors:
        surface, best = coarse, coarse.best()
    zero = chooser.errors(np.zeros(lists.hypotheses), 0.0, np.zeros(1))
    notes = _edge_notes(coarse, best)
    if len(backward) > 1 and best.backward_weight == 0.0:
        notes.append("the backward model lowered no WER on these lists: rescore without --backward-model")
    return TuningResult(lists, surface, best, _forward_best(surface), int(zero[0]), chooser.oracle_errors(), notes,
                        coarse=coarse)


def _coarse(lists: ScoredLists, request: TuneRequest, chooser: Chooser, mix, backward) -> Surface:
    """The first grid: automatic axes from the lists' spreads, doubled while the best lies in
    their outer quarter (the LM weight's top, either end of the penalty's)."""
    top = 8.0 * lm_scale(lists)
    # A penalty of the LM's cost per word at the largest weight undoes its preference for short hypotheses.
    reach = top * word_cost(lists)
    widenings = 0
    while True:
        axes = Axes(_axis(request.lm_weight, request.lm_range, lambda: lm_weight_axis(top, request.points),
                          request.points),
                    _axis(request.word_penalty, request.penalty_range,
                          lambda: penalty_axis(reach, request.points), request.points), mix, backward)
        surface = search(lists, axes, chooser)
        _, _, w, p = surface.index(surface.best())
        last_w, last_p = len(axes.lm_weights) - 1, len(axes.word_penalties) - 1
        wider_lm = _automatic(request.lm_weight, request.lm_range) and w >= 0.75 * last_w and axes.lm_weights[w] > 0
        wider_penalty = _automatic(request.word_penalty, request.penalty_range) and not (
            0.25 * last_p < p < 0.75 * last_p)
        if widenings == WIDENINGS or not (wider_lm or wider_penalty):
            return surface
        widenings += 1
        top, reach = top * (2.0 if wider_lm else 1.0), reach * (2.0 if wider_penalty else 1.0)


def _refined(lists: ScoredLists, request: TuneRequest, chooser: Chooser, coarse: Surface) -> Surface | None:
    """A grid of ``request.points`` values per automatic axis over two coarse steps each side of
    the coarse best (None when no axis is automatic)."""
    axes, best = coarse.axes, coarse.best()
    lm_auto = _automatic(request.lm_weight, request.lm_range) and len(axes.lm_weights) > 1
    penalty_auto = _automatic(request.word_penalty, request.penalty_range) and len(axes.word_penalties) > 1
    if not (lm_auto or penalty_auto):
        return None
    weights = (_around(best.lm_weight, axes.lm_weights[1] - axes.lm_weights[0], request.points, low=0.0)
               if lm_auto else axes.lm_weights)
    penalties = (_around(best.word_penalty, axes.word_penalties[1] - axes.word_penalties[0], request.points)
                 if penalty_auto else axes.word_penalties)
    return search(lists, Axes(weights, penalties, axes.mix_weights, axes.backward_weights), chooser)


def _around(centre: float, coarse_step: float, points: int, low: float | None = None) -> tuple[float, ...]:
    """``points`` values from two coarse steps below ``centre`` on, in a short step that divides the coarse one."""
    step = nice_step(4.0 * coarse_step, points - 1)
    start = math.floor((centre - 2.0 * coarse_step) / step + 1e-9) * step
    if low is not None:
        start = max(start, low)
    return tuple(_round(start + step * k, step) for k in range(points))


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
        notes.append(f"the best LM weight, {shown(best.lm_weight)}, is the largest tried: "
                     f"a wider --tune-lm-weights may find a better one")
    if len(penalties) > 1 and best.word_penalty in (penalties[0], penalties[-1]):
        notes.append(f"the best word penalty, {shown(best.word_penalty)}, is at the edge of those tried: "
                     f"a wider --tune-word-penalties may find a better one")
    return notes
