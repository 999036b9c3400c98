"""`rnnlm eval` reads the token files `tokenize` and `train` write, as it reads their text."""

import json

from typer.testing import CliRunner

from rnnlm_cli.cli import app

TEXT = "the dog runs .\nthe zebra sees a cat .\n\na dog .\n"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def scored(model, path, *extra):
    result = invoke("eval", model, path, "--json", "--device", "cpu", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_token_file_scores_as_its_text(saved_model, tmp_path):
    model, _, _ = saved_model
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    tokens = tmp_path / "t.tok"
    made = invoke("tokenize", text, "--tokenizer", model, "--out", tokens)
    assert made.exit_code == 0, made.output
    for extra in ((), ("--context", "sentence"), ("--unk",)):
        from_text, from_tokens = scored(model, text, *extra), scored(model, tokens, *extra)
        # "zebra" is not in the vocabulary: an OOV either way (scored as <unk> with --unk), never
        # a word spelled "<unk>".
        assert from_tokens["oovs"] == from_text["oovs"] == (0 if "--unk" in extra else 1)
        assert from_tokens["literal_specials"] == 0
        for key in ("sentences", "words", "tokens", "logprob", "ppl", "ppl1", "token_ppl"):
            assert from_tokens[key] == from_text[key], (extra, key)


def test_the_token_file_train_writes_is_scored(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat .\na dog sat on a log .\n" * 50)
    out = tmp_path / "m.pt"
    trained = invoke("train", corpus, "--out", out, "--emb", 8, "--hidden", 8, "--layers", 1, "--batch-size", 4,
                     "--max-steps", 2, "--device", "cpu")
    assert trained.exit_code == 0, trained.output
    held = scored(out, tmp_path / "m.train.tok")
    assert held["sentences"] > 0 and held["oovs"] == 0


def test_a_token_file_of_another_tokenizer_is_refused(saved_model, tmp_path):
    model, _, _ = saved_model
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    tokens = tmp_path / "chars.tok"
    assert invoke("tokenize", text, "--kind", "char", "--out", tokens).exit_code == 0
    result = invoke("eval", model, tokens, "--device", "cpu")
    assert result.exit_code == 65
    assert "another tokenizer" in result.stderr
