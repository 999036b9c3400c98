"""Tuning n-best weights by WER: word errors by hand, the grid search against a brute-force
loop over the same grid, and the axes it lays out for itself."""

from __future__ import annotations

import itertools
import math

import jiwer
import numpy as np
import pytest

from rnnlm_cli.score.nbest import combined, interpolated
from rnnlm_cli.score.mixing import mix_log10
from rnnlm_cli.score.tuning import (Axes, Chooser, ScoredLists, TuneRequest, lm_weight_axis, nice_step, penalty_axis,
                                    search, tune)
from rnnlm_cli.score.wer import corpus_wer, read_references, word_errors


# ------------------------------------------------------------------ word errors


def test_word_errors_by_hand():
    references = ["the dog runs", "a cat sleeps .", "the dog runs", "one", "x y"]
    hypotheses = ["the dog runs", "a cats sleeps", "dog runs fast now", "", "x y z"]
    # equal; 1 substitution + 1 deletion; 1 deletion + 2 insertions; 1 deletion; 1 insertion
    assert word_errors(references, hypotheses) == [0, 2, 3, 1, 1]


def test_an_empty_reference_makes_every_hypothesis_word_an_insertion():
    assert word_errors(["", "a b", ""], ["x y", "", ""]) == [2, 2, 0]
    assert corpus_wer(["", "a b"], ["x y", "a"]) == pytest.approx(3 / 2)


def test_corpus_wer_is_errors_over_reference_words():
    references = ["the dog runs", "a cat sleeps ."]
    hypotheses = ["the dog run", "a cat"]
    assert corpus_wer(references, hypotheses) == pytest.approx(3 / 7)
    assert corpus_wer(references, hypotheses) == pytest.approx(jiwer.wer(references, hypotheses))
    assert sum(word_errors(references, hypotheses)) == 3


def test_references_are_read_in_kaldis_layout(tmp_path):
    path = tmp_path / "text"
    path.write_text("utt1 the  dog runs\n\nutt2\nutt3 a cat\n", encoding="utf-8")
    assert read_references(str(path)) == {"utt1": "the dog runs", "utt2": "", "utt3": "a cat"}


def test_a_reference_given_twice_is_refused(tmp_path):
    from rnnlm_cli.errors import DataError

    path = tmp_path / "text"
    path.write_text("utt1 a\nutt1 b\n", encoding="utf-8")
    with pytest.raises(DataError, match="text:2: utterance 'utt1' is given twice"):
        read_references(str(path))


# ------------------------------------------------------------------ the search


def random_lists(seed: int, lists: int = 12, mix: bool = False, backward: bool = False) -> ScoredLists:
    """Random scores, with ties (integer acoustic scores) and lists of different lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 6, size=lists)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    h = int(starts[-1])
    words = rng.integers(0, 6, size=h)
    scored = ScoredLists([f"u{i}" for i in range(lists)], starts, rng.integers(-8, 0, size=h).astype(float), words,
                         rng.integers(0, 5, size=h), reference_words=40, forward=-rng.random(h) * 10)
    if mix:
        counts = words + 1  # each word and </s>
        scored.word_owner = np.repeat(np.arange(h), counts)
        scored.word_model = -rng.random(len(scored.word_owner)) * 3
        scored.word_ngram = -rng.random(len(scored.word_owner)) * 3
        scored.forward = np.bincount(scored.word_owner, weights=scored.word_model, minlength=h)
    if backward:
        scored.backward = -rng.random(h) * 10
    return scored


def brute_force_errors(lists: ScoredLists, mix_weight, backward_weight, lm_weight, penalty) -> int:
    """Each list's best total by a plain loop (ties: the lowest rank), as --nbest-best picks."""
    total_errors = 0
    for start, stop in zip(lists.starts[:-1], lists.starts[1:]):
        best = None
        for index in range(start, stop):
            forward = lists.forward[index]
            if mix_weight is not None:
                owned = lists.word_owner == index
                forward = sum(mix_log10(m, n, mix_weight)
                              for m, n in zip(lists.word_model[owned], lists.word_ngram[owned]))
            lm = forward if backward_weight is None else interpolated(forward, lists.backward[index], backward_weight)
            total = combined(lists.acoustic[index], lm, lm_weight, penalty, int(lists.words[index]))
            if best is None or total > best[0]:
                best = (total, index)
        total_errors += int(lists.errors[best[1]])
    return total_errors


