"""Learning-rate schedules, early stopping, NT-ASGD and random BPTT, and that resume keeps them."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlm_cli.train import loop as trainer_module
from rnnlm_cli.store.checkpoint import load_checkpoint
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.errors import TrainingInterrupted
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.train.schedules import LrSchedule, WeightAverage, random_bptt_length
from rnnlm_cli.train.loop import OutputPaths, SilentCallbacks, Trainer
from rnnlm_cli.train.state import TrainState

CPU = torch.device("cpu")
TOKENIZER = {"kind": "byte", "version": 1}


def setup(tmp_path, train_tokens=3500, **train):
    torch.manual_seed(0)
    tokens = np.random.default_rng(0).integers(0, 20, size=train_tokens + 500).astype(np.uint16)
    model = build_model(ModelConfig(vocab_size=20, emb=8, hidden=8, layers=1, dropout=0.0))
    config = TrainConfig(**{"batch_size": 4, "bptt": 10, "epochs": 1, "device": "cpu", "log_interval": 1, **train})
    return model, tokens[:train_tokens], tokens[train_tokens:], config, OutputPaths.beside(str(tmp_path / "m.pt"))


def records(paths, event):
    return [json.loads(line) for line in Path(paths.metrics).read_text().splitlines()
            if json.loads(line)["event"] == event]


def fake_validation(monkeypatch, losses):
    """Validation returns these losses in turn (the last one repeated)."""
    calls = {"n": 0}

    def loss_sum(*args, **kwargs):
        calls["n"] += 1
        return losses[min(calls["n"], len(losses)) - 1] * 100, 100

    monkeypatch.setattr(trainer_module, "stream_loss_sum", loss_sum)


def test_warmup_is_linear_from_zero_then_the_rate():
    schedule = LrSchedule(TrainConfig(lr=1.0, warmup_steps=4, schedule="constant"), total_steps=100)
    assert [schedule.lr(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_falls_from_lr_to_min_lr_over_the_steps_after_warmup():
    schedule = LrSchedule(TrainConfig(lr=1.0, min_lr=0.1, schedule="cosine", warmup_steps=2), total_steps=12)
    # after warm-up: 0.1 + 0.9 * (1 + cos(pi * (s - 2) / 10)) / 2
    assert schedule.lr(2) == pytest.approx(1.0)
    assert schedule.lr(7) == pytest.approx(0.55)
    assert schedule.lr(4) == pytest.approx(0.1 + 0.9 * (1 + 0.8090169943749475) / 2)
    assert schedule.lr(12) == pytest.approx(0.1) and schedule.lr(50) == pytest.approx(0.1)


def test_cosine_follows_the_time_budget_when_it_runs_out_before_the_steps():
    schedule = LrSchedule(TrainConfig(lr=1.0, min_lr=0.0, schedule="cosine"), total_steps=1000)
    # Step 100 of 1000 is 10% of the steps; half the time budget spent puts it half-way.
    assert schedule.lr(100, time_spent=0.5) == pytest.approx(0.5)
    assert schedule.lr(100, time_spent=0.05) == pytest.approx((1 + np.cos(np.pi * 0.1)) / 2)  # steps lead
    assert schedule.lr(100, time_spent=1.0) == pytest.approx(0.0)
    constant = LrSchedule(TrainConfig(lr=0.3, schedule="constant"), total_steps=1000)
    assert constant.lr(100, time_spent=0.9) == 0.3  # only annealing schedules follow the clock


class FakeClock:
    """``time.perf_counter`` for the trainer: each reading advances ``tick`` seconds."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 1000.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_a_time_bounded_run_anneals_over_its_budget_not_its_steps(tmp_path, monkeypatch):
    # A slow machine: the steps planned (max_steps 1000) would take far longer than --max-time.
    model, train, valid, config = setup(tmp_path, lr=1.0, schedule="cosine", max_steps=1000, max_time=20.0)[:4]
    paths = OutputPaths.beside(str(tmp_path / "m.pt"))
    clock = FakeClock(tick=0.25)
    monkeypatch.setattr(trainer_module.time, "perf_counter", clock)
    fake_validation(monkeypatch, [1.0])
    result = Trainer(model, train, valid, TOKENIZER, config, CPU, paths).run()
    rates = [r["lr"] for r in records(paths, "train")]
    assert result.stop_reason == "max_time" and 10 < len(rates) < 100
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # falls all the way...
    assert rates[-1] < 0.05  # ...to about min_lr when the budget ends, far before step 1000
    steps_only = LrSchedule(config, total_steps=1000).lr(len(rates))
    assert steps_only > 0.9  # by steps alone it would have stopped at nearly the full rate


