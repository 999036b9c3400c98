"""Words of text that look like Kaldi's symbols ("stage #0", "stage #2"): Kaldi reserves
<eps>, <s>, </s> and #0 (utils/validate_dict_dir.pl refuses them as lexicon words) and its only
word-level disambiguation symbol is #0, so #2 is a word. The chain export -> words.txt ->
--symbols -> rescoring keeps #2 and never writes #0 twice."""

from __future__ import annotations

from conftest import cli, tiny_model, write_lines
from rnnlm_cli.config import TokenizerConfig
from rnnlm_cli.store.checkpoint import save_checkpoint
from rnnlm_cli.text.corpus import encode_corpus
from rnnlm_cli.text.symbol_tables import read_symbol_table, table_words

LINES = ["release notes for stage #0", "stage #2 is done", "stage #0 and stage #2 are done", "<s> is a tag"]


def model_of(tmp_path):
    corpus = write_lines(tmp_path / "notes.txt", LINES)
    tokenizer = encode_corpus(str(corpus), str(tmp_path / "notes.tok"), config=TokenizerConfig()).tokenizer
    assert {"#0", "#2", "<s>"} <= set(tokenizer.pieces)
    model = tmp_path / "m.pt"
    save_checkpoint(model, tiny_model(tokenizer.vocab_size), tokenizer.to_dict())
    return model, tokenizer


def test_export_leaves_reserved_words_out_and_keeps_hash_words(tmp_path):
    model, tokenizer = model_of(tmp_path)
    words = tmp_path / "words.txt"
    done = cli("export", model, "--format", "symbols", "--out", words)
    assert done.exit_code == 0, done.stderr
    assert "2 word(s) left out" in done.stderr and "#0" in done.stderr and "<s>" in done.stderr
    layout, entries = read_symbol_table(str(words))  # unique symbols and ids, or it raises
    symbols = [symbol for symbol, _ in entries]
    assert layout == "kaldi" and symbols.count("#0") == 1 and symbols.count("<s>") == 1
    assert symbols[-3:] == ["#0", "<s>", "</s>"]  # as prepare_lang.sh ends a table
    kept = table_words(layout, entries)
    assert "#2" in kept and "#0" not in kept and "<s>" not in kept
    assert set(kept) == set(tokenizer.pieces) - {"#0", "<s>"}


def test_rescoring_through_the_exported_table_keeps_hash_words(tmp_path):
    model, _ = model_of(tmp_path)
    words = tmp_path / "words.txt"
    assert cli("export", model, "--format", "symbols", "--out", words).exit_code == 0
    ids = {symbol: symbol_id for symbol, symbol_id in read_symbol_table(str(words))[1]}
    hypothesis = ["stage", "#2", "is", "done"]
    nbest = tmp_path / "words.ids"
    nbest.write_text("u1-1 " + " ".join(str(ids[w]) for w in hypothesis) + f" {ids['</s>']}\n")
    table_run = cli("eval", model, "--nbest", nbest, "--nbest-format", "kaldi", "--symbols", words,
                    "--output", "token-scores")
    text_run = cli("eval", model, "--nbest", write_lines(tmp_path / "text.nbest", ["u1-1 stage #2 is done"]),
                   "--nbest-format", "kaldi", "--output", "token-scores")
    assert table_run.exit_code == 0 and text_run.exit_code == 0, table_run.stderr + text_run.stderr
    # Four words and the sentence end: #2 is scored as the word it is, as from the text.
    assert len(table_run.stdout.split()) == 1 + 4 + 1
    assert table_run.stdout == text_run.stdout
