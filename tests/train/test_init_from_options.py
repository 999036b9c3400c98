"""Options that --init-from's model overrides are refused or said to be unused, never silently dropped."""

import pytest
from typer.testing import CliRunner

from rnnlm_cli.cli import app

SMALL = ["--max-steps", "1", "--batch-size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("init")
    corpus = folder / "corpus.txt"
    corpus.write_text("the cat sat on the mat .\na dog sat on a log .\n" * 60)
    out = folder / "m.pt"
    result = CliRunner().invoke(app, ["train", str(corpus), "--out", str(out), "--emb", "8", "--hidden", "8",
                                      "--layers", "1", *SMALL])
    assert result.exit_code == 0, result.output
    return corpus, out


def retrain(trained, tmp_path, *extra):
    corpus, model = trained
    return CliRunner().invoke(app, ["train", str(corpus), "--init-from", str(model), "--out", str(tmp_path / "again.pt"),
                                    *SMALL, *extra])


def test_another_tokenizer_kind_is_refused(trained, tmp_path):
    result = retrain(trained, tmp_path, "--tokenizer", "char")
    assert result.exit_code == 2
    assert "--tokenizer char: the model in" in result.stderr and "has a word tokenizer" in result.stderr
    assert not (tmp_path / "again.pt").exists()


def test_the_same_kind_is_accepted_and_learning_options_are_said_to_be_unused(trained, tmp_path):
    result = retrain(trained, tmp_path, "--tokenizer", "word", "--min-count", "3")
    assert result.exit_code == 0, result.output
    assert "warning: --min-count not used: the run keeps the tokenizer of" in result.stderr
