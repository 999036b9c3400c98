import os
import pickle

import pytest
import torch

from rnnlm_cli.store.checkpoint import FORMAT, VERSION, load_checkpoint, load_model, save_checkpoint
from rnnlm_cli.errors import CheckpointError, InputMissingError, TokenizerMismatchError

from conftest import tiny_model


def test_round_trip_restores_weights_config_and_tokenizer(saved_model):
    path, model, tokenizer = saved_model
    loaded, loaded_tokenizer, checkpoint = load_model(path)
    assert checkpoint.model_config == model.config
    assert checkpoint.metrics == {"valid_ppl": 1.0}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded_tokenizer.encode("the dog runs .") == tokenizer.encode("the dog runs .")
    tokens = torch.tensor([[1], [2], [3]])
    assert torch.allclose(loaded(tokens)[0], model(tokens)[0])


def test_tied_weights_stay_tied_after_loading(tmp_path, word_tokenizer):
    model = tiny_model(word_tokenizer.vocab_size, tied=True)
    path = tmp_path / "tied.pt"
    save_checkpoint(path, model, word_tokenizer.to_dict())
    loaded, _, _ = load_model(path)
    assert loaded.decoder.weight is loaded.embedding.weight


class _RunsCode:
    """Unpickling this calls open() on a marker path: the classic pickle payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": VERSION, "payload": _RunsCode(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="would run code"):
        load_checkpoint(evil)
    assert not marker.exists()

    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_RunsCode(str(marker))))
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_truncated_file_is_a_clear_error(saved_model, tmp_path):
    path, _, _ = saved_model
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(cut)


def test_newer_version_and_foreign_files_are_refused(saved_model, tmp_path):
    path, _, _ = saved_model
    payload = torch.load(path, weights_only=True)
    payload["version"] = VERSION + 1
    newer = tmp_path / "newer.pt"
    torch.save(payload, newer)
    with pytest.raises(CheckpointError, match="upgrade rnnlm"):
        load_checkpoint(newer)

    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not an rnnlm checkpoint"):
        load_checkpoint(foreign)

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(text)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputMissingError):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(InputMissingError):
        load_checkpoint(tmp_path)


def test_tokenizer_that_does_not_match_the_model_is_refused(tmp_path, word_tokenizer):
    model = tiny_model(word_tokenizer.vocab_size + 3)
    path = tmp_path / "mismatch.pt"
    save_checkpoint(path, model, word_tokenizer.to_dict())
    with pytest.raises(TokenizerMismatchError):
        load_model(path)


def test_save_is_atomic_when_writing_fails(tmp_path, word_tokenizer, monkeypatch):
    model = tiny_model(word_tokenizer.vocab_size)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, word_tokenizer.to_dict(), metrics={"round": 1})

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, model, word_tokenizer.to_dict(), metrics={"round": 2})
    monkeypatch.undo()
    assert load_checkpoint(path).metrics == {"round": 1}
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".rnnlm-tmp-")]
