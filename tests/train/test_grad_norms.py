"""How often --clip fired and how large the gradient was: per log interval in metrics.jsonl and on
the log line, over the whole run (resumes included) in the result, and the verdict on the clip.

The expectations come from the norms the loop itself got back from ``clip_grad_norm_`` (recorded
by a wrapper around it), summarised here with the standard library's ``statistics``.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import CheckpointError
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.store.checkpoint import load_checkpoint
from rnnlm_cli.train.grad_norms import BINS, NormTally, percent
from rnnlm_cli.train.loop import OutputPaths, Trainer
from rnnlm_cli.train.outputs import LogWindow
from rnnlm_cli.train.state import RunPosition, TrainState

CPU = torch.device("cpu")
BYTES = {"kind": "byte", "version": 1}
WITHIN_A_BIN = 10 ** 0.05
"""How far the run's median (read from bins a factor 10**0.1 wide) may lie from the true one."""


@pytest.fixture
def seen_norms(monkeypatch) -> list[float]:
    """The total norm before clipping of every step, as ``clip_grad_norm_`` returned it to the loop."""
    seen: list[float] = []
    original = torch.nn.utils.clip_grad_norm_

    def recording(*args, **kwargs):
        norm = original(*args, **kwargs)
        seen.append(float(norm))
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording)
    return seen


def train(folder: Path, resume: bool = False, **options):
    """A tiny model on random tokens, logging every 5 steps; optionally resuming ``folder``'s run."""
    torch.manual_seed(0)
    tokens = np.random.default_rng(0).integers(0, 20, size=1500).astype(np.uint16)
    model = build_model(ModelConfig(vocab_size=20, emb=8, hidden=8, layers=1, dropout=0.0))
    config = TrainConfig(**{"batch_size": 4, "bptt": 10, "epochs": 1, "device": "cpu", "log_interval": 5,
                            "max_steps": 20, **options})
    paths = OutputPaths.beside(str(folder / "m.pt"))
    state = None
    if resume:
        saved = load_checkpoint(paths.last)
        model.load_state_dict(saved.state_dict)
        state = TrainState.from_dict(saved.training_state, model, config)
    result = Trainer(model, tokens[:1200], tokens[1200:], BYTES, config, CPU, paths, resume=state).run()
    records = [json.loads(line) for line in Path(paths.metrics).read_text().splitlines()]
    return result, [r for r in records if r["event"] == "train"], paths


def deciles(values: list[float]) -> list[float]:
    """p10 .. p90, interpolated linearly between the sorted values (numpy's default method)."""
    return statistics.quantiles(values, n=10, method="inclusive")


# ---------------------------------------------------------------- a training run


def test_each_interval_records_the_share_clipped_and_the_percentiles_of_its_norms(tmp_path, seen_norms):
    clip = 0.19  # among this run's norms (about 0.14 to 0.26): some intervals clip some steps
    result, records, _ = train(tmp_path, clip=clip)
    assert len(seen_norms) == 20 and [r["step"] for r in records] == [5, 10, 15, 20]
    shares = []
    for record in records:
        norms = seen_norms[record["step"] - 5:record["step"]]
        p10, _, _, _, p50, _, _, _, p90 = deciles(norms)
        assert record["clipped_share"] == sum(n > clip for n in norms) / 5
        assert record["grad_norm_p10"] == pytest.approx(p10, rel=1e-12)
        assert record["grad_norm_p50"] == pytest.approx(p50, rel=1e-12)
        assert record["grad_norm_p90"] == pytest.approx(p90, rel=1e-12)
        assert record["grad_norm_max"] == max(norms)
        assert record["grad_norm"] == pytest.approx(statistics.fmean(norms), rel=1e-12)
        shares.append(record["clipped_share"])
    assert any(0 < share < 1 for share in shares), (shares, seen_norms)  # the clip sits among the norms

    clipped = sum(n > clip for n in seen_norms)
    assert (result.clip_steps, result.clipped_steps, result.clipped_share) == (20, clipped, clipped / 20)
    assert result.grad_norm_max == max(seen_norms)
    median = statistics.median(seen_norms)
    assert median / WITHIN_A_BIN <= result.grad_norm_median <= median * WITHIN_A_BIN
    assert 0 < clipped <= 10, seen_norms  # neither most steps nor none: a neutral verdict
    assert result.clip_diagnosis == (f"--clip 0.19 clipped {clipped / 20:.0%} of 20 steps (median norm about "
                                     f"{result.grad_norm_median:.3g}, largest {max(seen_norms):.3g})")


