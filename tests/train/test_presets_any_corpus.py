"""Every shipped preset trains on a corpus of another size than it was tuned on: a 10,000-word one.

The corpus is synthetic (Zipf-distributed words w0..w9999, each at least once), so the
vocabulary is exactly the 10,000 words plus ``<eos>`` and ``<unk>``: the size at which a
preset's hand-set cutoffs for WikiText-2 (15,000) used to stop the run before it started.
"""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.presets import list_presets
from rnnlm_cli.store.checkpoint import load_checkpoint

WORDS = 10_000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = np.random.default_rng(7)
    ranks = np.minimum(rng.zipf(1.2, size=40_000) - 1, WORDS - 1)
    every = np.arange(WORDS)
    ids = np.concatenate([every, ranks])
    lines = [" ".join(f"w{i}" for i in ids[start:start + 12]) for start in range(0, len(ids), 12)]
    path = tmp_path_factory.mktemp("zipf") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("preset", sorted(list_presets()))
def test_every_preset_trains_on_a_10k_vocabulary(corpus, tmp_path, preset):
    out = tmp_path / "model.pt"
    result = CliRunner().invoke(app, ["train", str(corpus), "--preset", preset, "--max-steps", "1", "--device", "cpu",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    checkpoint = load_checkpoint(out)
    config = checkpoint.model_config
    if config.cutoffs:  # written out as token counts that fit this vocabulary
        assert config.adaptive_softmax == ",".join(map(str, config.cutoffs))
        assert config.cutoffs[-1] < config.vocab_size
    if preset != "char-cpu":
        assert config.vocab_size == WORDS + 2
    assert all(bool(torch.isfinite(t).all()) for t in checkpoint.state_dict.values())


def test_auto_says_which_output_layer_it_chose(corpus, tmp_path):
    out = tmp_path / "model.pt"
    result = CliRunner().invoke(app, ["train", str(corpus), "--max-steps", "1", "--emb", "8", "--hidden", "8",
                                      "--layers", "1", "--batch-size", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    cutoffs = load_checkpoint(out).model_config.cutoffs
    assert len(cutoffs) >= 2 and cutoffs[-1] < WORDS + 2
    assert f"output layer: adaptive softmax {','.join(map(str, cutoffs))}" in result.output


def test_shares_of_the_vocabulary_are_stored_as_counts(corpus, tmp_path):
    out = tmp_path / "model.pt"
    result = CliRunner().invoke(app, ["train", str(corpus), "--max-steps", "1", "--emb", "8", "--hidden", "8",
                                      "--layers", "1", "--batch-size", "4", "--adaptive-softmax", "3%,15%,45%",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(out).model_config.adaptive_softmax == "300,1500,4501"  # of 10,002 tokens
    assert "3%,15%,45% of the 10,002-token vocabulary" in result.output
    # Retraining from it: auto keeps its output layer; other cutoffs would not fit its weights.
    again = CliRunner().invoke(app, ["train", str(corpus), "--init-from", str(out), "--max-steps", "1",
                                     "--adaptive-softmax", "auto", "--out", str(tmp_path / "again.pt")])
    assert again.exit_code == 0, again.output
    assert load_checkpoint(tmp_path / "again.pt").model_config.adaptive_softmax == "300,1500,4501"
    other = CliRunner().invoke(app, ["train", str(corpus), "--init-from", str(out), "--max-steps", "1",
                                     "--adaptive-softmax", "2000,5000", "--out", str(tmp_path / "other.pt")])
    assert other.exit_code == 2
    assert "--adaptive-softmax 2000,5000 differs from the model" in other.output


def test_auto_counts_the_training_tokens_once(corpus, tmp_path, monkeypatch):
    from rnnlm_cli.models import output_layer

    calls = []
    counts = output_layer.token_counts
    # Every count of the training tokens, the output layer's and the <unk> stand-ins', comes here.
    monkeypatch.setattr(output_layer, "token_counts", lambda *args: calls.append(1) or counts(*args))
    out = tmp_path / "model.pt"
    result = CliRunner().invoke(app, ["train", str(corpus), "--max-steps", "1", "--emb", "8", "--hidden", "8",
                                      "--layers", "1", "--batch-size", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(calls) == 1
    assert result.output.count("output layer: adaptive softmax") == 1
