"""--max-wall-time: training stops early enough for the validation and save that follow it."""

import itertools
import json
import math
import re
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.train import loop, wall_budget
from rnnlm_cli.train.budget import RunBudget
from rnnlm_cli.train.loop import OutputPaths, Trainer
from rnnlm_cli.train.result import SilentCallbacks

CPU = torch.device("cpu")


def test_the_sooner_clock_bounds_the_run_and_its_schedule():
    budget = RunBudget(TrainConfig(max_time=100.0), steps_per_epoch=10)
    assert budget.limit == 100.0 and budget.time_reason() == "max_time"
    budget.limit_wall(40.0)
    assert budget.limit == 40.0 and budget.time_reason() == "max_wall_time"
    assert not budget.out_of_time(39.9) and budget.out_of_time(40.0)
    assert budget.share_spent(10.0) == pytest.approx(0.25)  # the schedule anneals over the 40 s
    budget.limit_wall(400.0)
    assert budget.limit == 100.0 and budget.time_reason() == "max_time"
    assert budget.share_spent(10.0) == pytest.approx(0.1)
    alone = RunBudget(TrainConfig(), steps_per_epoch=10)
    alone.limit_wall(5.0)
    assert alone.limit == 5.0 and alone.time_reason() == "max_wall_time"


class Heard(SilentCallbacks):
    def __init__(self):
        self.wall, self.progress = None, []

    def on_wall_budget(self, budget):
        self.wall = budget

    def on_validation_progress(self, done, total):
        self.progress.append((done, total))


def test_the_trainer_keeps_time_for_the_validations_after_it(tmp_path, monkeypatch):
    ticks = itertools.count()
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(ticks) * 0.01)  # known, not measured
    torch.manual_seed(0)
    tokens = np.random.default_rng(0).integers(0, 20, size=6000).astype(np.uint16)
    model = build_model(ModelConfig(vocab_size=20, emb=8, hidden=8, layers=1, dropout=0.0))
    config = TrainConfig(batch_size=4, bptt=10, epochs=1000, device="cpu", log_interval=1)
    heard = Heard()
    trainer = Trainer(model, tokens[:5000], tokens[5000:], {"kind": "byte", "version": 1}, config, CPU,
                      OutputPaths.beside(str(tmp_path / "m.pt")), heard, wall_deadline=time.monotonic() + 10.0,
                      validations_after=2)
    result = trainer.run()
    wall = heard.wall
    assert result.stop_reason == "max_wall_time"
    assert 0.0 < wall["wall_left"] <= 10.0  # less the real time building the trainer took
    assert wall["training_seconds"] == pytest.approx(wall["wall_left"] - wall["reserve"])
    assert wall["reserve"] > wall_budget.SAVE_SECONDS  # two validations' worth on top of the saves
    # Validation told its progress, up to all of the validation stream.
    assert heard.progress and heard.progress[-1][0] == heard.progress[-1][1]


def test_the_command_says_what_the_wall_clock_leaves_for_training(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat .\na dog sat on a log .\n" * 400)
    result = CliRunner().invoke(app, ["train", str(corpus), "--out", str(tmp_path / "m.pt"), "--max-wall-time", "6",
                                      "--epochs", "1000", "--emb", "8", "--hidden", "8", "--layers", "1",
                                      "--batch-size", "4", "--log-interval", "1", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    assert "--max-wall-time: " in result.stderr and "keeping " in result.stderr
    assert "steps planned" in result.stderr and "of training left" in result.stderr  # for the whole run
    assert "--max-wall-time stops the run after" in result.stderr and "--max-time stops" not in result.stderr
    valid = re.search(r"valid: loss ([\d.]+) ppl [\d.]+ per token, ([\d.]+) bits per token", result.stderr)
    assert valid and float(valid.group(2)) == pytest.approx(float(valid.group(1)) / math.log(2), abs=1e-3)
    assert json.loads(result.stdout)["stop_reason"] == "max_wall_time"