def test_plateau_divides_after_a_validation_without_improvement_and_stops_below_min_lr():
    schedule = LrSchedule(TrainConfig(lr=1.0, schedule="plateau", lr_decay=4.0, min_lr=0.1), total_steps=100)
    assert schedule.after_validation(True) is None and schedule.lr(50) == 1.0
    assert schedule.after_validation(False) is None and schedule.lr(50) == 0.25
    assert schedule.after_validation(True) is None and schedule.lr(50) == 0.25
    assert schedule.after_validation(False) == "min_lr"  # 0.0625 < 0.1


def test_the_trainer_applies_warmup_and_plateau(tmp_path, monkeypatch):
    fake_validation(monkeypatch, [5.0, 6.0])
    model, train, valid, config, paths = setup(tmp_path, train_tokens=201, lr=0.3, warmup_steps=3,
                                               schedule="plateau", lr_decay=2.0, epochs=2)
    Trainer(model, train, valid, TOKENIZER, config, CPU, paths).run()
    lrs = [r["lr"] for r in records(paths, "train")]  # 5 steps per epoch
    assert lrs == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3])
    # epoch 2 did not improve on epoch 1: the next step would run at 0.15
    assert load_checkpoint(paths.last).training_state["schedule"]["level"] == pytest.approx(0.15)


def test_patience_stops_after_that_many_validations_without_improvement(tmp_path, monkeypatch):
    fake_validation(monkeypatch, [5.0, 4.0, 4.5, 4.2, 4.1, 3.0])
    model, train, valid, config, paths = setup(tmp_path, train_tokens=201, epochs=20, patience=3)
    result = Trainer(model, train, valid, TOKENIZER, config, CPU, paths).run()
    assert result.stop_reason == "patience"
    assert len(records(paths, "valid")) == 5 and result.steps == 25


def test_nt_asgd_starts_after_nonmono_stalls(tmp_path, monkeypatch):
    fake_validation(monkeypatch, [5.0, 4.0, 4.5, 4.2, 3.0])
    model, train, valid, config, paths = setup(tmp_path, train_tokens=201, epochs=5, optimizer="sgd",
                                               lr=0.5, asgd=True, nonmono=2)
    Trainer(model, train, valid, TOKENIZER, config, CPU, paths).run()
    assert [r["step"] for r in records(paths, "averaging")] == [20]  # after validation 4 (epoch 4)
    assert [r.get("averaged_steps") for r in records(paths, "valid")] == [None] * 4 + [5]


def test_the_average_is_the_mean_of_the_iterates():
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=6, emb=3, hidden=4, layers=1, dropout=0.0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    average = WeightAverage(model, nonmono=2)
    assert not average.after_validation(1) and average.after_validation(2)
    iterates = []
    for _ in range(3):
        logits, _ = model(torch.randint(0, 6, (5, 2)))
        optimizer.zero_grad()
        logits.sum().backward()
        optimizer.step()
        average.update()
        iterates.append([p.detach().clone() for p in model.parameters()])
    live = [p.detach().clone() for p in model.parameters()]
    average.swap()
    for i, param in enumerate(model.parameters()):
        assert torch.allclose(param, (iterates[0][i] + iterates[1][i] + iterates[2][i]) / 3, atol=1e-6)
    average.swap()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), live))


def test_random_bptt_lengths_follow_the_rule():
    np.random.seed(3)
    lengths = np.array([random_bptt_length(70) for _ in range(4000)])
    assert lengths.min() >= 5
    half = lengths < 52  # N(35, 5) vs N(70, 5): 3.4 sigma apart
    assert 0.04 < half.mean() < 0.06
    assert abs(lengths[~half].mean() - 69.5) < 0.5 and abs(lengths[half].mean() - 34.5) < 1.0
    assert abs(lengths[~half].std() - 5) < 0.3
    np.random.seed(0)
    assert [random_bptt_length(5) for _ in range(200)] and min(random_bptt_length(3) for _ in range(50)) == 5


