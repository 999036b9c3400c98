"""The mixture weight fitted on held-out text against a grid search over scores computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rnnlm_cli.errors import DataError
from rnnlm_cli.score.evaluate import fit_mix_weight
from rnnlm_cli.score.scoring_config import ScoringConfig

from conftest import tiny_model

CPU = torch.device("cpu")
DEV = ["the dog runs .", "a cat sees the zebra .", "the cats see a dog .", "the dogs run ."]


class UnigramTable:
    """An order-1 n-gram model answering from a fixed table (log10 probabilities)."""

    order = 1

    def __init__(self, table):
        self.table = table

    def logprob(self, word, context):
        return self.table[word]


# Sharp where the random model is flat, and wrong about "cat" and "cats": neither model
# explains every word, so the best mix lies strictly inside (0, 1).
NGRAM = UnigramTable({"the": math.log10(0.3), "dog": math.log10(0.1), "dogs": math.log10(0.05),
                      "runs": math.log10(0.05), "run": math.log10(0.05), ".": math.log10(0.2),
                      "a": math.log10(0.1), "cat": -4.0, "cats": -4.0, "sees": math.log10(0.02),
                      "see": math.log10(0.02), "zebra": math.log10(0.01), "</s>": math.log10(0.1)})


@pytest.fixture
def dev_file(tmp_path):
    path = tmp_path / "dev.txt"
    path.write_text("\n".join(DEV) + "\n", encoding="utf-8")
    return path


def scores_by_hand(model, tokenizer):
    """(model log10, n-gram log10) per in-vocabulary word and line end of DEV, in the stream
    context: one forward pass over <eos> and every line's tokens and <eos>."""
    ids, words = [], []
    for line in DEV:
        for word in line.split() + ["</s>"]:
            token = tokenizer.eos_id if word == "</s>" else tokenizer.encode_line(word).ids[0]
            ids.append(token)
            words.append(word)
    inputs = torch.tensor([tokenizer.eos_id] + ids[:-1]).unsqueeze(1)  # (T, 1)
    with torch.no_grad():
        logits, _ = model(inputs, model.init_state(1))  # (T, 1, V)
    logprobs = torch.log_softmax(logits.double(), dim=-1)[:, 0, :] / math.log(10)  # (T, V)
    kept = [t for t, token in enumerate(ids) if token != tokenizer.unk_id]  # OOVs are left out
    model_log10 = np.array([logprobs[t, ids[t]].item() for t in kept])
    ngram_log10 = np.array([NGRAM.table[words[t]] for t in kept])
    return model_log10, ngram_log10


def grid_optimum(model_log10, ngram_log10):
    grid = np.linspace(0.0, 1.0, 20_001)  # (G,)
    p, q = 10.0 ** model_log10, 10.0 ** ngram_log10  # (N,)
    likelihood = np.log(grid[:, None] * p + (1 - grid[:, None]) * q).sum(axis=1)  # (G,)
    return grid[np.argmax(likelihood)]


def test_the_fitted_weight_maximises_the_held_out_likelihood(word_tokenizer, dev_file):
    model = tiny_model(word_tokenizer.vocab_size)
    model_log10, ngram_log10 = scores_by_hand(model, word_tokenizer)
    best = grid_optimum(model_log10, ngram_log10)
    assert 0.05 < best < 0.95  # an interior optimum, or the comparison says little

    fit = fit_mix_weight(model, word_tokenizer, str(dev_file), CPU, ScoringConfig(), NGRAM)
    assert fit.words == len(model_log10) == 23  # 19 in-vocabulary words and 4 line ends, "zebra" left out
    assert fit.weight == pytest.approx(best, abs=1e-3)
    assert fit.iterations >= 2
    assert fit.rnn_ppl == pytest.approx(10 ** -model_log10.mean(), rel=1e-5)
    assert fit.ngram_ppl == pytest.approx(10 ** -ngram_log10.mean(), rel=1e-9)
    mix = np.log10(fit.weight * 10 ** model_log10 + (1 - fit.weight) * 10 ** ngram_log10)
    assert fit.mix_ppl == pytest.approx(10 ** -mix.mean(), rel=1e-5)
    assert fit.mix_ppl < min(fit.rnn_ppl, fit.ngram_ppl)


def test_the_weight_used_for_scoring_does_not_bias_the_fit(word_tokenizer, dev_file):
    model = tiny_model(word_tokenizer.vocab_size)
    low = fit_mix_weight(model, word_tokenizer, str(dev_file), CPU, ScoringConfig(mix_weight=0.1), NGRAM)
    high = fit_mix_weight(model, word_tokenizer, str(dev_file), CPU, ScoringConfig(mix_weight=0.9), NGRAM)
    assert low == high


def test_dynamic_evaluation_during_the_fit_leaves_the_trained_weights(word_tokenizer, dev_file):
    model = tiny_model(word_tokenizer.vocab_size)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    config = ScoringConfig(dynamic=True, dynamic_rule="sgd", dynamic_lr=5.0, dynamic_segment=4)
    adapted = fit_mix_weight(model, word_tokenizer, str(dev_file), CPU, config, NGRAM)
    static = fit_mix_weight(model, word_tokenizer, str(dev_file), CPU, ScoringConfig(), NGRAM)
    assert adapted.rnn_ppl != static.rnn_ppl  # the adaptation did change the scores
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_an_empty_text_is_a_data_error(word_tokenizer, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    model = tiny_model(word_tokenizer.vocab_size)
    with pytest.raises(DataError, match="empty|no words") as caught:
        fit_mix_weight(model, word_tokenizer, str(empty), CPU, ScoringConfig(), NGRAM)
    assert caught.value.exit_code == 65
