"""Word scores from token scores, the per-word n-gram mix, and a long sentence scored in pieces."""

from __future__ import annotations

import math

import pytest
import torch

from rnnlm_cli.score.token_scoring import Piece
from rnnlm_cli.score.word_scoring import (SENTENCE_END, NgramMix, WordScore, text_pieces, long_sentence_log10,
                                          piece_words)

from conftest import tiny_model

CPU = torch.device("cpu")


def piece(text, word_index, probs, oov=None, last=True):
    """A scored piece whose token probabilities are ``probs`` (natural logs stored, as the scorer does)."""
    words = len(text.split())
    return Piece(text=text, context=0, targets=list(range(1, len(word_index) + 1)), word_index=word_index,
                 oov=oov or [False] * words, last=last, logprobs=[math.log(p) for p in probs])


def test_a_words_probability_is_the_product_of_its_pieces():
    # "ab cd": a b | _c d | </s>, as a char model would split it.
    scored = piece_words(piece("ab cd", [0, 0, 1, 1, 1, 2], [0.5, 0.2, 0.1, 0.4, 0.5, 0.25]))
    assert [w.word for w in scored] == ["ab", "cd", SENTENCE_END]
    assert [w.tokens for w in scored] == [2, 3, 1]
    assert [w.ends_line for w in scored] == [False, False, True]
    expected = [math.log10(0.5 * 0.2), math.log10(0.1 * 0.4 * 0.5), math.log10(0.25)]
    assert [w.log10 for w in scored] == pytest.approx(expected, abs=1e-12)
    assert [w.model_log10 for w in scored] == pytest.approx(expected, abs=1e-12)
    assert all(math.isnan(w.ngram_log10) for w in scored)


def test_a_piece_that_does_not_end_its_line_has_no_line_end():
    scored = piece_words(piece("ab", [0, 0], [0.5, 0.5], last=False))
    assert [(w.word, w.tokens) for w in scored] == [("ab", 2)]
    assert scored[0].log10 == pytest.approx(math.log10(0.25), abs=1e-12)


def test_oov_words_are_left_out_unless_unk_is_asked_for():
    made = piece("the zebra", [0, 1, 2], [0.1, 0.01, 0.5], oov=[False, True])
    plain = piece_words(made)
    assert [w.oov for w in plain] == [False, True, False]
    # The OOV still carries the score of <unk>, for --unk and the n-gram mix.
    assert plain[1].log10 == pytest.approx(-2.0, abs=1e-12)
    assert [w.oov for w in piece_words(made, unk=True)] == [False, False, False]


def test_zeroprob_is_a_scored_word_of_probability_zero():
    assert WordScore("a", -math.inf).zeroprob
    assert not WordScore("a", -math.inf, oov=True).zeroprob
    assert not WordScore("a", -3.0).zeroprob


class RecordingNgram:
    """An n-gram model that answers from a table and records the histories it was asked with."""

    def __init__(self, order, table):
        self.order = order
        self.table = table
        self.asked = []

    def logprob(self, word, context):
        self.asked.append((word, tuple(context)))
        return self.table[word]


def mixed(model, ngram, weight):
    return math.log10(weight * 10 ** model + (1 - weight) * 10 ** ngram)


def test_the_mix_is_per_word_and_the_ngram_history_restarts_at_each_line():
    ngram = RecordingNgram(3, {"a": -1.0, "b": -2.0, "c": -0.5, "zebra": -3.0, SENTENCE_END: -0.3})
    mix = NgramMix(ngram, 0.25)
    first = [WordScore("a", -0.5, model_log10=-0.5), WordScore("zebra", -4.0, oov=True, model_log10=-4.0),
             WordScore("b", -1.5, model_log10=-1.5)]
    second = [WordScore("c", -2.0, model_log10=-2.0), WordScore(SENTENCE_END, -0.1, model_log10=-0.1, ends_line=True)]
    third = [WordScore("a", -0.7, model_log10=-0.7)]
    for words in (first, second, third):  # three pieces: one long line, then a new line
        mix.apply(words)
    assert ngram.asked == [
        ("a", ("<s>",)), ("zebra", ("<s>", "a")), ("b", ("a", "zebra")), ("c", ("zebra", "b")),
        (SENTENCE_END, ("b", "c")), ("a", ("<s>",)),
    ]
    assert [w.ngram_log10 for w in first + second + third] == [-1.0, -3.0, -2.0, -0.5, -0.3, -1.0]
    assert first[0].log10 == pytest.approx(mixed(-0.5, -1.0, 0.25), abs=1e-12)
    assert first[1].log10 == -4.0  # an OOV of the neural model stays unmixed
    assert second[1].log10 == pytest.approx(mixed(-0.1, -0.3, 0.25), abs=1e-12)
    assert third[0].log10 == pytest.approx(mixed(-0.7, -1.0, 0.25), abs=1e-12)