def test_random_bptt_scales_the_rate_by_the_segment_length(tmp_path):
    model, train, valid, config, paths = setup(tmp_path, lr=0.2, random_bptt=True, max_steps=30, bptt=20,
                                               schedule="constant")
    Trainer(model, train, valid, TOKENIZER, config, CPU, paths).run()
    logged = records(paths, "train")
    tokens = [0] + [r["tokens"] for r in logged]
    lengths = [(b - a) // 4 for a, b in zip(tokens, tokens[1:])]  # 4 streams
    assert len(set(lengths)) > 3
    assert [r["lr"] for r in logged] == pytest.approx([0.2 * t / 20 for t in lengths])


class _StopAt(SilentCallbacks):
    def __init__(self, stop, step):
        self.stop, self.step, self.trainer = stop, step, None

    def on_progress(self, epoch, step_in_epoch, steps_per_epoch):
        if self.trainer.progress.step == self.step:
            self.stop.requested = 15


def _run(tmp_path, name, monkeypatch, stop_at=None, resume=None):
    fake_validation(monkeypatch, [5.0, 6.0, 7.0, 8.0, 9.0])
    model, train, valid, config, paths = setup(tmp_path / name, train_tokens=801, max_steps=70, epochs=10,
                                               optimizer="sgd", lr=0.5, asgd=True, nonmono=1,
                                               schedule="plateau", warmup_steps=5, random_bptt=True)
    (tmp_path / name).mkdir(exist_ok=True)
    np.random.seed(1)
    if resume is not None:
        saved = load_checkpoint(resume)
        model.load_state_dict(saved.state_dict)
        resume = TrainState.from_dict(saved.training_state, model, config)
    stop = type("Stop", (), {"requested": None})()
    callbacks = _StopAt(stop, stop_at)
    trainer = Trainer(model, train, valid, TOKENIZER, config, CPU, paths, callbacks, resume=resume, stop=stop)
    callbacks.trainer = trainer
    if stop_at is not None:
        with pytest.raises(TrainingInterrupted):
            trainer.run()
    else:
        trainer.run()
    return paths


def test_resume_keeps_schedule_average_and_random_positions_exact(tmp_path, monkeypatch):
    straight = _run(tmp_path, "straight", monkeypatch)
    first = _run(tmp_path, "first", monkeypatch, stop_at=45)
    halfway = load_checkpoint(first.last).training_state
    assert halfway["average"] is not None and halfway["schedule"]["level"] < 0.5
    assert halfway["progress"]["position"] != halfway["progress"]["segment"] * 10  # random lengths
    resumed = _run(tmp_path, "first", monkeypatch, resume=first.last)
    a, b = load_checkpoint(straight.last), load_checkpoint(resumed.last)
    for key in a.state_dict:
        assert torch.equal(a.state_dict[key], b.state_dict[key]), key
    sa, sb = a.training_state, b.training_state
    assert sa["schedule"] == sb["schedule"] and sa["progress"]["position"] == sb["progress"]["position"]
    assert sa["average"]["count"] == sb["average"]["count"]
    assert all(torch.equal(x, y) for x, y in zip(sa["average"]["mean"], sb["average"]["mean"]))


def test_a_resumed_run_whose_budget_is_spent_validates_and_keeps_its_model(tmp_path):
    model, train, valid, config, paths = setup(tmp_path, max_steps=3)
    stop = type("Stop", (), {"requested": None})()
    # The signal comes at step 2 and is acted on after step 3, the budget's last: no validation ran.
    callbacks = _StopAt(stop, 2)
    trainer = Trainer(model, train, valid, TOKENIZER, config, CPU, paths, callbacks, stop=stop)
    callbacks.trainer = trainer
    with pytest.raises(TrainingInterrupted):
        trainer.run()
    assert not Path(paths.model).exists()
    saved = load_checkpoint(paths.last)
    assert saved.training_state["progress"]["step"] == 3
    again = build_model(ModelConfig(vocab_size=20, emb=8, hidden=8, layers=1, dropout=0.0))
    again.load_state_dict(saved.state_dict)
    resume = TrainState.from_dict(saved.training_state, again, config)
    result = Trainer(again, train, valid, TOKENIZER, config, CPU, paths, resume=resume).run()
    # Nothing left to train: the saved weights are validated and kept, not reported as diverged.
    assert result.steps == 3 and result.stop_reason == "max_steps" and np.isfinite(result.best_valid_loss)
    kept = load_checkpoint(paths.model).state_dict
    assert all(torch.equal(kept[key], saved.state_dict[key]) for key in kept)
    assert [r["step"] for r in records(paths, "valid")] == [3]
