"""The run's time, estimated once after its first steps, and the line `rnnlm train` prints for it."""

import itertools
import re

import pytest
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.train import loop
from rnnlm_cli.train.job import TrainJob
from rnnlm_cli.train.result import SilentCallbacks
from rnnlm_cli.train.run import run_training


class Recorder(SilentCallbacks):
    def __init__(self):
        self.start, self.estimates = None, []

    def on_start(self, info):
        self.start = info

    def on_estimate(self, estimate):
        self.estimates.append(estimate)


@pytest.fixture
def ticking_clock(monkeypatch):
    """A clock that reads 0.25 s later at every look, so timings are known, not measured."""
    ticks = itertools.count()
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(ticks) * 0.25)


def _valid(corpus, tmp_path):
    path = tmp_path / "valid.txt"
    path.write_text(corpus.read_text())
    return str(path)


def _job(corpus, tmp_path, **train):
    model = ModelConfig(vocab_size=2, emb=8, hidden=8, layers=1)
    config = TrainConfig(batch_size=2, bptt=5, log_interval=1000, **train)
    return TrainJob(corpus=str(corpus), out=str(tmp_path / "m.pt"), model=model, train=config,
                    valid=_valid(corpus, tmp_path))


def test_one_estimate_whose_figures_agree_with_each_other(tiny_corpus, tmp_path):
    recorder = Recorder()
    run_training(_job(tiny_corpus, tmp_path, max_steps=40), recorder)
    assert len(recorder.estimates) == 1
    estimate = recorder.estimates[0]
    assert estimate["timed_steps"] >= 1
    assert estimate["planned_steps"] == 40
    timed_until = 1 + estimate["timed_steps"]  # timing starts after the first step
    assert estimate["remaining_steps"] == 40 - timed_until
    per_step = estimate["seconds_per_step"]
    assert estimate["remaining_seconds"] == pytest.approx(per_step * estimate["remaining_steps"])
    assert estimate["seconds_per_epoch"] == pytest.approx(per_step * recorder.start["steps_per_epoch"])
    assert estimate["max_time_left"] is None


def test_the_clock_gives_the_seconds_per_step(tiny_corpus, tmp_path, ticking_clock):
    recorder = Recorder()
    run_training(_job(tiny_corpus, tmp_path, max_steps=60, max_time=1000), recorder)
    estimate = recorder.estimates[0]
    # Each look at the clock is 0.25 s; a step looks a fixed number of times, so the time
    # per step is a whole multiple of 0.25 s, and --max-time's remainder is what the clock says.
    assert estimate["seconds_per_step"] / 0.25 == pytest.approx(round(estimate["seconds_per_step"] / 0.25))
    assert 0 < estimate["max_time_left"] < 1000


def test_train_prints_the_estimate_and_where_max_time_stops_it(tiny_corpus, tmp_path, ticking_clock):
    result = CliRunner().invoke(app, ["train", str(tiny_corpus), "--emb", "8", "--hidden", "8", "--layers", "1",
                                      "--batch-size", "2", "--bptt", "5", "--epochs", "50", "--max-time", "30",
                                      "--valid", _valid(tiny_corpus, tmp_path), "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("time: "))
    assert "s a step (timed over" in line and "an epoch; " in line
    # The clock ends this run: the line says where, not how long the 50 epochs would take.
    stop = re.search(r"--max-time stops the run after .+ of training, near step ([\d,]+) of the ([\d,]+) planned", line)
    assert stop and int(stop.group(1).replace(",", "")) < int(stop.group(2).replace(",", "")), line
    assert "steps left take" not in line


@pytest.mark.parametrize("limits, clock", [({"max_time": 1000}, "--max-time"),
                                           ({"max_time": 1000, "max_wall_time": 500}, "--max-wall-time"),
                                           ({"max_wall_time": 500}, "--max-wall-time")])
def test_the_estimate_names_the_clock_that_ends_the_run(tiny_corpus, tmp_path, ticking_clock, limits, clock):
    recorder = Recorder()
    run_training(_job(tiny_corpus, tmp_path, max_steps=60, **limits), recorder)
    assert recorder.estimates[0]["clock"] == clock