def test_a_bigram_sees_one_word_of_history():
    ngram = RecordingNgram(2, {"x": -1.0, "y": -1.0})
    NgramMix(ngram, 1.0).apply([WordScore(w, -1.0, model_log10=-1.0) for w in ("x", "y", "x")])
    assert [context for _, context in ngram.asked] == [("<s>",), ("x",), ("y",)]


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_a_mix_weight_outside_the_unit_interval_is_refused(weight):
    with pytest.raises(ValueError):
        NgramMix(RecordingNgram(2, {}), weight)


def test_text_pieces_cut_after_a_space_and_never_inside_a_word():
    assert list(text_pieces("aaa bbb ccc", 5)) == [("aaa ", False), ("bbb ", False), ("ccc", True)]
    # A word longer than a piece is kept whole: a hypothesis' words are scored as its words.
    assert list(text_pieces("abcdefgh", 3)) == [("abcdefgh", True)]
    assert list(text_pieces("ab cdefgh ij", 3)) == [("ab ", False), ("cdefgh ", False), ("ij", True)]
    assert list(text_pieces("short", 10)) == [("short", True)]


def by_hand_log10(model, tokenizer, text):
    """The sentence's log10 from one forward pass over <eos> + its tokens, summed by hand."""
    ids = tokenizer.encode_line(text).ids + [tokenizer.eos_id]
    inputs = torch.tensor([tokenizer.eos_id] + ids[:-1]).unsqueeze(1)  # (T, 1)
    with torch.no_grad():
        logits, _ = model(inputs, model.init_state(1))  # (T, 1, V)
    logprobs = torch.log_softmax(logits.double(), dim=-1)[:, 0, :]  # (T, V)
    return sum(logprobs[t, token].item() for t, token in enumerate(ids)) / math.log(10)


def test_a_long_sentence_scores_the_same_in_pieces_as_in_one_pass(word_tokenizer):
    model = tiny_model(word_tokenizer.vocab_size)
    text = "the dog runs . a cat sees the dogs . the cats run ."
    expected = by_hand_log10(model, word_tokenizer, text)
    whole = long_sentence_log10(model, word_tokenizer, text, CPU)
    cut = long_sentence_log10(model, word_tokenizer, text, CPU, piece_chars=6, chunk_tokens=3)
    assert whole == pytest.approx(expected, abs=1e-5)
    assert cut == pytest.approx(expected, abs=1e-5)


def test_a_long_sentence_leaves_oovs_out_unless_unk(word_tokenizer):
    model = tiny_model(word_tokenizer.vocab_size)
    with_unk = long_sentence_log10(model, word_tokenizer, "the zebra runs", CPU, unk=True)
    without = long_sentence_log10(model, word_tokenizer, "the zebra runs", CPU, unk=False)
    assert with_unk == pytest.approx(by_hand_log10(model, word_tokenizer, "the zebra runs"), abs=1e-5)
    # Left out: the score of "zebra" read as <unk> at position 1, found by hand.
    ids = word_tokenizer.encode_line("the zebra runs").ids
    assert ids[1] == word_tokenizer.unk_id
    inputs = torch.tensor([word_tokenizer.eos_id, ids[0]]).unsqueeze(1)
    with torch.no_grad():
        logits, _ = model(inputs, model.init_state(1))
    unk_log10 = torch.log_softmax(logits.double(), dim=-1)[1, 0, ids[1]].item() / math.log(10)
    assert without == pytest.approx(with_unk - unk_log10, abs=1e-5)
