"""Recognisers' vocabularies: `rnnlm tokenize --symbols` (a Kaldi words.txt or an ESPnet token list),
`rnnlm export --format symbols`, and a model trained on such a vocabulary rescoring an n-best list."""

from __future__ import annotations

import math

import pytest

from rnnlm_cli.errors import DataError
from rnnlm_cli.text.symbol_tables import symbol_lines
from rnnlm_cli.text.tokenizers import tokenizer_from_table
from rnnlm_cli.text.tokenizers import WordTokenizer, fingerprint, tokenizer_from_dict

from conftest import cli

# A Kaldi table as prepare_lang.sh writes one: ids not in the order the words are listed here.
KALDI = "<eps> 0\n<unk> 1\ndog 3\nthe 2\ncat 4\nruns 5\n. 6\n#0 7\n<s> 8\n</s> 9\n"
ESPNET = "<blank>\n<unk>\n\u2581the\n\u2581do\ng\n\u2581cat\ns\n<sos/eos>\n"
CORPUS = "the dog runs .\nthe cat runs .\na cat runs .\n" * 4
TRAIN = ["--hidden", "8", "--emb", "8", "--layers", "1", "--epochs", "1", "--batch-size", "2", "--bptt", "4",
         "--max-steps", "2", "--max-time", "0", "--device", "cpu"]


def ok(*args, input=None):
    result = cli(*args, input=input)
    assert result.exit_code == 0, result.stderr
    return result


def test_a_kaldi_table_keeps_its_word_order_after_the_projects_specials(tmp_path):
    (tmp_path / "words.txt").write_text(KALDI)
    tok = tokenizer_from_table(str(tmp_path / "words.txt"))
    # <eos> 0 and <unk> 1 as always; then the table's words by the table's ids: the 2, dog 3, ...
    assert tok.pieces == ["<eos>", "<unk>", "the", "dog", "cat", "runs", "."]
    ids = ok("tokenize", "-", "--symbols", tmp_path / "words.txt", "--print", "ids", input="the dog sat .\n").stdout
    assert ids == "2 3 1 6\n"


def test_an_espnet_token_list_maps_blank_unk_and_sos_eos(tmp_path):
    (tmp_path / "tokens.txt").write_text(ESPNET, encoding="utf-8")
    tok = tokenizer_from_table(str(tmp_path / "tokens.txt"))
    assert tok.pieces == ["<eos>", "<unk>", "\u2581the", "\u2581do", "g", "\u2581cat", "s"]
    assert tok.encode("\u2581the \u2581do g <blank>") == [2, 3, 4, 1]


@pytest.mark.parametrize("table", [KALDI, ESPNET])
def test_the_table_round_trips_through_the_stored_tokenizer(tmp_path, table):
    (tmp_path / "t.txt").write_text(table, encoding="utf-8")
    tok = tokenizer_from_table(str(tmp_path / "t.txt"))
    again = tokenizer_from_dict(tok.to_dict())
    assert "\n".join(symbol_lines(again)) + "\n" == table
    assert again.pieces == tok.pieces and fingerprint(again) == fingerprint(tok)
    # A learned tokenizer's stored form is as before: no symbols key, the same fingerprint as ever.
    assert "symbols" not in WordTokenizer(tok.pieces).to_dict()


@pytest.mark.parametrize("table,where", [("a 1\nb 1\n", "t.txt:2"), ("a 1\na 2\n", "t.txt:2"), ("a 1\nb\n", "t.txt:2"),
                                         ("a\nb c\n", "t.txt:2"), ("<eps> 0\n#0 1\n", "no words")])
def test_bad_tables_are_bad_data(tmp_path, table, where):
    (tmp_path / "t.txt").write_text(table)
    with pytest.raises(DataError, match=where):
        tokenizer_from_table(str(tmp_path / "t.txt"))
    result = cli("tokenize", "-", "--symbols", tmp_path / "t.txt", "--print", "ids", input="a\n")
    assert result.exit_code == 65 and len(result.stderr.splitlines()) == 1, result.stderr


def test_a_stored_table_that_is_not_one_is_refused():
    data = WordTokenizer(["<eos>", "<unk>", "a"]).to_dict()
    with pytest.raises(DataError, match="symbols"):
        tokenizer_from_dict({**data, "symbols": {"layout": "kaldi", "entries": [["a", -1]]}})