@pytest.mark.parametrize("mix,backward", [(False, False), (True, False), (False, True), (True, True)])
def test_the_grid_matches_a_brute_force_loop_at_every_point(mix, backward):
    lists = random_lists(seed=3 + mix + 2 * backward, mix=mix, backward=backward)
    axes = Axes((0.0, 0.5, 1.0, 2.0), (-1.0, 0.0, 0.5), (0.0, 0.4, 1.0) if mix else (None,),
                (0.0, 0.3, 1.0) if backward else (None,))
    surface = search(lists, axes)
    for (m, mw), (b, bw), (w, lw), (p, pen) in itertools.product(*(enumerate(a) for a in (
            axes.mix_weights, axes.backward_weights, axes.lm_weights, axes.word_penalties))):
        assert surface.errors[m, b, w, p] == brute_force_errors(lists, mw, bw, lw, pen), (mw, bw, lw, pen)


def test_the_best_point_is_the_brute_force_minimum_with_the_documented_tie_order():
    lists = random_lists(seed=11, mix=True, backward=True)
    axes = Axes((0.0, 1.0, 3.0), (-0.5, 0.0, 0.5), (0.2, 0.8), (0.0, 0.5))
    best = search(lists, axes).best()
    weights, penalties = axes.lm_weights, axes.word_penalties
    errors = {(mi, bi, wi, pi): brute_force_errors(lists, mw, bw, lw, pen)
              for (mi, mw), (bi, bw), (wi, lw), (pi, pen) in itertools.product(*(enumerate(a) for a in (
                  axes.mix_weights, axes.backward_weights, weights, penalties)))}

    def around(mi, bi, wi, pi):
        # The 3 x 3 block of LM weights and penalties, an index past an edge read as the edge.
        clamp = lambda i, n: min(max(i, 0), n - 1)  # noqa: E731
        return sum(errors[mi, bi, clamp(wi + dw, len(weights)), clamp(pi + dp, len(penalties))]
                   for dw in (-1, 0, 1) for dp in (-1, 0, 1))

    key = min(errors, key=lambda k: (errors[k], around(*k), abs(penalties[k[3]]), k))
    mi, bi, wi, pi = key
    assert (best.errors, best.mix_weight, best.backward_weight, best.lm_weight, best.word_penalty) == (
        errors[key], axes.mix_weights[mi], axes.backward_weights[bi], weights[wi], penalties[pi])


def test_acoustic_only_and_oracle_by_hand():
    # Two lists: u0 (acoustic best is rank 2 with 3 errors; oracle 0), u1 (tie on acoustic: rank 1 wins).
    lists = ScoredLists(["u0", "u1"], np.array([0, 3, 5]), np.array([-5.0, -1.0, -7.0, -2.0, -2.0]),
                        np.array([3, 3, 3, 2, 2]), np.array([0, 3, 1, 2, 1]), reference_words=5,
                        forward=np.array([-1.0, -9.0, -1.0, -4.0, -1.0]),
                        texts=["a b c", "a x y", "a b d", "p q", "p r"], references=["a b c", "p s"])
    result = tune(lists, TuneRequest(lm_range=(0.0, 2.0), penalty_range=(-1.0, 1.0), points=5))
    assert result.acoustic_errors == 3 + 2
    assert result.oracle_errors == 0 + 1
    assert result.transcripts(None) == ["a x y", "p q"]
    # At LM weight 1: u0 totals -6, -10, -8 (rank 1, 0 errors); u1 -6, -3 (rank 2, 1 error).
    assert result.best.errors == 1
    assert result.wer(result.best.errors) == pytest.approx(1 / 5)


def test_a_held_weight_is_not_searched():
    lists = random_lists(seed=5, backward=True)
    result = tune(lists, TuneRequest(lm_weight=1.5, backward_weight=0.3, points=5))
    assert result.surface.axes.lm_weights == (1.5,)
    assert result.surface.axes.backward_weights == (0.3,)
    assert (result.best.lm_weight, result.best.backward_weight) == (1.5, 0.3)
    assert result.forward_best is None  # the forward model alone was not on the grid


def test_the_forward_row_is_the_best_at_backward_weight_zero():
    lists = random_lists(seed=8, backward=True)
    result = tune(lists, TuneRequest(points=7))
    zero = result.surface.axes.backward_weights.index(0.0)
    assert result.forward_best.backward_weight == 0.0
    assert result.forward_best.errors == result.surface.errors[:, zero].min()
    assert result.best.errors <= result.forward_best.errors


