"""Corpus -> token file: learned vocabularies, encodings, inputs, empty and broken corpora."""

from __future__ import annotations

import gzip
import io
import os
import random
import sys
from collections import Counter

import pytest

from rnnlm_cli.text import corpus
from rnnlm_cli.config import TokenizerConfig
from rnnlm_cli.text.corpus import encode_corpus, learn_tokenizer
from rnnlm_cli.errors import DataError
from rnnlm_cli.text.tokenfile import open_token_file
from rnnlm_cli.text.tokenizers import ByteTokenizer, WordTokenizer

LINES = ["the cat sat on the mat", "", "the dog <unk> sat", "  a <eos> dog\tran  ", "cat ünïcödé 日本"]


def random_lines(seed: int = 3, count: int = 300) -> list[str]:
    rng = random.Random(seed)
    words = ["the", "cat", "sat", "on", "mat", "dog", "ran", "über", "日本", "<unk>", "<eos>", "x"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(0, 9))) for _ in range(count)]


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("".join(line + "\n" for line in random_lines()), encoding="utf-8")
    return path


def expected_word_pieces(lines, min_count=1, max_size=0):
    counts = Counter(word for line in lines for word in line.split() if word not in ("<unk>", "<eos>"))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    entries = [word for word, count in ranked if count >= min_count]
    if max_size:
        entries = entries[: max_size - 2]
    return ["<eos>", "<unk>"] + entries


def word_ids(pieces, lines):
    index = {word: i for i, word in enumerate(pieces) if i >= 1}
    return [i for line in lines for i in [index.get(w, 1) if w != "<eos>" else 1 for w in line.split()] + [0]]


@pytest.mark.parametrize("min_count,max_size", [(1, 0), (2, 0), (1, 6), (30, 5)])
def test_word_learning_matches_counter(text, tmp_path, monkeypatch, min_count, max_size):
    monkeypatch.setattr(corpus, "CHUNK_IDS", 7)  # many chunks, so chunk edges are exercised
    lines = random_lines()
    out = tmp_path / "c.tok"
    stats = encode_corpus(str(text), str(out), config=TokenizerConfig(min_count=min_count, max_size=max_size))
    pieces = expected_word_pieces(lines, min_count, max_size)
    assert stats.tokenizer.pieces == pieces
    expected = word_ids(pieces, lines)
    token_file = open_token_file(str(out))
    assert token_file.tokens.tolist() == expected
    words = sum(len(line.split()) for line in lines)
    literal_unk = sum(line.split().count("<unk>") for line in lines)
    assert (stats.lines, stats.words, stats.tokens) == (len(lines), words, words + len(lines))
    assert stats.oov_tokens == expected.count(1) - literal_unk
    assert token_file.metadata["oov_tokens"] == stats.oov_tokens
    assert token_file.metadata["source"] == "corpus.txt"
    assert sorted(os.listdir(tmp_path)) == ["c.tok", "corpus.txt"]


def test_word_learning_agrees_with_learn_tokenizer(text, tmp_path):
    config = TokenizerConfig(min_count=2)
    stats = encode_corpus(str(text), str(tmp_path / "c.tok"), config=config)
    assert stats.tokenizer.to_dict() == learn_tokenizer(str(text), config).to_dict()


def test_char_learning_matches_counter(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "CHUNK_IDS", 5)
    path = tmp_path / "c.txt"
    path.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    stats = encode_corpus(str(path), str(tmp_path / "c.tok"), config=TokenizerConfig(kind="char", max_size=12))
    counts = Counter("".join(LINES))
    ranked = [char for char, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))][:10]
    assert stats.tokenizer.pieces == ["<eos>", "<unk>"] + ranked
    index = {char: i + 2 for i, char in enumerate(ranked)}
    expected = [i for line in LINES for i in [index.get(c, 1) for c in line] + [0]]
    assert open_token_file(str(tmp_path / "c.tok")).tokens.tolist() == expected
    assert stats.oov_tokens is None
    assert stats.words == sum(len(line.split()) for line in LINES)
    assert stats.tokenizer.to_dict() == learn_tokenizer(str(path), TokenizerConfig(kind="char", max_size=12)).to_dict()


