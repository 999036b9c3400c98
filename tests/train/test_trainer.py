"""The training loop: it learns, it stops when told, it clips, it keeps the best model."""

import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlm_cli.store.checkpoint import load_checkpoint, load_model
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.score.evaluate import evaluate_file
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.train.loop import OutputPaths, Trainer
from rnnlm_cli.train.job import TrainJob
from rnnlm_cli.train.run import run_training

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
CPU = torch.device("cpu")
BYTES = {"kind": "byte", "version": 1}


def _unigram_ppl(train_lines, test_lines):
    """Add-one unigram perplexity over words + <eos>, computed from counts alone."""
    counts = Counter(w for line in train_lines for w in line.split() + ["<eos>"])
    total, vocab = sum(counts.values()), len(counts) + 1
    nll, n = 0.0, 0
    for line in test_lines:
        for word in line.split() + ["<eos>"]:
            nll -= math.log((counts[word] + 1) / (total + vocab))
            n += 1
    return math.exp(nll / n)


def test_short_run_on_sample_corpus_beats_a_unigram_model_clearly(tmp_path):
    train_lines = (SAMPLE / "train.txt").read_text().splitlines()[:8000]
    valid_lines = (SAMPLE / "valid.txt").read_text().splitlines()[:1000]
    (tmp_path / "train.txt").write_text("\n".join(train_lines) + "\n")
    (tmp_path / "valid.txt").write_text("\n".join(valid_lines) + "\n")
    job = TrainJob(
        corpus=str(tmp_path / "train.txt"), valid=str(tmp_path / "valid.txt"), out=str(tmp_path / "m.pt"),
        model=ModelConfig(vocab_size=2, emb=32, hidden=64, layers=1, dropout=0.0),
        train=TrainConfig(lr=0.005, batch_size=16, bptt=20, epochs=1, max_steps=250, device="cpu"),
    )
    run_training(job)
    model, tokenizer, _ = load_model(tmp_path / "m.pt")
    result = evaluate_file(model, tokenizer, str(tmp_path / "valid.txt"), CPU)
    unigram = _unigram_ppl(train_lines, valid_lines)
    # The grammar's entropy bound is ppl 13.7 and a unigram model scores ~100:
    # after 250 small steps the LSTM must already sit far below the unigram.
    assert result.ppl < 0.5 * unigram, (result.ppl, unigram)


def _tiny_setup(tmp_path, **train):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, size=4000).astype(np.uint16)
    model = build_model(ModelConfig(vocab_size=20, emb=8, hidden=8, layers=1, dropout=0.0))
    config = TrainConfig(**{"batch_size": 4, "bptt": 10, "epochs": 1, "device": "cpu", "log_interval": 5, **train})
    paths = OutputPaths.beside(str(tmp_path / "model.pt"))
    return model, tokens[:3500], tokens[3500:], config, paths


def test_max_steps_stops_and_files_are_written(tmp_path):
    model, train, valid, config, paths = _tiny_setup(tmp_path, max_steps=7)
    result = Trainer(model, train, valid, BYTES, config, CPU, paths).run()
    assert result.steps == 7 and result.stop_reason == "max_steps"
    records = [json.loads(line) for line in Path(paths.metrics).read_text().splitlines()]
    assert [r["step"] for r in records if r["event"] == "train"] == [5]
    assert [r["event"] for r in records][-1] == "valid"
    assert load_checkpoint(paths.last).training_state["progress"]["step"] == 7
    assert load_checkpoint(paths.model).metrics["step"] == 7


def test_max_time_stops_a_long_run(tmp_path):
    model, train, valid, config, paths = _tiny_setup(tmp_path, epochs=10_000, max_time=0.5)
    result = Trainer(model, train, valid, BYTES, config, CPU, paths).run()
    assert result.stop_reason == "max_time"
    assert result.epochs < 10_000


def _one_sgd_step_change(tmp_path, clip):
    model, train, valid, config, paths = _tiny_setup(tmp_path, optimizer="sgd", lr=10.0, clip=clip, max_steps=1)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    Trainer(model, train, valid, BYTES, config, CPU, paths).run()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return float((after - before).norm())


def test_clip_bounds_the_total_gradient_norm(tmp_path):
    # One plain SGD step moves the weights by lr * ||g||; clipping caps ||g|| at --clip.
    assert _one_sgd_step_change(tmp_path, clip=0.01) == pytest.approx(10.0 * 0.01, rel=1e-3)
    assert _one_sgd_step_change(tmp_path, clip=0.0) > 10.0 * 0.05


def test_nan_validation_never_becomes_best(tmp_path, monkeypatch):
    model, train, valid, config, paths = _tiny_setup(tmp_path, max_steps=2)
    monkeypatch.setattr("rnnlm_cli.train.loop.stream_loss_sum", lambda *args: (float("nan"), 1))
    with pytest.raises(Exception, match="validation loss was never finite"):
        Trainer(model, train, valid, BYTES, config, CPU, paths).run()
    assert not Path(paths.model).exists()


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path):
    model, train, valid, config, paths = _tiny_setup(tmp_path, max_steps=6, max_bad_steps=3)
    calls = {"n": 0}
    original = model.forward

    def sometimes_nan(tokens, state=None, **options):
        calls["n"] += 1
        scores, state = original(tokens, state, **options)
        # Steps 2 and 4 of training produce a NaN loss; validation calls come later.
        return (scores * float("nan") if calls["n"] in (2, 4) else scores), state

    model.forward = sometimes_nan
    result = Trainer(model, train, valid, BYTES, config, CPU, paths).run()
    assert result.steps == 6 and result.skipped_steps == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    skipped = [json.loads(l) for l in Path(paths.metrics).read_text().splitlines() if '"skipped"' in l]
    assert len(skipped) == 2

    model2, train, valid, config, paths = _tiny_setup(tmp_path / "b", max_steps=6, max_bad_steps=3)
    with torch.no_grad():
        model2.decoder.bias.fill_(float("nan"))  # every step is bad now
    with pytest.raises(Exception, match="3 steps in a row"):
        Trainer(model2, train, valid, BYTES, config, CPU, paths).run()
    assert not Path(paths.model).exists()
