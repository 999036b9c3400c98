"""Linear interpolation in log10 space, and the EM weight against grid search and known truths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rnnlm_cli.score.mixing import fit_weight, mix_log10, mix_log10_array

INF = math.inf


@pytest.mark.parametrize("rnn, ngram, weight", [
    (-1.0, -2.0, 0.5), (-3.5, -0.2, 0.3), (-0.01, -7.0, 0.9), (-2.0, -2.0, 0.25),
])
def test_mix_matches_direct_sum(rnn, ngram, weight):
    expected = math.log10(weight * 10 ** rnn + (1 - weight) * 10 ** ngram)
    assert mix_log10(rnn, ngram, weight) == pytest.approx(expected, abs=1e-12)


def test_mix_of_very_small_probabilities_does_not_underflow():
    # 10**-400 is 0 in floats; factor it out: -400 + log10(w + (1 - w) / 10)
    expected = -400 + math.log10(0.3 + 0.7 / 10)
    assert mix_log10(-400.0, -401.0, 0.3) == pytest.approx(expected, abs=1e-12)
    assert mix_log10(-400.0, -9000.0, 0.5) == pytest.approx(-400 + math.log10(0.5), abs=1e-12)


def test_mix_with_minus_infinity():
    assert mix_log10(-INF, -2.0, 0.25) == pytest.approx(-2.0 + math.log10(0.75))
    assert mix_log10(-2.0, -INF, 0.25) == pytest.approx(-2.0 + math.log10(0.25))
    assert mix_log10(-INF, -INF, 0.5) == -INF


def test_weight_one_or_zero_returns_that_side_exactly():
    assert mix_log10(-1.234567, -INF, 1.0) == -1.234567
    assert mix_log10(-1.234567, -0.5, 1.0) == -1.234567
    assert mix_log10(-INF, -0.7654321, 0.0) == -0.7654321
    assert mix_log10(-0.1, -0.7654321, 0.0) == -0.7654321
    with pytest.raises(ValueError):
        mix_log10(-1.0, -1.0, 1.5)


def test_array_mix_agrees_with_scalar():
    rnn = np.array([-1.0, -3.5, -INF, -2.0, -400.0, -INF])
    ngram = np.array([-2.0, -0.2, -2.0, -INF, -401.0, -INF])
    for weight in (0.0, 0.3, 1.0):
        mixed = mix_log10_array(rnn, ngram, weight)
        expected = [mix_log10(a, b, weight) for a, b in zip(rnn, ngram)]
        assert mixed.dtype == np.float64
        np.testing.assert_allclose(mixed, expected, rtol=0, atol=1e-12)
    assert mix_log10_array(rnn, ngram, 1.0).tolist() == rnn.tolist()


def _grid_optimum(rnn, ngram):
    grid = np.linspace(0.0, 1.0, 20_001)[1:-1]  # (G,)
    p, q = 10.0 ** rnn, 10.0 ** ngram  # (N,)
    likelihood = np.log(grid[:, None] * p + (1 - grid[:, None]) * q).sum(axis=1)  # (G,)
    return grid[np.argmax(likelihood)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_em_weight_matches_grid_search(seed):
    rng = np.random.default_rng(seed)
    rnn = -rng.uniform(0.1, 4.0, size=300)
    ngram = -rng.uniform(0.1, 4.0, size=300)
    fit = fit_weight(rnn, ngram)
    best = _grid_optimum(rnn, ngram)
    assert 0.05 < best < 0.95  # an interior optimum, or the comparison says little
    assert fit.converged
    assert fit.weight == pytest.approx(best, abs=1e-3)


def _sample(seed, rnn_share, size):
    """Tokens drawn from rnn_share * P + (1 - rnn_share) * Q, scored by P (the RNN) and Q (the n-gram)."""
    rng = np.random.default_rng(seed)
    vocab = 30
    p = rng.dirichlet(np.full(vocab, 0.5))
    q = rng.dirichlet(np.full(vocab, 0.5))
    from_p = rng.random(size) < rnn_share
    tokens = np.where(from_p, rng.choice(vocab, size, p=p), rng.choice(vocab, size, p=q))
    return np.log10(p[tokens]), np.log10(q[tokens])


def test_weight_near_one_when_the_rnn_is_the_truth():
    rnn, ngram = _sample(3, 1.0, 5000)
    fit = fit_weight(rnn, ngram)
    assert fit.weight > 0.97
    assert fit.mix_ppl <= fit.ngram_ppl and fit.rnn_ppl < fit.ngram_ppl


def test_weight_near_zero_when_the_ngram_is_the_truth():
    rnn, ngram = _sample(4, 0.0, 5000)
    assert fit_weight(rnn, ngram).weight < 0.03


def test_weight_recovers_a_true_mixture():
    rnn, ngram = _sample(5, 0.3, 20_000)
    fit = fit_weight(rnn, ngram)
    assert fit.weight == pytest.approx(0.3, abs=0.03)
    assert fit.mix_ppl < min(fit.rnn_ppl, fit.ngram_ppl)


def test_perplexities_by_hand():
    rnn = np.array([-1.0, -3.0])
    ngram = np.array([-2.0, -2.0])
    fit = fit_weight(rnn, ngram)
    assert fit.rnn_ppl == pytest.approx(100.0)  # 10 ** -mean(-1, -3)
    assert fit.ngram_ppl == pytest.approx(100.0)
    mixed = [math.log10(fit.weight * 10 ** a + (1 - fit.weight) * 10 ** b) for a, b in zip(rnn, ngram)]
    assert fit.mix_ppl == pytest.approx(10 ** -np.mean(mixed))


def test_minus_infinity_on_one_side_is_fine():
    # L(w) = log(w * 0.1) + log((1 - w) * 0.1): maximal at w = 1/2, reached in one EM step.
    fit = fit_weight(np.array([-INF, -1.0]), np.array([-1.0, -INF]))
    assert fit.weight == 0.5 and fit.iterations == 1
    assert fit.rnn_ppl == INF and fit.ngram_ppl == INF
    assert fit.mix_ppl == pytest.approx(20.0)  # each word gets 0.5 * 0.1


def test_one_model_alone_explains_everything():
    # The n-gram model gives every word probability 0: all weight goes to the RNN, in one step.
    fit = fit_weight(np.array([-1.0, -2.0]), np.array([-INF, -INF]), start=0.2)
    assert (fit.weight, fit.iterations, fit.converged) == (1.0, 1, True)
    assert fit.mix_ppl == pytest.approx(fit.rnn_ppl)


@pytest.mark.parametrize("rnn, ngram", [
    ([-1.0, -INF], [-1.0, -INF]),
    ([-1.0, -1.0], [-1.0]),
    ([], []),
    ([-1.0, float("nan")], [-1.0, -1.0]),
])
def test_unusable_scores_are_refused(rnn, ngram):
    with pytest.raises(ValueError):
        fit_weight(np.array(rnn), np.array(ngram))


def test_start_must_be_inside():
    with pytest.raises(ValueError):
        fit_weight(np.array([-1.0]), np.array([-2.0]), start=1.0)
