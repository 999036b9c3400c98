"""What a run writes beside its model: names, the metrics log, snapshot rotation, log windows."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from rnnlm_cli.train.outputs import LogWindow, MetricsLog, OutputPaths, rotate_snapshots

CPU = torch.device("cpu")


def test_files_are_named_beside_the_model():
    paths = OutputPaths.beside("runs/x/model.pt")
    assert paths == OutputPaths(model="runs/x/model.pt", last="runs/x/model.last.pt",
                                metrics="runs/x/model.metrics.jsonl", snapshot_prefix="runs/x/model.step")
    assert paths.snapshot(42) == "runs/x/model.step000000042.pt"
    assert paths.snapshot(1_234_567_890) == "runs/x/model.step1234567890.pt"
    # Only the last extension is the model's: a dotted stem stays whole.
    assert OutputPaths.beside("v1.2/lm.v3.bin").last == "v1.2/lm.v3.last.pt"
    assert OutputPaths.beside("model").metrics == "model.metrics.jsonl"


def test_metrics_are_one_json_object_per_line(tmp_path):
    path = tmp_path / "m.metrics.jsonl"
    log = MetricsLog(str(path), append=False)
    log.write({"event": "train", "step": 1, "loss": 2.5})
    log.write({"event": "valid", "step": 2, "ppl": math.e, "note": "ünïcode\nnewline"})
    log.close()
    log.close()  # a second close is harmless
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3
    assert [json.loads(line) for line in lines[:-1]] == [
        {"event": "train", "step": 1, "loss": 2.5},
        {"event": "valid", "step": 2, "ppl": math.e, "note": "ünïcode\nnewline"},
    ]


def test_a_fresh_log_replaces_an_old_one_and_a_resumed_log_appends(tmp_path):
    path = tmp_path / "m.metrics.jsonl"
    path.write_text('{"event": "old"}\n')
    resumed = MetricsLog(str(path), append=True)
    resumed.write({"event": "resumed"})
    resumed.close()
    assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == ["old", "resumed"]
    fresh = MetricsLog(str(path), append=False)
    fresh.write({"event": "new"})
    fresh.close()
    assert path.read_text() == '{"event": "new"}\n'


def test_a_log_without_a_path_writes_nothing(tmp_path):
    log = MetricsLog(None, append=False)
    log.write({"event": "train"})
    log.close()
    assert os.listdir(tmp_path) == []


def make_snapshots(paths, steps):
    for step in steps:
        with open(paths.snapshot(step), "w") as handle:
            handle.write(str(step))


def snapshot_steps(folder, stem="m"):
    return sorted(int(name[len(stem) + 5:-3]) for name in os.listdir(folder)
                  if name.startswith(stem + ".step") and name.endswith(".pt"))


def test_rotation_keeps_the_newest_n_and_the_best(tmp_path):
    paths = OutputPaths.beside(str(tmp_path / "m.pt"))
    make_snapshots(paths, [100, 200, 300, 400, 500, 600])
    removed = rotate_snapshots(paths, keep=2, best_step=200)
    assert snapshot_steps(tmp_path) == [200, 500, 600]
    assert removed == [paths.snapshot(100), paths.snapshot(300), paths.snapshot(400)]


def test_rotation_orders_by_step_not_by_name(tmp_path):
    paths = OutputPaths.beside(str(tmp_path / "m.pt"))
    make_snapshots(paths, [9, 10, 1_000_000_000])  # the last one's name is longer
    for name in ("m.step7.pt", "m.step0011.pt"):  # other spellings of a step are still steps
        (tmp_path / name).write_text("")
    rotate_snapshots(paths, keep=1, best_step=9)
    assert sorted(os.listdir(tmp_path)) == ["m.step000000009.pt", "m.step1000000000.pt"]


def test_rotation_keeps_the_newest_even_with_keep_one_and_a_best_elsewhere(tmp_path):
    paths = OutputPaths.beside(str(tmp_path / "m.pt"))
    make_snapshots(paths, [1, 2, 3])
    rotate_snapshots(paths, keep=1, best_step=1)
    assert snapshot_steps(tmp_path) == [1, 3]
    assert rotate_snapshots(paths, keep=5, best_step=3) == []


def test_rotation_touches_only_this_models_snapshots(tmp_path):
    paths = OutputPaths.beside(str(tmp_path / "m[1].pt"))  # glob characters in the stem
    make_snapshots(paths, [1, 2, 3])
    bystanders = ["m.pt", "m[1].pt", "m[1].last.pt", "m1.step000000001.pt", "other.step000000001.pt",
                  "m[1].stepx.pt", "m[1].step000000001.pt.bak"]
    for name in bystanders:
        (tmp_path / name).write_text("keep")
    rotate_snapshots(paths, keep=1, best_step=3)
    assert sorted(os.listdir(tmp_path)) == sorted(bystanders + ["m[1].step000000003.pt"])


def test_a_log_window_averages_loss_per_token_and_norm_per_step():
    window = LogWindow(CPU)
    window.add(torch.tensor(2.0), torch.tensor(1.0), tokens=10)
    window.add(torch.tensor(4.0), torch.tensor(5.0), tokens=30)
    window.add(torch.tensor(1.0), torch.tensor(3.0), tokens=20)
    summary = window.summary()
    loss = (2.0 * 10 + 4.0 * 30 + 1.0 * 20) / 60  # = 8/3
    assert summary["loss"] == pytest.approx(loss, rel=1e-6)
    assert summary["ppl"] == pytest.approx(math.exp(loss), rel=1e-6)
    assert summary["grad_norm"] == pytest.approx(3.0, rel=1e-6)
    assert summary["grad_norm_max"] == pytest.approx(5.0)
    assert summary["tokens_per_s"] > 0


def test_a_log_window_starts_over_after_each_summary():
    window = LogWindow(CPU)
    window.add(torch.tensor(9.0), torch.tensor(9.0), tokens=5)
    window.summary()
    window.add(torch.tensor(1.5), torch.tensor(0.5), tokens=4)
    summary = window.summary()
    assert summary["loss"] == pytest.approx(1.5)
    assert summary["grad_norm"] == pytest.approx(0.5) and summary["grad_norm_max"] == pytest.approx(0.5)
    empty = window.summary()
    assert (empty["loss"], empty["ppl"], empty["grad_norm"], empty["grad_norm_max"]) == (0.0, 1.0, 0.0, 0.0)


def test_a_huge_loss_reports_an_infinite_perplexity_not_an_overflow():
    window = LogWindow(CPU)
    window.add(torch.tensor(800.0), torch.tensor(1.0), tokens=1)
    assert window.summary()["ppl"] == math.inf


def test_a_log_window_does_not_keep_the_graph():
    window = LogWindow(CPU)
    weight = torch.tensor(2.0, requires_grad=True)
    window.add(weight * 3.0, torch.tensor(1.0), tokens=2)
    assert not window.loss.requires_grad
