"""The run's time, estimated after its first steps and again as it goes (a range while the pace
is uncertain), and the lines `rnnlm train` prints for it."""

import itertools
import json
import random
import re

import pytest
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.cli.train_report import estimate_line
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.train import budget as budget_module, loop
from rnnlm_cli.train.budget import FEW_SPREAD, REFRESH_SECONDS, PaceWatch, RunBudget
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
    assert estimate["first"] and estimate["range"]  # ten steps: a range, however steady
    assert estimate["remaining_low"] < estimate["remaining_seconds"] < estimate["remaining_high"]
    # metrics.jsonl carries what was told.
    lines = (tmp_path / "m.metrics.jsonl").read_text().splitlines()
    told = [record for record in map(json.loads, lines) if record["event"] == "estimate"]
    assert [{k: v for k, v in record.items() if k not in ("event", "epoch")} for record in told] == recorder.estimates


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
    line = next(line for line in result.output.splitlines() if line.startswith("time ("))
    assert line.startswith("time (first estimate, 10 steps timed): ") and " s a step, " in line and "an epoch; " in line
    # The clock ends this run: the line says where, not how long the 50 epochs would take;
    # from ten steps, as a range of steps that holds where it did stop.
    stop = re.search(r"--max-time stops the run after .+ of training, near step ([\d,]+)-([\d,]+) of the ([\d,]+) "
                     r"planned \(validation not included\)$", line)
    low, high, planned = (int(stop.group(i).replace(",", "")) for i in (1, 2, 3)) if stop else (0, 0, 0)
    steps = int(re.search(r"steps +([\d,]+)", result.output).group(1).replace(",", ""))
    assert stop and low <= steps <= high < planned, (line, steps)
    assert "steps left take" not in line


@pytest.mark.parametrize("limits, clock", [({"max_time": 1000}, "--max-time"),
                                           ({"max_time": 1000, "max_wall_time": 500}, "--max-wall-time"),
                                           ({"max_wall_time": 500}, "--max-wall-time")])
def test_the_estimate_names_the_clock_that_ends_the_run(tiny_corpus, tmp_path, ticking_clock, limits, clock):
    recorder = Recorder()
    run_training(_job(tiny_corpus, tmp_path, max_steps=60, **limits), recorder)
    assert recorder.estimates[0]["clock"] == clock


# -- the estimate on a fake clock -------------------------------------------------------------

def _judged(durations):
    """The paces a PaceWatch judges when its steps take ``durations`` seconds (the first is
    the warm-up step timing starts after), each with the steps timed when it was judged."""
    watch, now, paces = PaceWatch(), 0.0, []
    for step, seconds in enumerate(durations, start=1):
        now += seconds
        if watch.observe(step, now):
            paces.append(watch.judge())
    return paces


def test_steady_steps_give_one_number_once_enough_are_timed():
    paces = _judged([5.0] + [0.1] * 400)  # a slow warm-up step, then 0.1 s each
    assert [pace.timed_steps for pace in paces] == [10, 20, 40, 80, 160, 320]
    for pace in paces:
        assert pace.seconds == pytest.approx(0.1)
        if pace.timed_steps < 50:  # few steps: a range, however steady
            assert pace.uncertain
            assert (pace.low, pace.high) == pytest.approx((0.1 / (1 + FEW_SPREAD), 0.1 * (1 + FEW_SPREAD)))
        else:
            assert not pace.uncertain and (pace.low, pace.high) == pytest.approx((0.1, 0.1))


def test_noisy_steps_give_a_range_that_holds_their_mean():
    rng = random.Random(0)
    durations = [rng.choice([0.05, 0.05, 0.05, 0.6]) for _ in range(400)]  # mean 0.1875 s, sd 0.24 s
    pace = _judged(durations)[4]
    assert pace.timed_steps == 160 and pace.uncertain
    assert pace.low < 0.1875 < pace.high
    steady = _judged([0.1875] * 400)[4]
    assert not steady.uncertain  # the same mean, steady: one number


