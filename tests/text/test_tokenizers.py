"""Tokenizers: ids and order, unknowns, round trips, streaming output, serialization."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnlm_cli.config import TokenizerConfig
from rnnlm_cli.errors import DataError, InputMissingError, UsageError
from rnnlm_cli.text.sentencepiece_tokenizer import SentencePieceTokenizer, train_sentencepiece
from rnnlm_cli.text.tokenizers import (ByteTokenizer, CharTokenizer, WordTokenizer, build_vocab, fingerprint,
                                  load_tokenizer_file, save_tokenizer, tokenizer_from_dict)

# Unicode text that a UTF-8 file can hold on one line: no surrogates, no line feed.
LINE_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\n"), max_size=30)


def streamed(tokenizer, ids):
    decoder = tokenizer.streaming_decoder()
    return [decoder.push(token) for token in ids] + [decoder.flush()]


# ---- word ------------------------------------------------------------------------------

def test_word_ids_by_count_then_alphabetical():
    counts = Counter("b c b a c a b d".split())  # b:3, c:2, a:2, d:1: c is seen before a
    tok = WordTokenizer.from_counts(counts)
    assert tok.pieces == ["<eos>", "<unk>", "b", "a", "c", "d"]
    assert (tok.eos_id, tok.unk_id, tok.vocab_size) == (0, 1, 6)
    assert tok.encode("d c b a") == [5, 4, 2, 3]


def test_word_min_count_and_max_size_counting_specials():
    counts = {"b": 3, "a": 2, "c": 2, "d": 1}
    assert WordTokenizer.from_counts(counts, min_count=2).pieces == ["<eos>", "<unk>", "b", "a", "c"]
    assert WordTokenizer.from_counts(counts, max_size=4).pieces == ["<eos>", "<unk>", "b", "a"]
    assert build_vocab(counts, min_count=3, max_size=10) == ["<eos>", "<unk>", "b"]


def test_word_specials_in_counts_do_not_become_entries():
    tok = WordTokenizer.from_counts({"<unk>": 9, "<eos>": 9, "x": 1})
    assert tok.pieces == ["<eos>", "<unk>", "x"]


def test_word_oov_flags_literal_unk_and_literal_eos():
    tok = WordTokenizer(["<eos>", "<unk>", "b", "a"])
    encoded = tok.encode_line("a <unk>  zz\t<eos> b")
    assert encoded.ids == [3, 1, 1, 1, 2]
    # A literal <unk> is a known word; a literal <eos> is an unknown word, never id 0.
    assert encoded.oov == [False, False, True, True, False]
    assert encoded.word_index == [0, 1, 2, 3, 4]
    assert encoded.words == 5
    empty = tok.encode_line("   ")
    assert (empty.ids, empty.word_index, empty.words, empty.oov) == ([], [], 0, [])


def test_word_decode_spaces_and_newlines():
    tok = WordTokenizer(["<eos>", "<unk>", "b", "a"])
    assert tok.decode([2, 3, 0, 3, 0, 0, 1, 2]) == "b a\na\n\n<unk> b"
    assert tok.decode(tok.encode("a  b   a") + [0]) == "a b a\n"
    assert tok.piece(0) == "<eos>" and tok.piece(3) == "a"
    with pytest.raises(DataError):
        tok.piece(4)
    with pytest.raises(DataError):
        tok.decode([-1])


@given(st.lists(st.integers(0, 4), max_size=20))
def test_word_streaming_matches_decode(ids):
    tok = WordTokenizer(["<eos>", "<unk>", "b", "a", "c"])
    assert "".join(streamed(tok, ids)) == tok.decode(ids)


# ---- char ------------------------------------------------------------------------------

def test_char_ids_spaces_and_unknown():
    tok = CharTokenizer.from_counts(Counter("ab a"))  # a:2, then ' ' and b by code point
    assert tok.pieces == ["<eos>", "<unk>", "a", " ", "b"]
    assert tok.encode("ba z") == [4, 2, 3, 1]
    assert tok.decode([4, 0, 1, 2]) == "b\n\ufffda"
    assert tok.encode_line("ba z").oov == [False, False]


def test_char_word_index_separators_go_to_following_word():
    tok = CharTokenizer.from_counts(Counter("abc "))
    encoded = tok.encode_line("  ab c ")
    # Leading spaces belong to word 0, the inner space to word 1, trailing space clamps to the last word.
    assert encoded.word_index == [0, 0, 0, 0, 1, 1, 1]
    assert encoded.words == 2
    assert tok.encode_line("   ").word_index == [0, 0, 0]


@given(st.lists(LINE_TEXT, min_size=1, max_size=3))
def test_char_round_trip(lines):
    tok = CharTokenizer.from_counts(Counter("".join(lines)))
    ids = [token for line in lines for token in tok.encode(line) + [0]]
    assert tok.decode(ids) == "".join(line + "\n" for line in lines)
    assert "".join(streamed(tok, ids)) == tok.decode(ids)


# ---- byte ------------------------------------------------------------------------------

def test_byte_ids_and_pieces():
    tok = ByteTokenizer()
    assert (tok.vocab_size, tok.eos_id, tok.unk_id) == (257, 0, None)
    assert tok.encode("Aé") == [0x41 + 1, 0xC3 + 1, 0xA9 + 1]
    assert [tok.piece(i) for i in (0, 1, 0x41 + 1, 0x20 + 1, 0xC3 + 1)] == ["<eos>", "<0x00>", "A", "<0x20>", "<0xC3>"]
    encoded = tok.encode_line("a é")
    assert encoded.word_index == [0, 1, 1, 1]
    assert (encoded.words, encoded.oov) == (2, [False, False])


@given(st.lists(LINE_TEXT, min_size=1, max_size=3))
def test_byte_round_trip(lines):
    tok = ByteTokenizer()
    ids = [token for line in lines for token in tok.encode(line) + [0]]
    assert tok.decode(ids) == "".join(line + "\n" for line in lines)


def test_byte_streaming_waits_for_whole_utf8_sequence():
    tok = ByteTokenizer()
    ids = tok.encode("aé😀") + [0] + tok.encode("b")
    parts = streamed(tok, ids)
    assert parts == ["a", "", "é", "", "", "", "😀", "\n", "b", ""]


@given(st.lists(st.integers(0, 256), max_size=24))
def test_byte_streaming_matches_decode_even_for_invalid_utf8(ids):
    tok = ByteTokenizer()
    assert "".join(streamed(tok, ids)) == tok.decode(ids)


# ---- sentencepiece ---------------------------------------------------------------------

def _corpus(seed: int = 7, lines: int = 600) -> list[str]:
    rng = random.Random(seed)
    syllables = ["ka", "to", "ri", "me", "sa", "nu", "po", "li", "qua", "zen", "é", "日"]
    vocab = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 3))) for _ in range(80)]
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 10))) for _ in range(lines)]


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def sp_tok(request):
    config = TokenizerConfig(kind="sentencepiece", model_type=request.param, vocab_size=320)
    return train_sentencepiece(_corpus(), config)


def test_sentencepiece_specials_and_round_trip(sp_tok):
    assert (sp_tok.eos_id, sp_tok.unk_id) == (0, 1)
    assert sp_tok.piece(0) == "<eos>" and sp_tok.piece(1) == "<unk>"
    # Unseen characters fall back to bytes; spacing is kept exactly, including a literal <eos>.
    lines = _corpus(seed=8, lines=20) + ["  two  spaces ", "Zürich 😀\ttab", "<eos> <unk>", ""]
    for line in lines:
        ids = sp_tok.encode(line)
        assert 0 not in ids and 1 not in ids
        assert sp_tok.decode(ids) == line
    ids = [token for line in lines for token in sp_tok.encode(line) + [0]]
    assert sp_tok.decode(ids) == "".join(line + "\n" for line in lines)
    assert sp_tok.encode_batch(lines) == [sp_tok.encode(line) for line in lines]


def test_sentencepiece_learns_subwords(sp_tok):
    # Pieces longer than one character exist, so lines encode shorter than their characters.
    line = _corpus()[0]
    assert len(sp_tok.encode(line)) < len(line)


def test_sentencepiece_word_index(sp_tok):
    line = "  kato  rime é😀 "
    encoded = sp_tok.encode_line(line)
    assert encoded.words == 3 and encoded.oov == [False] * 3
    ids = encoded.ids
    assert ids == sp_tok.encode(line)
    expected = []
    for k in range(len(ids)):
        before = sp_tok.decode(ids[:k])
        text = sp_tok.decode(ids[: k + 1])[len(before):]
        # A token that starts a word, or is only separator, belongs to the next word;
        # one that goes on from a word character continues that word.
        continues = bool(before) and not before[-1].isspace() and bool(text) and not text[0].isspace()
        expected.append(min(len(before.split()) - (1 if continues else 0), 2))
    assert encoded.word_index == expected
    assert expected[0] == 0 and expected[-1] == 2


def test_sentencepiece_is_deterministic_and_serializes(sp_tok):
    config = TokenizerConfig(kind="sentencepiece", model_type="bpe", vocab_size=320)
    first = train_sentencepiece(_corpus(), config)
    second = train_sentencepiece(_corpus(), config)
    assert first.to_dict() == second.to_dict()
    data = json.loads(json.dumps(sp_tok.to_dict()))
    rebuilt = tokenizer_from_dict(data)
    assert isinstance(rebuilt, SentencePieceTokenizer)
    assert fingerprint(rebuilt) == fingerprint(sp_tok)
    for line in _corpus(seed=9, lines=30):
        assert rebuilt.encode(line) == sp_tok.encode(line)


@given(data=st.data())
def test_sentencepiece_streaming_matches_decode(sp_tok, data):
    ids = data.draw(st.lists(st.integers(0, sp_tok.vocab_size - 1), max_size=20))
    assert "".join(streamed(sp_tok, ids)) == sp_tok.decode(ids)


def test_sentencepiece_streaming_of_encoded_text(sp_tok):
    ids = sp_tok.encode(" kato é😀") + [0] + sp_tok.encode("rime")
    parts = streamed(sp_tok, ids)
    assert "".join(parts) == " kato é😀\nrime"
    assert parts[0] == ""  # the leading space piece shows nothing until a character follows


def test_sentencepiece_training_is_silent(capfd):
    train_sentencepiece(_corpus(lines=100), TokenizerConfig(kind="sentencepiece", vocab_size=300))
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_sentencepiece_vocab_too_small_is_a_usage_error():
    with pytest.raises(UsageError, match="--vocab-size 100 is too small"):
        train_sentencepiece(_corpus(lines=50), TokenizerConfig(kind="sentencepiece", vocab_size=100))


def test_sentencepiece_without_text():
    with pytest.raises(DataError, match="no text"):
        train_sentencepiece(["", ""], TokenizerConfig(kind="sentencepiece"))


# ---- serialization ---------------------------------------------------------------------

@pytest.mark.parametrize("tok", [
    WordTokenizer(["<eos>", "<unk>", "b", "a"]),
    CharTokenizer(["<eos>", "<unk>", "x", " "]),
    ByteTokenizer(),
])
def test_dict_round_trip_and_file(tok, tmp_path):
    data = json.loads(json.dumps(tok.to_dict()))
    assert data["kind"] == tok.kind and data["version"] == 1
    rebuilt = tokenizer_from_dict(data)
    assert fingerprint(rebuilt) == fingerprint(tok)
    assert rebuilt.encode("a x b") == tok.encode("a x b")
    path = tmp_path / "tok.json"
    save_tokenizer(tok, str(path))
    assert fingerprint(load_tokenizer_file(str(path))) == fingerprint(tok)


def test_fingerprint_tells_vocabularies_apart():
    fingerprints = {fingerprint(WordTokenizer(["<eos>", "<unk>", "a", "b"])),
                    fingerprint(WordTokenizer(["<eos>", "<unk>", "b", "a"])),
                    fingerprint(CharTokenizer(["<eos>", "<unk>", "a", "b"])),
                    fingerprint(ByteTokenizer())}
    assert len(fingerprints) == 4
    assert all(len(f) == 16 and int(f, 16) >= 0 for f in fingerprints)


@pytest.mark.parametrize("data", [
    [], {"version": 1}, {"kind": "word", "version": 2, "pieces": ["<eos>", "<unk>"]},
    {"kind": "morse", "version": 1},
    {"kind": "word", "version": 1, "pieces": ["<unk>", "<eos>", "a"]},
    {"kind": "word", "version": 1, "pieces": ["<eos>", "<unk>", "a", "a"]},
    {"kind": "word", "version": 1, "pieces": ["<eos>", "<unk>", "a b"]},
    {"kind": "char", "version": 1, "pieces": ["<eos>", "<unk>", "ab"]},
    {"kind": "sentencepiece", "version": 1, "model": "not base64!"},
    {"kind": "sentencepiece", "version": 1, "model": "AAAA"},
])
def test_bad_dicts_are_data_errors(data):
    with pytest.raises(DataError):
        tokenizer_from_dict(data)


def test_load_tokenizer_file_errors(tmp_path):
    with pytest.raises(InputMissingError):
        load_tokenizer_file(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not a tokenizer file"):
        load_tokenizer_file(str(bad))
    binary = tmp_path / "bin"
    binary.write_bytes(b"RNNLMTOK\xff\xfe")
    with pytest.raises(DataError):
        load_tokenizer_file(str(binary))
