"""Each documented exit code, from the command line (the longer-running ones, 3, 75, 130 and
143, are exercised in test_training_survives.py with the runs that produce them)."""

import pytest
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.errors import (CheckpointError, DataError, InputMissingError, LockedError, NotPromotedError,
                              OutputError, TrainingInterrupted, UsageError)


def run(*args, input=None):
    return CliRunner().invoke(app, list(args), input=input)


def test_error_classes_carry_the_documented_codes():
    assert (UsageError.exit_code, DataError.exit_code, CheckpointError.exit_code, InputMissingError.exit_code,
            OutputError.exit_code, LockedError.exit_code, NotPromotedError.exit_code) == (2, 65, 65, 66, 73, 75, 3)
    assert TrainingInterrupted("x", 15).exit_code == 143 and TrainingInterrupted("x", 2).exit_code == 130


def test_exit_codes_from_the_command_line(tmp_path, saved_model, tiny_corpus):
    model, _, _ = saved_model
    a_file = tmp_path / "plain.txt"
    a_file.write_text("the dog runs .\n")
    cases = {
        0: ["eval", str(model), str(a_file)],
        2: ["train", str(tiny_corpus), "--cell", "transformer"],
        65: ["eval", str(a_file), str(a_file)],
        66: ["eval", str(model), str(tmp_path / "missing.txt")],
        # A folder path that runs through a regular file cannot be created.
        73: ["export", str(model), "--format", "embeddings", "--out", str(a_file / "sub" / "vectors.txt")],
    }
    for code, args in cases.items():
        result = run(*args)
        assert result.exit_code == code, (code, args, result.stderr)
        if code:
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("rnnlm: error: "), result.stderr


@pytest.mark.parametrize("target", ["train", "tokenize"])
def test_unwritable_output_is_73_and_leaves_nothing(tmp_path, tiny_corpus, target):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    out = blocker / "model.pt" if target == "train" else blocker / "corpus.tok"
    extra = ["--hidden", "8", "--emb", "8", "--layers", "1", "--epochs", "1"] if target == "train" else []
    result = run(target, str(tiny_corpus), "--out", str(out), *extra)
    assert result.exit_code == 73, result.stderr
    assert blocker.read_text() == "a file where a folder should be"


def test_disk_full_while_saving_is_73_and_keeps_the_old_file(tmp_path, saved_model, monkeypatch):
    import errno

    import torch

    from rnnlm_cli.store.checkpoint import load_checkpoint, save_checkpoint

    path, model, tokenizer = saved_model
    before = path.read_bytes()

    def disk_full(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OutputError, match="No space left"):
        save_checkpoint(path, model, tokenizer.to_dict())
    monkeypatch.undo()
    assert path.read_bytes() == before and load_checkpoint(path).state_dict
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".rnnlm-tmp-")]