def test_a_clip_far_below_the_norm_clips_every_step_and_says_to_raise_it(tmp_path, seen_norms):
    result, records, _ = train(tmp_path, clip=1e-6, max_steps=10)
    assert [r["clipped_share"] for r in records] == [1.0, 1.0]
    assert (result.clipped_share, result.clip_steps, result.clipped_steps) == (1.0, 10, 10)
    median = statistics.median(seen_norms)
    assert median / WITHIN_A_BIN <= result.grad_norm_median <= median * WITHIN_A_BIN
    assert result.clip_diagnosis == (
        f"--clip 1e-06 clipped 100% of 10 steps: the clip is below the typical gradient norm (median about "
        f"{result.grad_norm_median:.3g}): it sets the length of most steps rather than guarding "
        "against spikes; raise it unless that is meant")


def test_a_clip_above_every_norm_never_fires_and_says_it_has_no_effect(tmp_path, seen_norms):
    result, records, _ = train(tmp_path, clip=1e9, max_steps=10)
    assert [r["clipped_share"] for r in records] == [0.0, 0.0]
    assert (result.clipped_share, result.clip_steps, result.clipped_steps) == (0.0, 10, 0)
    assert result.clip_diagnosis == (f"--clip 1e+09 never fired in 10 steps (largest norm {max(seen_norms):.3g}): "
                                     "it has no effect here")


def test_without_a_clip_there_is_no_share_and_no_verdict_but_the_norms_are_kept(tmp_path, seen_norms):
    result, records, _ = train(tmp_path, clip=0.0, max_steps=10)
    assert records and all("clipped_share" not in r for r in records)
    assert all(r["grad_norm_p50"] == pytest.approx(deciles(seen_norms[r["step"] - 5:r["step"]])[4]) for r in records)
    assert result.clipped_share is None and result.clip_diagnosis is None and result.clipped_steps == 0
    assert result.grad_norm_max == max(seen_norms)
    summary = result.to_dict()
    assert summary["clipped_share"] is None and summary["clip_steps"] == 10


def test_a_resumed_run_counts_the_whole_run_and_another_clip_starts_its_share_afresh(tmp_path, seen_norms):
    clip = 0.19
    train(tmp_path, clip=clip, max_steps=6)
    result, _, paths = train(tmp_path, resume=True, clip=clip, max_steps=13)
    assert len(seen_norms) == 13
    clipped = sum(n > clip for n in seen_norms)
    assert (result.clip_steps, result.clipped_steps, result.grad_norm_max) == (13, clipped, max(seen_norms))
    saved = load_checkpoint(paths.last).training_state["progress"]["grad_norms"]
    assert saved["clip_steps"] == sum(saved["bins"]) == 13 and saved["clipped"] == clipped

    before = list(seen_norms)
    seen_norms.clear()
    result, _, _ = train(tmp_path, resume=True, clip=1e-6, max_steps=16)
    # The share speaks for --clip 1e-06 alone; the largest norm, for every step of the run.
    assert len(seen_norms) == 3
    assert (result.clip_steps, result.clipped_steps, result.clipped_share) == (3, 3, 1.0)
    assert result.grad_norm_max == max(before + seen_norms)
    assert sum(load_checkpoint(paths.last).training_state["progress"]["grad_norms"]["bins"]) == 16


