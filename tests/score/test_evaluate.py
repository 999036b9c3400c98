"""Scoring against hand-computed probabilities and an independent forward pass."""

import math

import pytest
import torch

from rnnlm_cli.errors import DataError
from rnnlm_cli.score.evaluate import evaluate_file, score_file
from rnnlm_cli.score.scoring_config import ScoringConfig

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
    # A small chunk and batch size force several chunks and batches; the blank lines are scored
    # (as --per-sentence asks: tests/score/test_blank_lines.py has them skipped).
    result = score_file(model, word_tokenizer, str(text), CPU, context=context, per_sentence=True,
                        chunk_tokens=5, batch_tokens=30, skip_blank_lines=False)
    expected = _independent_logprobs(model, word_tokenizer, lines, carry=context == "stream")
    assert result.sentence_logprobs == pytest.approx(expected, abs=1e-4)
    assert result.logprob == pytest.approx(sum(expected), abs=1e-3)
    assert result.sentences == len(lines)


@pytest.mark.parametrize("window_batches", [1, 2, 64])
def test_sentence_batches_group_lines_by_length_and_keep_their_order(tmp_path, word_tokenizer, monkeypatch,
                                                                     window_batches):
    import rnnlm_cli.score.token_scoring as token_scoring

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
    result = score_file(model, word_tokenizer, str(text), CPU, context="sentence", per_sentence=True,
                        batch_tokens=64, skip_blank_lines=False)  # blank lines batched too, one token each
    expected = _independent_logprobs(model, word_tokenizer, lines, carry=False)
    assert result.sentence_logprobs == pytest.approx(expected, abs=1e-4)
    if window_batches == 64:  # the whole file in one window: no batch mixes lengths
        assert all(len(lengths) == 1 for lengths in shapes), shapes


def test_stream_and_sentence_contexts_differ_once_state_carries(tmp_path, word_tokenizer):
    text = tmp_path / "t.txt"
    text.write_text("the dog runs .\nthe dog runs .\n")
    model = tiny_model(word_tokenizer.vocab_size, seed=5)
    stream = evaluate_file(model, word_tokenizer, str(text), CPU, per_sentence=True)
    sentence = evaluate_file(model, word_tokenizer, str(text), CPU, ScoringConfig(context="sentence"),
                             per_sentence=True)
    assert stream.sentence_logprobs[0] == pytest.approx(sentence.sentence_logprobs[0], abs=1e-5)
    assert stream.sentence_logprobs[1] != pytest.approx(sentence.sentence_logprobs[1], abs=1e-5)


def test_empty_input_is_a_data_error(tmp_path, word_tokenizer):
    text = tmp_path / "empty.txt"
    text.write_text("")
    with pytest.raises(DataError, match="empty"):
        evaluate_file(tiny_model(word_tokenizer.vocab_size), word_tokenizer, str(text), CPU)


# ---------------------------------------------------------------- evaluate_file from a ScoringConfig

UNIGRAM_ARPA = "\\data\\\nngram 1=5\n\n\\1-grams:\n-1.0 </s>\n-99 <s>\n-0.5 the\n-0.8 dog\n-2.0 cat\n\n\\end\\\n"


def test_the_config_mixes_each_word_with_the_ngram_model_at_its_weight(tmp_path, word_tokenizer):
    from rnnlm_cli.score.arpa import read_arpa

    arpa = tmp_path / "u.arpa"
    arpa.write_text(UNIGRAM_ARPA)
    text = tmp_path / "t.txt"
    text.write_text("the dog\nthe cat\n")
    vocab = word_tokenizer.vocab_size
    result = evaluate_file(uniform_model(vocab), word_tokenizer, str(text), CPU, ScoringConfig(mix_weight=0.25),
                           ngram=read_arpa(str(arpa)))

    def mixed(ngram_log10):
        return math.log10(0.25 / vocab + 0.75 * 10 ** ngram_log10)

    # the, dog, </s>, the, cat, </s>: the unigram model's probabilities do not depend on the context.
    expected = 2 * mixed(-0.5) + mixed(-0.8) + mixed(-2.0) + 2 * mixed(-1.0)
    assert result.logprob == pytest.approx(expected, abs=1e-6)
    assert result.ppl == pytest.approx(10 ** (-expected / 6))
    # token_ppl is the neural model's alone: uniform, so V.
    assert result.token_ppl == pytest.approx(vocab)


def test_unk_from_the_config_scores_oov_words_as_unk(tmp_path, word_tokenizer):
    text = tmp_path / "t.txt"
    text.write_text("the zebra runs .\n")
    vocab = word_tokenizer.vocab_size
    model = uniform_model(vocab)
    left_out = evaluate_file(model, word_tokenizer, str(text), CPU)
    counted = evaluate_file(model, word_tokenizer, str(text), CPU, ScoringConfig(unk=True))
    assert (left_out.oovs, counted.oovs) == (1, 0)
    assert left_out.logprob == pytest.approx(-4 * math.log10(vocab))
    assert counted.logprob == pytest.approx(-5 * math.log10(vocab))


def test_dynamic_evaluation_from_the_config_scores_as_its_parts_and_puts_the_weights_back(tmp_path, word_tokenizer):
    from rnnlm_cli.score.cache import NeuralCache
    from rnnlm_cli.score.dynamic import DynamicEvaluation

    text = tmp_path / "t.txt"
    text.write_text("the dog runs .\na cat sees the dog .\n" * 3)
    model = tiny_model(word_tokenizer.vocab_size, seed=3)
    trained = [p.detach().clone() for p in model.parameters()]
    config = ScoringConfig(cache=15, cache_theta=0.3, cache_lambda=0.1, dynamic=True, dynamic_rule="sgd", dynamic_lr=0.3,
                           dynamic_decay=0.05, dynamic_segment=4)
    got = evaluate_file(model, word_tokenizer, str(text), CPU, config)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), trained))
    # The same parts built by hand; a second run from the restored weights gives the same figures.
    dynamic = DynamicEvaluation(model, 0.3, 0.05, weights="output", segment=4)
    parts = score_file(model, word_tokenizer, str(text), CPU, cache=NeuralCache(15, 0.3, 0.1), dynamic=dynamic)
    dynamic.restore()
    assert got.logprob == pytest.approx(parts.logprob, abs=1e-9)
    # ...and they differ from plain scoring: the config's adaptation did take part.
    plain = evaluate_file(model, word_tokenizer, str(text), CPU)
    assert abs(got.logprob - plain.logprob) > 1e-3


def test_amp_off_in_the_config_runs_in_float32_inside_an_outer_autocast(tmp_path, word_tokenizer):
    """The config decides the precision: "off" is float32 even where the caller had bf16 on."""
    text = tmp_path / "t.txt"
    text.write_text("the dog runs .\na cat sees the dog .\n")
    model = tiny_model(word_tokenizer.vocab_size, seed=3)
    plain = evaluate_file(model, word_tokenizer, str(text), CPU)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = evaluate_file(model, word_tokenizer, str(text), CPU, ScoringConfig(amp="off"))
    assert inside.logprob == plain.logprob
