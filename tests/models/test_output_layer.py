"""--adaptive-softmax as token counts, shares of the vocabulary or auto: the cutoffs each form gives."""

import numpy as np
import pytest

from rnnlm_cli.errors import UsageError
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.output_layer import MIN_VOCAB, check_spec, choose_cutoffs, cutoffs_for, token_counts


@pytest.mark.parametrize("spec", ["", "auto", "2000,10000", "3", "3%,15%,45%", "0.5%,2.5%", " 10, 20 "])
def test_the_three_forms_are_accepted(spec):
    check_spec(spec)


@pytest.mark.parametrize("spec", ["10,5", "0,10", "10,10", "3%,3%", "50%,20%", "100%", "0%", "3%,500", "x", "auto,10",
                                  "-5", "1e3"])
def test_other_values_are_refused_with_exit_2(spec):
    with pytest.raises(UsageError, match="--adaptive-softmax must be") as caught:
        check_spec(spec)
    assert caught.value.exit_code == 2
    with pytest.raises(UsageError):
        ModelConfig(vocab_size=100, adaptive_softmax=spec)


def test_shares_are_rounded_shares_of_the_vocabulary():
    assert cutoffs_for("3%,15%,45%", 10_000) == (300, 1500, 4500)
    assert cutoffs_for("3%,15%,45%", 33_278) == (998, 4992, 14975)  # 998.34, 4991.7, 14975.1
    assert cutoffs_for("2000,10000", 33_278) == (2000, 10000)
    assert ModelConfig(vocab_size=500, adaptive_softmax="10%,40%").cutoffs == (50, 200)
    assert cutoffs_for("auto", 50_000) == () and cutoffs_for("", 50_000) == ()


def test_shares_and_counts_cannot_be_tied_but_auto_can():
    with pytest.raises(UsageError, match="cannot be --tied"):
        ModelConfig(vocab_size=100, tied=True, adaptive_softmax="10%")
    assert ModelConfig(vocab_size=100, tied=True, adaptive_softmax="auto").cutoffs == ()


def _designed_counts() -> np.ndarray:
    """100,000 tokens over 5,000 ids, laid out so the covered share is exactly 70% after id 99,
    87% after id 949 and 96% after id 3949."""
    counts = np.zeros(5000, dtype=np.int64)
    counts[:100] = 700       # 70,000
    counts[100:950] = 20     # +17,000
    counts[950:3950] = 3     # +9,000
    counts[3950:4950] = 4    # +4,000
    assert counts.sum() == 100_000
    return counts


def test_auto_cuts_where_the_training_tokens_are_70_87_and_96_percent_covered():
    cutoffs, why = choose_cutoffs(_designed_counts())
    assert cutoffs == (100, 950, 3950)
    assert "70%, 87%, 96%" in why and "5,000 tokens" in why


def test_auto_keeps_the_head_between_1_and_8_percent_of_the_vocabulary():
    one_word = np.ones(20_000, dtype=np.int64)
    one_word[0] = 10**9  # 70% of the tokens is the first id alone
    assert choose_cutoffs(one_word)[0][0] == 200  # 1% of 20,000
    flat = np.ones(20_000, dtype=np.int64)  # 70% of the tokens is 14,000 ids
    cutoffs = choose_cutoffs(flat)[0]
    assert cutoffs[0] == 1600  # 8% of 20,000
    assert cutoffs[1:] == (17_400, 19_200)  # 87% and 96% of a flat distribution


def test_auto_keeps_the_full_softmax_for_a_small_vocabulary_or_a_tied_model():
    small = np.arange(MIN_VOCAB - 1, 0, -1)
    assert choose_cutoffs(small)[0] == ()
    assert "full softmax" in choose_cutoffs(small)[1]
    assert choose_cutoffs(_designed_counts(), tied=True)[0] == ()


def test_token_counts_read_block_by_block_equal_one_count_of_everything():
    rng = np.random.default_rng(0)
    blocks = [rng.integers(0, 50, size=n) for n in (0, 7, 1000, 3)]
    assert np.array_equal(token_counts(iter(blocks), 60), np.bincount(np.concatenate(blocks), minlength=60))
