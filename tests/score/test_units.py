"""The one ln(10) and the two perplexities, against numbers worked out by hand."""

import math

import pytest

from rnnlm_cli.units import LN10, perplexity, perplexity_log10


def test_ln10_turns_natural_logs_into_log10():
    assert LN10 == pytest.approx(2.302585092994046, abs=1e-15)
    assert math.log(1000.0) / LN10 == pytest.approx(3.0)


def test_perplexity_of_a_mean_loss_in_nats():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(50.0)) == pytest.approx(50.0)
    assert perplexity(699.0) == pytest.approx(math.e ** 699, rel=1e-12)


@pytest.mark.parametrize("loss", [700.0, 709.9, 1e6, math.inf, math.nan])
def test_perplexity_past_the_float_range_is_infinite_not_an_overflow(loss):
    assert perplexity(loss) == math.inf


def test_perplexity_log10_is_srilms_formula():
    # 3 events of log10 probability -1, -2 and -3 in all: 10 ** (6 / 3).
    assert perplexity_log10(-6.0, 3) == pytest.approx(100.0)
    assert perplexity_log10(0.0, 4) == 1.0
    assert perplexity_log10(-599.0, 2) == pytest.approx(10.0 ** 299.5, rel=1e-12)


def test_perplexity_log10_of_nothing_is_undefined_and_past_1e300_infinite():
    assert math.isnan(perplexity_log10(-3.0, 0))
    assert math.isnan(perplexity_log10(0.0, -1))
    assert perplexity_log10(-600.0, 2) == math.inf  # 10 ** 300: the cut, short of float's 1.8e308
    assert perplexity_log10(-math.inf, 5) == math.inf  # a probability-zero event
    assert perplexity_log10(math.nan, 5) == math.inf
