"""--max-wall-time that cannot buy real training is refused before the first step (exit 4),
and a run that trained but has no finite validation does not exit 0."""

import itertools
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from conftest import cli, console_env, make_lines, write_lines
from rnnlm_cli.errors import TooLittleTimeError
from rnnlm_cli.store.checkpoint import load_checkpoint
from rnnlm_cli.train import loop, wall_budget
from rnnlm_cli.train.wall_budget import MAX_MIN_STEPS, MIN_STEPS, WallBudget, fewest_steps

# Every option a run would otherwise fit and note, given: stderr holds what the run itself says.
SMALL = ["--emb", "8", "--hidden", "8", "--layers", "1", "--batch-size", "4", "--bptt", "8", "--lr", "0.01",
         "--dropout", "0", "--device", "cpu"]


@pytest.fixture
def texts(tmp_path):
    return (write_lines(tmp_path / "train.txt", make_lines(400, seed=1)),
            write_lines(tmp_path / "valid.txt", make_lines(40, seed=2)))


def _step_takes(monkeypatch, seconds):
    """The speed probe says a step takes ``seconds``, whatever this machine's speed."""
    monkeypatch.setattr(wall_budget, "seconds_per_step", lambda *args: seconds)


@pytest.mark.parametrize("steps_per_epoch, steps_left, fewest", [
    (100, 10_000, MIN_STEPS),            # a small corpus: the floor
    (20_000, 10**6, 200),                # a larger one: 1% of an epoch
    (10**8, 10**9, MAX_MIN_STEPS),       # a huge one: never more than the cap
    (100, 8, 8),                         # a run with 8 steps left needs only those
    (100, 0, 0),                         # a finished run needs none
])
def test_the_fewest_steps_worth_a_run(steps_per_epoch, steps_left, fewest):
    assert fewest_steps(steps_per_epoch, steps_left) == fewest


def test_a_budget_short_of_the_fewest_steps_is_refused_with_what_it_needs():
    # 100 s given, 30 s left once the data is read, 41 s kept: nothing left for 50 steps of 0.9 s.
    short = WallBudget(max_wall_time=100, wall_left=30, reserve=41, seconds_per_step=0.9, fewest_steps=50)
    assert short.training_seconds == 0.0
    with pytest.raises(TooLittleTimeError) as refused:
        short.check()
    assert refused.value.exit_code == 4
    # 70 s spent + 41 s kept + 50 steps x 0.9 s = 156 s.
    assert ("--max-wall-time 100 leaves 0 s to train after 70 s of reading the data and timing a step, and 41 s "
            "kept for the final validation and saving; give at least 156 s (50 steps at 0.9 s a step") in str(refused.value)
    promoting = WallBudget(100, 30, 41, 0.9, 50, validations_after=2)
    with pytest.raises(TooLittleTimeError, match="kept for the final validation, promotion's scoring and saving"):
        promoting.check()
    # Just enough: 60 s left after the reserve buys the 50 steps of 1.2 s.
    enough = WallBudget(max_wall_time=100, wall_left=90, reserve=30, seconds_per_step=1.2, fewest_steps=50)
    enough.check()
    assert enough.training_seconds == 60.0
    with pytest.raises(TooLittleTimeError, match="give at least 101 s"):
        WallBudget(100, 90, 30, 1.2001, 50).check()  # 10 + 30 + 60.005, rounded up


def test_a_wall_clock_too_short_to_train_is_refused_before_anything_is_written(tmp_path, texts, monkeypatch):
    corpus, valid = texts
    _step_takes(monkeypatch, 1.0)  # 50 steps need 50 s: more than 20 s can leave
    earlier = tmp_path / "m.metrics.jsonl"
    earlier.write_text('{"event": "valid", "step": 9}\n')  # an earlier run's curve, left as it was
    result = cli("train", corpus, "--valid", valid, "--out", tmp_path / "m.pt", "--max-wall-time", "20", *SMALL)
    assert result.exit_code == 4, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("rnnlm: error:")]
    assert len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0], result.stderr
    said = re.search(r"--max-wall-time 20 leaves (\d+) s to train after .+; give at least ([\d,]+) s "
                     r"\(50 steps at 1 s a step, the fewest worth training\); nothing was trained or saved$", errors[0])
    assert said, errors[0]
    leaves, needed = int(said.group(1)), int(said.group(2).replace(",", ""))
    # What it lacks, added to what it was given: 20 s, less what it leaves, plus the 50 s of steps.
    assert leaves < 50 and abs(needed - (20 - leaves + 50)) <= 1, errors[0]
    assert "training on" not in result.stderr and "time (" not in result.stderr  # refused before training
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.last.pt").exists()
    assert earlier.read_text() == '{"event": "valid", "step": 9}\n'
    # The token files beside --out stay (a rerun reuses them); nothing half-written does.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m.metrics.jsonl", "m.train.tok", "m.valid.tok",
                                                                "train.txt", "valid.txt"]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")