def test_a_pace_that_moved_gives_a_range_over_both_paces():
    paces = _judged([1.0] * 21 + [0.2] * 400)  # 20 slow steps timed, then five times faster
    moved = next(pace for pace in paces if pace.timed_steps == 40)
    assert moved.seconds == pytest.approx(0.2) and moved.uncertain
    assert moved.low <= 0.2 / (1 + FEW_SPREAD) + 1e-9 and moved.high >= 1.0 * (1 + FEW_SPREAD) - 1e-9
    settled = next(pace for pace in paces if pace.timed_steps >= 160)
    assert not settled.uncertain and settled.seconds == pytest.approx(0.2)


def _told(monkeypatch, durations, **config):
    """(clock, estimate) for each estimate a RunBudget tells when its steps take ``durations``
    seconds on a fake clock, and the steps taken when ``config``'s --max-time ends the run."""
    clock = [0.0]
    monkeypatch.setattr(budget_module.time, "perf_counter", lambda: clock[0])
    budget = RunBudget(TrainConfig(**config), steps_per_epoch=1000)
    budget.start(0, 0.0)
    told, step = [], 0
    for step, seconds in enumerate(durations, start=1):
        clock[0] += seconds
        budget.estimate(step, lambda estimate: told.append((clock[0], estimate)))
        if budget.out_of_time(budget.elapsed()):
            break
    return told, step


def test_steady_steps_are_told_once(monkeypatch):
    told, _ = _told(monkeypatch, [0.1] * 5000, max_steps=5000)
    assert len(told) == 1
    estimate = told[0][1]
    assert estimate["first"] and estimate["timed_steps"] == 10 and estimate["seconds_per_step"] == pytest.approx(0.1)
    assert estimate["remaining_seconds"] == pytest.approx(0.1 * (5000 - 11))


def test_a_run_that_speeds_up_is_told_again_once_and_not_sooner_than_the_refresh_allows(monkeypatch):
    # The night run's story: slow first steps (2 s), then 0.5 s; --max-time 300 ends it.
    told, stopped_at = _told(monkeypatch, [2.0] * 31 + [0.5] * 2000, max_time=300)
    assert stopped_at == 30 + (300 - 62) / 0.5 + 1  # 62 s for the 31 slow steps
    assert len(told) == 2
    (first_at, first), (again_at, again) = told
    assert first["first"] and first["clock_ends_run"] and not again["first"]
    # Told after 5 steps (their 10 s tell a slow run early), with 288 s left: step 6 + 288 / 2,
    # within 288 / 2.5 and 288 / 1.6 (the pace from few steps, 25% either way).
    assert first["timed_steps"] == 5
    assert (first["stop_step"], first["stop_step_low"], first["stop_step_high"]) == (150, 121, 186)
    # The change shows within the minute but waits for the refresh; then it is right.
    assert again_at - first_at >= REFRESH_SECONDS and again_at < first_at + REFRESH_SECONDS + 1
    assert again["stop_step"] == pytest.approx(stopped_at, abs=2)


def test_the_lines_say_first_or_refreshed_and_give_a_range_only_when_uncertain():
    common = {"timed_steps": 640, "seconds_per_step": 0.05, "seconds_per_epoch": 120.0, "planned_steps": 2000,
              "remaining_steps": 1000, "max_time_left": None, "clock": "--max-time", "clock_ends_run": False}
    line = estimate_line({**common, "first": True, "range": True, "remaining_seconds": 690.0,
                          "remaining_low": 540.0, "remaining_high": 840.0, "validations_timed": 0})
    assert line == ("time (first estimate, 640 steps timed): 0.05 s a step, 2.0 min an epoch; the 1,000 steps left "
                    "take about 9.0-14.0 min of training (validation not included)")
    line = estimate_line({**common, "first": False, "range": False, "remaining_seconds": 600.0,
                          "remaining_low": 600.0, "remaining_high": 600.0, "validations_timed": 2})
    assert line == ("time (estimate refreshed, 640 steps timed): 0.05 s a step, 2.0 min an epoch; the 1,000 steps "
                    "left take about 10.0 min of training (the 2 validations so far included)")
    clocked = {**common, "first": False, "range": False, "clock_ends_run": True, "max_time_left": 30.0,
               "stop_step": 1600, "stop_step_low": 1600, "stop_step_high": 1600, "validations_timed": 1}
    assert "--max-time stops the run after 30 s of training, near step 1,600 of the 2,000 planned (the 1 validation " \
           "so far included)" in estimate_line(clocked)