def test_given_tokenizer_line_by_line(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("".join(line + "\n" for line in LINES), encoding="utf-8")
    tok = WordTokenizer(["<eos>", "<unk>", "the", "cat", "dog"])
    stats = encode_corpus(str(path), str(tmp_path / "w.tok"), tokenizer=tok)
    assert open_token_file(str(tmp_path / "w.tok")).tokens.tolist() == word_ids(tok.pieces, LINES)
    # unknown: sat on mat | sat | a <eos> ran | ünïcödé 日本; the literal <unk> is known
    assert stats.oov_tokens == 9
    stats = encode_corpus(str(path), str(tmp_path / "b.tok"), config=TokenizerConfig(kind="byte"))
    expected = [b + 1 for line in LINES for b in line.encode("utf-8") + b"\n"]
    assert open_token_file(str(tmp_path / "b.tok")).tokens.tolist() == [0 if i == 11 else i for i in expected]
    assert isinstance(stats.tokenizer, ByteTokenizer)


def test_gzip_input_gives_the_same_tokens(text, tmp_path):
    packed = tmp_path / "corpus.txt.gz"
    packed.write_bytes(gzip.compress(text.read_bytes()))
    plain = encode_corpus(str(text), str(tmp_path / "plain.tok"), config=TokenizerConfig())
    zipped = encode_corpus(str(packed), str(tmp_path / "zipped.tok"), config=TokenizerConfig())
    a, b = open_token_file(str(tmp_path / "plain.tok")), open_token_file(str(tmp_path / "zipped.tok"))
    assert a.tokens.tolist() == b.tokens.tolist()
    assert {**a.metadata, "source": ""} == {**b.metadata, "source": ""}
    assert plain.tokenizer.to_dict() == zipped.tokenizer.to_dict()


def fake_stdin(monkeypatch, data: bytes):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


def test_sentencepiece_from_stdin(text, tmp_path, monkeypatch):
    config = TokenizerConfig(kind="sentencepiece", vocab_size=300, model_type="bpe")
    out = tmp_path / "out"
    out.mkdir()
    from_file = encode_corpus(str(text), str(out / "file.tok"), config=config)
    fake_stdin(monkeypatch, text.read_bytes())
    from_stdin = encode_corpus("-", str(out / "stdin.tok"), config=config)
    assert from_stdin.tokenizer.to_dict() == from_file.tokenizer.to_dict()
    tokens = open_token_file(str(out / "stdin.tok"))
    assert tokens.tokens.tolist() == open_token_file(str(out / "file.tok")).tokens.tolist()
    assert tokens.metadata["source"] == "stdin"
    lines = random_lines()
    assert tokens.tokenizer.decode(tokens.tokens.tolist()) == "".join(line + "\n" for line in lines)
    assert (from_stdin.lines, from_stdin.tokens) == (len(lines), len(tokens))
    assert sorted(os.listdir(out)) == ["file.tok", "stdin.tok"]


@pytest.mark.parametrize("kind", ["word", "char", "byte", "sentencepiece"])
def test_empty_corpus(tmp_path, monkeypatch, kind):
    out = tmp_path / "out"
    out.mkdir()
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    config = TokenizerConfig(kind=kind)
    with pytest.raises(DataError, match="empty.txt: empty corpus"):
        encode_corpus(str(empty), str(out / "c.tok"), config=config)
    fake_stdin(monkeypatch, b"")
    with pytest.raises(DataError, match="stdin: empty corpus"):
        encode_corpus("-", str(out / "c.tok"), config=config)
    assert os.listdir(out) == []
    if kind != "byte":  # the byte tokenizer learns nothing, so it never reads the text
        with pytest.raises(DataError, match="empty.txt: empty corpus"):
            learn_tokenizer(str(empty), config)


@pytest.mark.parametrize("kind", ["word", "byte", "sentencepiece"])
def test_invalid_utf8_strict_leaves_nothing(tmp_path, monkeypatch, kind):
    monkeypatch.setattr(corpus, "CHUNK_IDS", 4)  # the error comes after chunks were written
    out = tmp_path / "out"
    out.mkdir()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"good line here\nanother one\nbad \xff byte\n")
    config = TokenizerConfig(kind=kind, vocab_size=300)
    with pytest.raises(DataError, match=r"^\S*bad.txt:3: invalid UTF-8"):
        encode_corpus(str(bad), str(out / "c.tok"), config=config, strict=True)
    fake_stdin(monkeypatch, bad.read_bytes())
    with pytest.raises(DataError, match="^stdin:3: invalid UTF-8"):
        encode_corpus("-", str(out / "c.tok"), config=config, strict=True)
    assert os.listdir(out) == []
    stats = encode_corpus(str(bad), str(out / "c.tok"), config=config)
    assert (stats.lines, stats.invalid_lines, stats.replaced_chars) == (3, 1, 1)
    assert os.listdir(out) == ["c.tok"]


def test_exactly_one_of_tokenizer_or_config(text, tmp_path):
    with pytest.raises(ValueError):
        encode_corpus(str(text), str(tmp_path / "c.tok"))
    with pytest.raises(ValueError):
        encode_corpus(str(text), str(tmp_path / "c.tok"), tokenizer=ByteTokenizer(), config=TokenizerConfig())