def test_under_torchrun_every_rank_refuses_alike(tmp_path, texts):
    corpus, valid = texts
    # 2 s is less than the saves alone keep: refused on any machine, by both ranks, before a step.
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-port", str(30500 + os.getpid() % 1000), "-m", "rnnlm_cli", "train", str(corpus),
               "--valid", str(valid), "--out", str(tmp_path / "m.pt"), "--max-wall-time", "2", *SMALL]
    run = subprocess.run(command, capture_output=True, timeout=180, env=console_env())
    assert run.returncode != 0  # the launcher's own code for a failed worker
    refusals = [line.split(": ", 1)[0] for line in run.stderr.decode().splitlines()
                if ": error: --max-wall-time 2 leaves 0 s to train" in line]
    assert sorted(refusals) == ["rnnlm", "rnnlm[rank 1]"], run.stderr.decode()[-3000:]
    assert not any((tmp_path / name).exists() for name in ("m.pt", "m.last.pt", "m.metrics.jsonl"))


def test_a_wall_clock_that_buys_the_steps_trains(tmp_path, texts, monkeypatch):
    corpus, valid = texts
    _step_takes(monkeypatch, 0.001)  # 50 steps need 0.05 s
    result = cli("train", corpus, "--valid", valid, "--out", tmp_path / "m.pt", "--max-wall-time", "120",
                 "--max-steps", "30", "--json", *SMALL)
    assert result.exit_code == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("--max-wall-time: "))
    steps = re.search(r"training stops after .+ \(about ([\d,]+) steps at 0.001 s a step\)", line)
    assert steps and int(steps.group(1).replace(",", "")) > 1000, line
    assert json.loads(result.stdout)["steps"] == 30 and (tmp_path / "m.pt").exists()


def test_a_run_whose_validations_are_never_finite_is_not_exit_0_and_keeps_its_state(tmp_path, texts, monkeypatch):
    corpus, valid = texts
    out = tmp_path / "m.pt"
    first = cli("train", corpus, "--valid", valid, "--out", out, "--max-steps", "10", *SMALL)
    assert first.exit_code == 0, first.stderr
    model = out.read_bytes()
    # The resumed invocation trains 10 more steps; its one validation is not finite. The model
    # in place is the earlier invocation's, validated then: still, this invocation has nothing.
    monkeypatch.setattr(loop, "stream_loss_sum", lambda *args, **kwargs: (float("nan"), 100))
    resumed = cli("train", corpus, "--valid", valid, "--out", out, "--max-steps", "20", "--resume", "auto", *SMALL)
    assert resumed.exit_code == 1, resumed.stderr
    assert re.search(r"rnnlm: error: training diverged: validation loss was never finite in this run \(10 steps "
                     r"trained\); .*m\.pt is not replaced, the state is saved \(--resume .*m\.last\.pt continues\)",
                     resumed.stderr), resumed.stderr
    assert out.read_bytes() == model
    assert load_checkpoint(tmp_path / "m.last.pt").training_state["progress"]["step"] == 20


def test_a_run_the_clock_ends_with_every_step_skipped_is_not_exit_0_and_keeps_its_state(tmp_path, texts, monkeypatch):
    corpus, valid = texts
    ticks = itertools.count()
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(ticks) * 0.25)  # --max-time ends it, whatever the speed
    real_loss = loop.Objective.loss
    monkeypatch.setattr(loop.Objective, "loss", lambda self, *args: real_loss(self, *args) * torch.tensor(float("nan")))
    result = cli("train", corpus, "--valid", valid, "--out", tmp_path / "m.pt", "--max-time", "5",
                 "--max-bad-steps", "1000", *SMALL)
    assert result.exit_code == 1, result.stderr
    tried = re.search(r"training diverged: all ([\d,]+) steps tried had a non-finite loss or gradient until "
                      r"max_time ended the run, so nothing was validated; .*the state is saved", result.stderr)
    assert tried and int(tried.group(1)) >= 2, result.stderr
    assert "valid:" not in result.stderr  # the initial weights were not validated, nor kept
    assert not (tmp_path / "m.pt").exists()
    progress = load_checkpoint(tmp_path / "m.last.pt").training_state["progress"]
    assert progress["step"] == 0 and progress["skipped_steps"] == int(tried.group(1))


def test_timing_a_step_leaves_the_run_as_it_would_be_without(tmp_path, texts):
    corpus, valid = texts
    # Dropout and a constant rate: the run draws from the generators, and its rate does not
    # follow the clock, so only the probe's draws could make the two runs differ.
    same = ["--emb", "8", "--hidden", "8", "--layers", "1", "--batch-size", "4", "--bptt", "8", "--lr", "0.01",
            "--dropout", "0.3", "--device", "cpu", "--schedule", "constant", "--max-steps", "12", "--deterministic"]
    for name, extra in (("plain", []), ("walled", ["--max-wall-time", "600"])):
        result = cli("train", corpus, "--valid", valid, "--out", tmp_path / name / "m.pt", *same, *extra)
        assert result.exit_code == 0, result.stderr
    assert "--max-wall-time: " in result.stderr  # the second run did time a step
    plain, walled = (load_checkpoint(tmp_path / name / "m.pt").state_dict for name in ("plain", "walled"))
    assert plain.keys() == walled.keys() and all(torch.equal(plain[key], walled[key]) for key in plain)