def exported_after_training(tmp_path, table: bytes) -> bytes:
    """The bytes `export --format symbols` writes for a model trained on the table's vocabulary."""
    (tmp_path / "words.txt").write_bytes(table)
    (tmp_path / "corpus.txt").write_text(CORPUS)
    ok("tokenize", tmp_path / "corpus.txt", "--symbols", tmp_path / "words.txt", "--out", tmp_path / "c.tok")
    ok("train", tmp_path / "c.tok", "--valid", tmp_path / "corpus.txt", "--out", tmp_path / "m.pt", *TRAIN)
    ok("export", tmp_path / "m.pt", "--format", "symbols", "--out", tmp_path / "back.txt")
    return (tmp_path / "back.txt").read_bytes()


def test_a_model_trained_on_a_kaldi_table_exports_it_and_rescores_ids(tmp_path):
    assert exported_after_training(tmp_path, KALDI.encode()) == KALDI.encode()

    # Hypotheses as Kaldi ids (2 = the, 3 = dog, 4 = cat, 5 = runs); "a" was never in the table.
    (tmp_path / "text.ids").write_text("u-1 2 3 5 6\nu-2 8 2 4 5 9\n")
    (tmp_path / "text").write_text("the dog runs .\nthe cat runs\n")
    by_ids = ok("eval", tmp_path / "m.pt", "--nbest", tmp_path / "text.ids", "--symbols", tmp_path / "words.txt",
                "--output", "sentence-scores", "--device", "cpu").stdout.split()
    alone = ok("eval", tmp_path / "m.pt", tmp_path / "text", "--context", "sentence", "--per-sentence", "--unk",
               "--device", "cpu").stdout.split()
    assert [float(x) for x in by_ids] == pytest.approx([float(x) for x in alone], abs=2e-6)
    assert all(math.isfinite(float(x)) and float(x) < 0 for x in by_ids)


def test_a_learned_word_model_exports_a_kaldi_table(saved_model, tmp_path):
    path, _, tokenizer = saved_model
    ok("export", path, "--format", "symbols", "--out", tmp_path / "words.txt")
    lines = (tmp_path / "words.txt").read_text().splitlines()
    words = tokenizer.pieces[1:]  # <eos> is the model's line end, no word of the table
    assert lines == [f"{s} {i}" for i, s in enumerate(["<eps>", *words, "#0", "<s>", "</s>"])]


def test_symbols_refuses_a_second_tokenizer_and_learning_options(saved_model, tmp_path):
    (tmp_path / "words.txt").write_text(KALDI)
    for extra in (["--tokenizer", saved_model[0]], ["--min-count", "2"]):
        result = cli("tokenize", "-", "--symbols", tmp_path / "words.txt", "--print", "ids", *extra, input="the\n")
        assert result.exit_code == 2 and "--symbols" in result.stderr, result.stderr


def test_an_espnet_nbest_of_bpe_pieces_is_scored_per_piece(tmp_path):
    import torch

    from conftest import tiny_model
    from rnnlm_cli.store.checkpoint import save_checkpoint

    (tmp_path / "tokens.txt").write_text(ESPNET, encoding="utf-8")
    tok = tokenizer_from_table(str(tmp_path / "tokens.txt"))
    model = tiny_model(tok.vocab_size, seed=3)
    save_checkpoint(tmp_path / "m.pt", model, tok.to_dict())
    # ESPnet writes hypotheses as their pieces, space-separated; 'x' is not a piece: <unk>.
    (tmp_path / "hyps").write_text("utt-1 \u2581the \u2581do g s\nutt-2 \u2581cat x\n", encoding="utf-8")
    out = ok("eval", tmp_path / "m.pt", "--nbest", tmp_path / "hyps", "--output", "token-scores",
             "--device", "cpu").stdout.splitlines()
    with torch.no_grad():
        for line, ids in zip(out, [[2, 3, 4, 6], [5, 1]]):
            logits, _ = model(torch.tensor([0, *ids]).unsqueeze(1))  # (T, 1, V)
            logp = torch.log_softmax(logits[:, 0].double(), -1)[torch.arange(len(ids) + 1), torch.tensor([*ids, 0])]
            assert [float(x) for x in line.split()[1:]] == pytest.approx((-logp).tolist(), abs=6e-5)


@pytest.mark.parametrize("table", [
    b"\xef\xbb\xbf<eps> 0\r\n<unk> 1\r\nthe 2\r\ndog 3\r\n",  # a byte-order mark and CRLF, as Windows tools write
    b"<eps>\t0\nthe\t1\n\ndog\t2\n",  # tabs and a blank line
    b"the 1\ndog 2",  # no line end after the last entry
    "<blank>\n<unk>\n\u2581b\u00e4r\r\n<sos/eos>\n".encode(),  # an ESPnet list, one CRLF
])
def test_export_gives_the_table_back_byte_for_byte(tmp_path, table):
    assert exported_after_training(tmp_path, table) == table


