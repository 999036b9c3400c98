"""Every file a command writes gets the mode a plain ``open()`` would give it under the user's umask.

Writes go through a private temporary file (``mkstemp``, 0600) renamed into place, and some
writers (safetensors, ONNX) make their own file at the temporary name; a shared model folder
must still see group-readable files where the umask says so.
"""

import importlib.util
import os
import stat

import pytest
from typer.testing import CliRunner

from rnnlm_cli.cli import app

UMASK = 0o027
EXPECTED = 0o666 & ~UMASK  # 0640


@pytest.fixture
def umask():
    previous = os.umask(UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_train_tokenize_and_export_outputs_follow_the_umask(tmp_path, umask):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 200)
    out = tmp_path / "model.pt"
    run("train", corpus, "--out", out, "--emb", 8, "--hidden", 8, "--layers", 1, "--batch-size", 4,
        "--max-steps", 2, "--device", "cpu")
    written = [out, tmp_path / "model.last.pt", tmp_path / "model.metrics.jsonl", tmp_path / "model.train.tok"]
    run("tokenize", corpus, "--out", tmp_path / "corpus.tok", "--save-tokenizer", tmp_path / "tok.json")
    written += [tmp_path / "corpus.tok", tmp_path / "tok.json"]
    formats = [("safetensors", "model.safetensors"), ("embeddings", "model.vec")]
    if importlib.util.find_spec("onnx") is not None:
        formats.append(("onnx", "model.onnx"))
    for kind, name in formats:
        run("export", out, "--format", kind, "--out", tmp_path / name)
        written.append(tmp_path / name)
    assert {path.name: oct(mode(path)) for path in written} == {path.name: oct(EXPECTED) for path in written}
