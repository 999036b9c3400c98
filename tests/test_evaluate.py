"""Scoring against hand-computed probabilities and an independent forward pass."""

import math

import pytest
import torch

from rnnlm_cli.errors import DataError
from rnnlm_cli.evaluate import evaluate_file

from conftest import tiny_model

CPU = torch.device("cpu")


def uniform_model(vocab_size):
    """A model whose every prediction is uniform: zero decoder weights and bias."""
    model = tiny_model(vocab_size)
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.zero_()
    return model


def test_uniform_model_gives_srilm_figures_by_hand(tmp_path, word_tokenizer):
    vocab = word_tokenizer.vocab_size
    text = tmp_path / "t.txt"
    # 2 sentences, 7 words, one OOV word ("zebra").
    text.write_text("the dog runs .\nzebra sees .\n")
    result = evaluate_file(uniform_model(vocab), word_tokenizer, str(text), CPU)
    assert (result.sentences, result.words, result.oovs) == (2, 7, 1)
    # Scored: 6 in-vocabulary words + 2 end-of-sentence tokens, each with p = 1/V.
    assert result.tokens == 8
    assert result.logprob == pytest.approx(-8 * math.log10(vocab))
    assert result.ppl == pytest.approx(vocab)  # 10 ** (8 log10 V / (7 - 1 + 2))
    assert result.ppl1 == pytest.approx(10 ** (8 * math.log10(vocab) / 6))


@torch.no_grad()
def _independent_logprobs(model, tokenizer, lines, carry):
    """Per-line log10 probabilities from one plain forward pass per stream or sentence."""
    sequences = []
    for line in lines:
        ids = tokenizer.encode(line)
        sequences.append(([tokenizer.eos_id] + ids, ids + [tokenizer.eos_id]))
    if carry:
        inputs = torch.tensor([t for s in sequences for t in s[0]]).unsqueeze(1)
        logp = torch.log_softmax(model(inputs)[0][:, 0].double(), -1)
        flat = [t for s in sequences for t in s[1]]
        scores = logp[torch.arange(len(flat)), torch.tensor(flat)] / math.log(10)
        out, start = [], 0
        for s in sequences:
            out.append(float(scores[start:start + len(s[1])].sum()))
            start += len(s[1])
        return out
    out = []
    for inputs, targets in sequences:
        logp = torch.log_softmax(model(torch.tensor(inputs).unsqueeze(1))[0][:, 0].double(), -1)
        out.append(float(logp[torch.arange(len(targets)), torch.tensor(targets)].sum() / math.log(10)))
    return out


@pytest.mark.parametrize("context", ["stream", "sentence"])
def test_scores_match_an_independent_forward_pass(tmp_path, word_tokenizer, context):
    lines = ["the dog runs .", "", "a cat sees the dog . the cats see a dog .", "the dogs run ."] * 3
    text = tmp_path / "t.txt"
    text.write_text("\n".join(lines) + "\n")
    model = tiny_model(word_tokenizer.vocab_size, seed=3)
    # A small chunk and batch size force several chunks and batches.
    result = evaluate_file(model, word_tokenizer, str(text), CPU, context=context, per_sentence=True,
                           chunk_tokens=5, batch_tokens=30)
    expected = _independent_logprobs(model, word_tokenizer, lines, carry=context == "stream")
    assert result.sentence_logprobs == pytest.approx(expected, abs=1e-4)
    assert result.logprob == pytest.approx(sum(expected), abs=1e-3)
    assert result.sentences == len(lines)


@pytest.mark.parametrize("window_batches", [1, 2, 64])
def test_sentence_batches_group_lines_by_length_and_keep_their_order(tmp_path, word_tokenizer, monkeypatch,
                                                                     window_batches):
    import rnnlm_cli.token_scoring as token_scoring

    monkeypatch.setattr(token_scoring, "SORT_WINDOW_BATCHES", window_batches)
    shapes = []
    score_batch = token_scoring._score_batch

    def spy(model, batch, device):
        shapes.append(sorted({len(piece.targets) for piece in batch}))
        return score_batch(model, batch, device)

    monkeypatch.setattr(token_scoring, "_score_batch", spy)
    short, long = "the dog runs .", "a cat sees the dog . the cats see a dog . the dogs run ."
    lines = [short, long, "", long, short, short, long, ""] * 4
    text = tmp_path / "t.txt"
    text.write_text("\n".join(lines) + "\n")
    model = tiny_model(word_tokenizer.vocab_size, seed=5)
    result = evaluate_file(model, word_tokenizer, str(text), CPU, context="sentence", per_sentence=True,
                           batch_tokens=64)
    expected = _independent_logprobs(model, word_tokenizer, lines, carry=False)
    assert result.sentence_logprobs == pytest.approx(expected, abs=1e-4)
    if window_batches == 64:  # the whole file in one window: no batch mixes lengths
        assert all(len(lengths) == 1 for lengths in shapes), shapes


def test_stream_and_sentence_contexts_differ_once_state_carries(tmp_path, word_tokenizer):
    text = tmp_path / "t.txt"
    text.write_text("the dog runs .\nthe dog runs .\n")
    model = tiny_model(word_tokenizer.vocab_size, seed=5)
    stream = evaluate_file(model, word_tokenizer, str(text), CPU, per_sentence=True)
    sentence = evaluate_file(model, word_tokenizer, str(text), CPU, context="sentence", per_sentence=True)
    assert stream.sentence_logprobs[0] == pytest.approx(sentence.sentence_logprobs[0], abs=1e-5)
    assert stream.sentence_logprobs[1] != pytest.approx(sentence.sentence_logprobs[1], abs=1e-5)


def test_empty_input_is_a_data_error(tmp_path, word_tokenizer):
    text = tmp_path / "empty.txt"
    text.write_text("")
    with pytest.raises(DataError, match="empty"):
        evaluate_file(tiny_model(word_tokenizer.vocab_size), word_tokenizer, str(text), CPU)