def test_a_plain_table_is_stored_once():
    tok = WordTokenizer(["<eos>", "<unk>", "the"], symbols={"layout": "kaldi", "entries": [["<eps>", 0], ["the", 1]]})
    assert "text" not in tok.to_dict()["symbols"]


@pytest.mark.parametrize("table,line", [(b"<eps> 0\nthe 1\nd\xffg 2\n", 3), (b"\xe4 0\n", 1)])
def test_a_table_of_invalid_utf8_is_bad_data_with_its_line(tmp_path, table, line):
    (tmp_path / "words.txt").write_bytes(table)
    with pytest.raises(DataError, match=f"words.txt:{line}: invalid UTF-8"):
        tokenizer_from_table(str(tmp_path / "words.txt"))
    result = cli("tokenize", "-", "--symbols", tmp_path / "words.txt", "--print", "ids", input="the\n")
    assert result.exit_code == 65 and len(result.stderr.splitlines()) == 1, result.stderr


def test_eval_refuses_a_table_of_invalid_utf8(saved_model, tmp_path):
    (tmp_path / "words.txt").write_bytes(b"<eps> 0\nthe 1\nd\xffg 2\n")
    result = cli("eval", saved_model[0], "--nbest", "-", "--nbest-format", "kaldi", "--symbols",
                 tmp_path / "words.txt", "--device", "cpu", input="u-1 1 2\n")
    assert result.exit_code == 65 and "words.txt:3: invalid UTF-8" in result.stderr, result.stderr


def _stored(symbols):
    data = WordTokenizer(["<eos>", "<unk>", "the", "dog"]).to_dict()
    return {**data, "symbols": symbols}


@pytest.mark.parametrize("symbols,reason", [
    ({"layout": "kaldi", "entries": [["<eps>", 0], ["the", 1], ["dog", 1]]}, "id 1 is given twice"),
    ({"layout": "kaldi", "entries": [["<eps>", 0], ["the", 1], ["the", 2]]}, "symbol 'the' is given twice"),
    ({"layout": "espnet", "entries": [["the", 0], ["dog", 3]]}, "text and entries differ"),
    ({"layout": "kaldi", "entries": [["<eps>", 0], ["dog", 1], ["the", 2]]}, "vocabulary differ"),
    ({"layout": "kaldi", "entries": [["<eps>", 0], ["the", 1], ["dog", 2]], "text": "<eps> 0\nthe 1\ncat 2\n"},
     "text and entries differ"),
])
def test_a_stored_table_that_reading_its_file_would_refuse_is_refused(symbols, reason):
    with pytest.raises(DataError, match=reason):
        tokenizer_from_dict(_stored(symbols))


def test_training_refuses_a_tokenizer_file_whose_table_repeats_an_id(tmp_path):
    import json

    (tmp_path / "tok.json").write_text(json.dumps(_stored(
        {"layout": "kaldi", "entries": [["<eps>", 0], ["the", 1], ["dog", 1]]})))
    (tmp_path / "corpus.txt").write_text(CORPUS)
    result = cli("train", tmp_path / "corpus.txt", "--tokenizer", tmp_path / "tok.json", "--out", tmp_path / "m.pt",
                 *TRAIN)
    assert result.exit_code == 65 and "id 1 is given twice" in result.stderr, result.stderr
    assert not (tmp_path / "m.pt").exists()


def test_the_kept_text_of_a_table_does_not_change_the_tokenizers_fingerprint(tmp_path):
    (tmp_path / "crlf.txt").write_bytes(KALDI.replace("\n", "\r\n").encode())
    (tmp_path / "lf.txt").write_text(KALDI)
    crlf, lf = tokenizer_from_table(str(tmp_path / "crlf.txt")), tokenizer_from_table(str(tmp_path / "lf.txt"))
    assert "text" in crlf.to_dict()["symbols"] and "text" not in lf.to_dict()["symbols"]
    assert fingerprint(crlf) == fingerprint(lf)


@pytest.mark.parametrize("data, message", [(b"\x00" * 10, "NUL byte"), (b"a" * (2 << 20), "over 1 MiB"),
                                           (None, "damaged or truncated gzip")])
def test_a_file_that_is_no_table_is_refused_at_its_first_line(tmp_path, data, message):
    import gzip

    path = tmp_path / "t.gz"
    path.write_bytes(data if data is not None else gzip.compress(b"<eps> 0\nthe 1\n")[:20])
    with pytest.raises(DataError, match=message):
        tokenizer_from_table(str(path))
