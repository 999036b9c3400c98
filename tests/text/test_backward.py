"""The backward tokenizer (rnnlm_cli.text.backward): each line's tokens right to left, the line
end last, recorded in the tokenizer's description. Expected ids come from the forward
tokenizer's own, reversed by hand, or from the forward tokenizer run on text reversed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_lines, write_lines
from rnnlm_cli.config import TokenizerConfig
from rnnlm_cli.errors import DataError
from rnnlm_cli.text import reading
from rnnlm_cli.text.backward import BackwardTokenizer, directed, reading_order, whole_lines
from rnnlm_cli.text.corpus import encode_corpus, learn_tokenizer
from rnnlm_cli.text.sentencepiece_tokenizer import train_sentencepiece
from rnnlm_cli.text.tokenfile import open_token_file
from rnnlm_cli.text.tokenizers import (ByteTokenizer, CharTokenizer, WordTokenizer, fingerprint,
                                       tokenizer_from_dict)


def words_reversed(lines: list[str]) -> list[str]:
    return [" ".join(line.split()[::-1]) for line in lines]


@pytest.fixture
def words() -> WordTokenizer:
    return WordTokenizer.from_counts({"the": 3, "dog": 2, "runs": 1})


def test_encode_reverses_the_words_of_a_line(words):
    back = directed(words, True)
    forward = words.encode("the dog zebra runs")
    assert back.encode("the dog zebra runs") == forward[::-1]
    assert back.encode_batch(["the dog", "runs"]) == [words.encode("the dog")[::-1], words.encode("runs")]
    encoded = back.encode_line("the zebra runs")
    assert encoded.ids == words.encode("the zebra runs")[::-1]
    assert encoded.word_index == [2, 1, 0]  # each token keeps its word
    assert encoded.oov == [False, True, False] and encoded.words == 3  # per word, in reading order


@pytest.mark.parametrize("forward", [CharTokenizer.from_counts({c: 1 for c in "ab c"}), ByteTokenizer()],
                         ids=["char", "byte"])
def test_char_and_byte_tokens_come_last_first(forward):
    back = directed(forward, True)
    line = "ab c\u00e9"
    assert back.encode(line) == forward.encode(line)[::-1]
    encoded, plain = back.encode_line(line), forward.encode_line(line)
    assert encoded.word_index == plain.word_index[::-1]
    assert back.decode(back.encode(line)) == forward.decode(forward.encode(line))


def test_sentencepiece_keeps_its_segmentation_in_reverse_order():
    forward = train_sentencepiece(iter(make_lines(200, seed=4)), TokenizerConfig(kind="sentencepiece", vocab_size=300))
    back = directed(forward, True)
    line = "the quiet dogs greet a fox ."
    assert back.encode(line) == forward.encode(line)[::-1]
    assert back.decode(back.encode(line)) == line


def test_decode_puts_each_line_back_in_reading_order(words):
    back = directed(words, True)
    ids = back.encode("the dog runs") + [0] + back.encode("runs the") + [0] + back.encode("dog the")
    assert back.decode(ids) == "the dog runs\nruns the\ndog the"
    decoder = back.streaming_decoder()
    pushed = [decoder.push(token) for token in ids]
    assert pushed[:3] == ["", "", ""]  # nothing until the line's first word (read last) is known
    assert "".join(pushed) + decoder.flush() == "the dog runs\nruns the\ndog the"
    assert reading_order(reading_order(ids, 0), 0) == ids


def test_the_description_records_the_direction_and_old_ones_read_left_to_right(words):
    back = directed(words, True)
    data = back.to_dict()
    assert data == {**words.to_dict(), "reverse": True}
    again = tokenizer_from_dict(data)
    assert isinstance(again, BackwardTokenizer) and again.encode("the dog") == back.encode("the dog")
    assert fingerprint(again) == fingerprint(back) != fingerprint(words)  # a token file cannot mix them up
    assert "reverse" not in words.to_dict()  # a forward one's description (and fingerprint) as before
    assert tokenizer_from_dict(words.to_dict()).reverse is False
    assert directed(back, True) is back and directed(words, False) is words
    with pytest.raises(DataError, match="'reverse' must be true or false"):
        tokenizer_from_dict({**words.to_dict(), "reverse": "yes"})


def test_whole_lines_joins_the_pieces_of_each_line():
    segments = [("a b ", False), ("c", True), ("", True), ("d", True)]
    assert list(whole_lines(segments)) == [("a b c", True), ("", True), ("d", True)]


@pytest.mark.parametrize("kind", ["word", "char"])
def test_a_reversed_corpus_is_the_forward_corpus_of_the_reversed_text(tmp_path, kind):
    """The independent expectation: learning and encoding with --reverse gives the tokens a
    forward tokenizer gives the text with each line reversed by hand."""
    lines = make_lines(60, seed=7)
    by_hand = words_reversed(lines) if kind == "word" else [line[::-1] for line in lines]
    back = encode_corpus(str(write_lines(tmp_path / "c.txt", lines)), str(tmp_path / "back.tok"),
                         config=TokenizerConfig(kind=kind, reverse=True))
    plain = encode_corpus(str(write_lines(tmp_path / "r.txt", by_hand)), str(tmp_path / "plain.tok"),
                          config=TokenizerConfig(kind=kind))
    assert back.tokenizer.reverse and back.tokenizer.pieces == plain.tokenizer.pieces
    assert (back.words, back.tokens, back.lines) == (plain.words, plain.tokens, plain.lines)
    stored = open_token_file(str(tmp_path / "back.tok"))
    assert np.array_equal(stored.tokens[:], open_token_file(str(tmp_path / "plain.tok")).tokens[:])
    assert stored.tokenizer.reverse  # the header records the direction
    # Encoding with the learned tokenizer (a validation text) gives the same ids again.
    again = encode_corpus(str(tmp_path / "c.txt"), str(tmp_path / "again.tok"), tokenizer=back.tokenizer)
    assert np.array_equal(open_token_file(str(tmp_path / "again.tok")).tokens[:], stored.tokens[:])
    assert learn_tokenizer(str(tmp_path / "c.txt"), TokenizerConfig(kind=kind, reverse=True)).reverse


def test_a_line_read_in_pieces_is_reversed_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(reading, "MAX_LINE_BYTES", 16)  # lines come in pieces of 16 bytes at most
    lines = ["w1 w2 w3 w4 w5 w6 w7 w8 w9", "a b", "x1 x2 x3 x4 x5 x6 x7 x8"]
    corpus = write_lines(tmp_path / "c.txt", lines)
    learned = encode_corpus(str(corpus), str(tmp_path / "l.tok"), config=TokenizerConfig(reverse=True))
    given = encode_corpus(str(corpus), str(tmp_path / "g.tok"), tokenizer=learned.tokenizer)
    tok = learned.tokenizer
    expected = [i for line in lines for i in [*tok.encode(line), 0]]
    assert open_token_file(str(tmp_path / "l.tok")).tokens[:].tolist() == expected
    assert open_token_file(str(tmp_path / "g.tok")).tokens[:].tolist() == expected
    assert learned.words == given.words == sum(len(line.split()) for line in lines)


def test_oov_figures_pair_each_word_with_its_own_id(tmp_path, words):
    # A literal <unk> is a known word: paired with the wrong id, "the" would count as an OOV.
    corpus = write_lines(tmp_path / "c.txt", ["<unk> zebra the", "runs okapi"])
    stats = encode_corpus(str(corpus), str(tmp_path / "c.tok"), tokenizer=directed(words, True))
    assert (stats.oov_tokens, stats.oov_types) == (2, 2)
