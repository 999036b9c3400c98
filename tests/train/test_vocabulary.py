"""Out-of-vocabulary figures against hand counts, and when --grow-vocab learns a new vocabulary."""

from __future__ import annotations

import pytest

from rnnlm_cli.config import TokenizerConfig
from rnnlm_cli.text.corpus import encode_corpus
from rnnlm_cli.text.tokenizers import WordTokenizer
from rnnlm_cli.train.vocabulary import VocabularyGrowth, oov_figures, oov_note

KNOWN = WordTokenizer(["<eos>", "<unk>", "the", "cat", "sat"])
TEXT = "the cat sat\nthe dog sat on the mat\n<unk> dog <eos>\n"
# Words: 3 + 6 + 3 = 12. Outside KNOWN: dog, on, mat, dog, <eos> = 5 (a literal <unk> is the
# unknown word itself, in every vocabulary, and not counted), of 4 distinct spellings.


def test_oov_counts_of_a_given_vocabulary_match_the_hand_count(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    stats = encode_corpus(str(text), str(tmp_path / "t.tok"), tokenizer=KNOWN)
    assert (stats.words, stats.oov_tokens, stats.oov_types) == (12, 5, 4)
    assert oov_figures(stats.words, stats.oov_tokens, stats.oov_types)["oov_rate"] == pytest.approx(5 / 12)


def test_a_learned_vocabulary_counts_what_min_count_leaves_out(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    stats = encode_corpus(str(text), str(tmp_path / "t.tok"), config=TokenizerConfig(min_count=2))
    # Kept: the (3), sat (2), dog (2). Out: cat, on, mat and the literal <eos>, once each.
    assert (stats.words, stats.oov_tokens, stats.oov_types) == (12, 4, 4)


def test_the_note_gives_each_text_its_share():
    note = oov_note({"train": {**oov_figures(200, 3, 2), "text": "all.txt"},
                     "valid": {**oov_figures(50, 0, 0), "text": "dev.txt"}}, 1234)
    assert "1,234-entry vocabulary" in note
    assert "all.txt 1.50% of 200 (3 words, 2 distinct)" in note and "dev.txt 0.00% of 50" in note


def grow(tmp_path, grow_at: float, text: str = TEXT):
    path = tmp_path / "t.txt"
    path.write_text(text)
    growth = VocabularyGrowth(KNOWN, grow_at, "current.pt")
    stats = encode_corpus(str(path), str(tmp_path / "t.tok"), config=TokenizerConfig(), choose=growth)
    return growth, stats


def test_grown_when_the_share_outside_reaches_the_rate(tmp_path):
    growth, stats = grow(tmp_path, 0.4)  # 5 of 12 words are outside KNOWN: 0.417
    assert growth.grown and growth.figures["oov_rate_before"] == pytest.approx(5 / 12)
    assert stats.tokenizer.pieces[2:] == ["the", "dog", "sat", "cat", "mat", "on"]
    assert stats.oov_tokens == 1  # the literal <eos>, outside every vocabulary
    assert "vocabulary grown: 41.67% of the corpus's words are outside the vocabulary of current.pt" in growth.note
    assert "(3 new, 0 dropped)" in growth.note


def test_kept_below_the_rate_and_the_text_encoded_as_the_kept_vocabulary_reads_it(tmp_path):
    growth, stats = grow(tmp_path, 0.5)
    assert not growth.grown and stats.tokenizer is KNOWN
    assert (stats.oov_tokens, stats.oov_types) == (5, 4)
    assert "vocabulary kept" in growth.note and "below --grow-vocab 0.5" in growth.note


def test_kept_when_nothing_new_would_come_in(tmp_path):
    growth, _ = grow(tmp_path, 0.0, text="the cat sat\n<unk> sat\n")
    assert not growth.grown and "adds no word" in growth.note


def test_grow_vocab_refuses_a_token_file_corpus_and_is_said_to_be_used(tmp_path, toy):
    """A token file's words are already ids of its vocabulary: there is nothing to learn from."""
    from conftest import cli, one_error_line

    tokens = tmp_path / "c.tok"
    assert cli("tokenize", toy["train"], "--tokenizer", toy["model"], "--out", tokens).exit_code == 0
    refused = cli("train", tokens, "--valid", toy["valid"], "--init-from", toy["model"], "--grow-vocab", "0.01",
                  "--out", tmp_path / "m.pt", "--max-steps", "2")
    assert refused.exit_code == 2
    assert "--grow-vocab" in one_error_line(refused.stderr) and "token file" in refused.stderr
    # From text it is used, with --min-count: no warning that the tokenizer options go unused.
    grown = cli("train", toy["train"], "--valid", toy["valid"], "--init-from", toy["model"], "--grow-vocab", "0",
                "--min-count", "2", "--out", tmp_path / "g.pt", "--max-steps", "2", "--max-time", "0")
    assert grown.exit_code == 0, grown.stderr
    assert "not used" not in grown.stderr
    assert "vocabulary kept: 0.00% of the corpus" in grown.stderr and "(the corpus adds no word" in grown.stderr