def test_the_log_line_says_how_often_the_clip_fired_and_the_summary_ends_with_the_verdict(tiny_corpus, tmp_path):
    valid = tmp_path / "valid.txt"
    valid.write_text(tiny_corpus.read_text(encoding="utf-8"), encoding="utf-8")
    options = ["train", str(tiny_corpus), "--valid", str(valid), "--out", str(tmp_path / "m.pt"), "--hidden", "8",
               "--emb", "8", "--layers", "1", "--batch-size", "2", "--bptt", "5", "--max-steps", "4", "--log-interval", "2",
               "--device", "cpu", "--json"]
    env = {"RNNLM_DEBUG": None, "NO_COLOR": "1"}
    result = CliRunner().invoke(app, [*options, "--clip", "1e-6"], env=env)
    assert result.exit_code == 0, result.stderr
    lines = result.stderr.splitlines()
    steps = [line for line in lines if " step " in line and ": loss " in line]
    assert len(steps) == 2 and all(" clipped 100% " in line for line in steps), steps
    summary = json.loads(result.stdout)
    assert (summary["clipped_share"], summary["clip_steps"], summary["clipped_steps"]) == (1.0, 4, 4)
    assert lines[-1] == summary["clip_diagnosis"] and lines[-1].startswith("--clip 1e-06 clipped 100% of 4 steps: ")
    rows = dict(line.strip().partition("  ")[::2] for line in lines[lines.index("training summary") + 1:-1])
    assert rows["clipped steps"].strip() == "100% (4 of 4)"
    assert rows["gradient norm"].strip() == (f"median about {summary['grad_norm_median']:.3g}, "
                                             f"largest {summary['grad_norm_max']:.3g}")

    result = CliRunner().invoke(app, [*options, "--clip", "0"], env=env)
    assert result.exit_code == 0, result.stderr
    assert " clipped" not in result.stderr and json.loads(result.stdout)["clip_diagnosis"] is None


# ---------------------------------------------------------------- the pieces


def test_a_log_window_reads_its_norms_once_and_counts_them_into_the_run(tmp_path):
    tally = NormTally()
    window = LogWindow(CPU, clip=2.0, capacity=2, tally=tally)
    norms = [0.5, 3.0, 1.0, 2.0, 8.0]  # more than its capacity: the buffer grows
    for norm in norms:
        window.add(torch.tensor(1.0), torch.tensor(norm), tokens=1)
    summary = window.summary()
    p10, _, _, _, p50, _, _, _, p90 = deciles(norms)
    assert summary["clipped_share"] == 2 / 5  # 3.0 and 8.0; 2.0 equals the clip, which leaves it as it is
    assert (summary["grad_norm_p10"], summary["grad_norm_p50"], summary["grad_norm_p90"]) == pytest.approx((p10, p50, p90))
    assert (summary["grad_norm"], summary["grad_norm_max"]) == (pytest.approx(2.9), 8.0)
    window.add(torch.tensor(1.0), torch.tensor(100.0), tokens=1)
    window.close()  # an epoch's end: not logged, still counted
    assert (tally.steps, tally.clip_steps, tally.clipped, tally.largest) == (6, 6, 3, 100.0)
    assert window.summary()["grad_norm_max"] == 0.0  # closing started a new interval
    assert "clipped_share" not in LogWindow(CPU).summary()


def test_the_run_median_is_within_a_bin_of_the_true_one_across_the_range():
    rng = np.random.default_rng(1)
    for scale in (1e-5, 3e-3, 0.25, 7.0, 4e4):
        norms = scale * rng.lognormal(0.0, 1.0, size=101)
        tally = NormTally()
        tally.add(norms, clip=0.0)
        median = float(np.median(norms))
        assert median / WITHIN_A_BIN <= tally.median() <= median * WITHIN_A_BIN, scale
    tally = NormTally()
    tally.add(np.array([0.0, 0.0, 5e7]), clip=1.0)  # outside the binned range: its ends
    assert (tally.median(), tally.largest, tally.clipped) == (1e-6, 5e7, 1)
    assert NormTally().median() is None and NormTally().diagnosis() is None


def test_shares_near_none_or_all_are_not_rounded_to_never_or_always():
    assert [percent(s) for s in (0.0, 0.004, 0.37, 0.996, 1.0)] == ["0%", "<1%", "37%", ">99%", "100%"]


def test_an_older_state_starts_counting_and_a_damaged_tally_is_refused():
    assert RunPosition.from_dict({"segment": 3, "step": 3}, 10).grad_norms == NormTally()
    tally = NormTally()
    tally.add(np.array([0.1, 0.2, 0.3]), clip=0.15)
    assert RunPosition.from_dict(RunPosition(step=3, grad_norms=tally).to_dict(), 10).grad_norms == tally
    good = tally.to_dict()
    for bad in ({**good, "clipped": 4}, {**good, "clip_steps": 5}, {**good, "bins": good["bins"][:-1]},
                {**good, "bins": [0] * BINS}, {**good, "largest": math.nan}, {**good, "clip": -1.0},
                {**good, "extra": 1}, {k: v for k, v in good.items() if k != "bins"}, [1, 2]):
        with pytest.raises(CheckpointError):
            RunPosition.from_dict({"step": 3, "grad_norms": bad}, 10)