def test_an_automatic_axis_widens_while_the_best_lies_near_its_edge():
    # Each list: rank 2 is right but needs an LM weight above 3.05; the spreads (rank 4's 1000
    # on both sides) put the scale at 1, so the first axis ends at 8 with the valley in its top quarter.
    acoustic, forward, errors = [], [], []
    for _ in range(3):
        acoustic += [0.0, -30.0, -1.0, -1000.0]
        forward += [-10.0, 0.0, -9.5, -1000.0]
        errors += [2, 0, 1, 3]
    lists = ScoredLists(["a", "b", "c"], np.array([0, 4, 8, 12]), np.array(acoustic), np.array([1] * 12),
                        np.array(errors), reference_words=3, forward=np.array(forward))
    result = tune(lists, TuneRequest(points=5, word_penalty=0.0))
    assert result.coarse.axes.lm_weights[-1] > 8.0  # widened
    assert result.best.errors == 0 and result.best.lm_weight > 3.05
    assert not result.notes
    ranged = tune(lists, TuneRequest(points=5, lm_range=(0.0, 1.0), word_penalty=0.0))
    assert ranged.surface.axes.lm_weights == (0.0, 0.25, 0.5, 0.75, 1.0)  # a given range is kept, not refined


def test_the_automatic_search_finds_a_weight_far_from_its_first_guess():
    # Kaldi-like lists: acoustic costs in thousands, and an LM weight that pays far beyond the
    # first axis the spreads lay out (0 ... 8 x their ratio). A dense brute-force grid is the yardstick.
    rng = np.random.default_rng(7)
    lists_n, size = 150, 8
    errors = rng.integers(0, 6, size=lists_n * size)
    acoustic = -(2000 + 40 * errors + rng.normal(0, 120, size=errors.size))
    forward = -(20 + 3 * errors + rng.normal(0, 4, size=errors.size))
    words = rng.integers(8, 12, size=errors.size)
    lists = ScoredLists([str(i) for i in range(lists_n)], np.arange(lists_n + 1) * size, acoustic, words, errors,
                        reference_words=1000, forward=forward)
    result = tune(lists, TuneRequest())
    steps = [np.diff(surface.axes.lm_weights).max() for surface in (result.coarse, result.surface)]
    assert steps[1] < steps[0]  # the finer pass around the coarse best
    dense = search(lists, Axes(tuple(np.arange(0, 120.5, 1.0)), (0.0,) + tuple(np.arange(-40, 41, 4.0))))
    assert result.best.errors <= dense.best().errors


def test_a_best_on_the_edge_of_a_given_range_is_said():
    # Weights 0, 5, 10: rank 2 (the right one) wins only at 10, where its total beats rank 1's.
    lists = ScoredLists(["a"], np.array([0, 2]), np.array([0.0, -5.0]), np.array([1, 1]), np.array([1, 0]),
                        reference_words=1, forward=np.array([-1.0, 0.0]))
    result = tune(lists, TuneRequest(points=3, lm_range=(0.0, 10.0), word_penalty=0.0))
    assert (result.best.lm_weight, result.best.errors) == (10.0, 0)
    assert any("largest tried" in note for note in result.notes)
    # Rank 2 right at 5 only: rank 1 wins at 0, rank 3 at 10.
    lists = ScoredLists(["a"], np.array([0, 3]), np.array([0.0, -3.0, -5.5]), np.array([1, 1, 1]),
                        np.array([1, 0, 1]), reference_words=1, forward=np.array([-1.0, -0.3, 0.0]))
    result = tune(lists, TuneRequest(points=3, lm_range=(0.0, 10.0), word_penalty=0.0))
    assert (result.best.lm_weight, result.best.errors) == (5.0, 0)
    assert result.notes == []


def test_axes_are_short_numbers():
    assert nice_step(3.7, 20) == 0.2
    assert nice_step(100, 10) == 10
    assert lm_weight_axis(4.0, 5) == (0.0, 1.0, 2.0, 3.0, 4.0)
    assert penalty_axis(2.0, 5) == (-2.0, -1.0, 0.0, 1.0, 2.0)
    axis = lm_weight_axis(0.37, 21)
    # Each value a multiple of the step 0.02, printed with at most two decimals.
    assert all(len(repr(v).split(".")[1]) <= 2 and round(v / 0.02, 6).is_integer() for v in axis)
    assert 0.0 in penalty_axis(0.37, 21)


def test_no_point_of_the_grid_is_nan_with_a_zero_probability_hypothesis():
    lists = ScoredLists(["u"], np.array([0, 2]), np.array([-1.0, -2.0]), np.array([1, 1]), np.array([1, 0]),
                        reference_words=1, forward=np.array([-math.inf, -1.0]))
    chooser = Chooser(lists)
    # Weight 0 drops the LM term (-inf * 0 would be NaN): the acoustic best, rank 1, is chosen.
    assert chooser.chosen(lists.forward, 0.0, np.array([0.0])).tolist() == [[0]]
    assert chooser.chosen(lists.forward, 1.0, np.array([0.0])).tolist() == [[1]]
