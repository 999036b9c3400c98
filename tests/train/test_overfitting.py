"""The overfitting watch: said once when training improves and validation does not, never
when both improve; in a real run that memorises random text, and not in one that learns a pattern."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.stored_checks import DamagedState
from rnnlm_cli.train.loop import OutputPaths, SilentCallbacks, Trainer
from rnnlm_cli.train.overfitting import OverfitWatch, levers
from rnnlm_cli.train.state import RunPosition

CPU = torch.device("cpu")
TOKENIZER = {"kind": "byte", "version": 1}


def watch_over(points):
    """The watch after (train loss, valid loss) pairs, and the validation index it spoke at."""
    watch, spoke = OverfitWatch(), []
    for index, (train, valid) in enumerate(points):
        if watch.observe(100 * (index + 1), index + 1, train, valid, "levers") is not None:
            spoke.append(index)
    return watch, spoke


def test_validation_rising_while_training_falls_is_said_once_with_its_figures():
    points = [(5.0, 5.1), (4.6, 4.8), (4.3, 4.75), (4.1, 4.78), (3.9, 4.85), (3.7, 4.95)]
    watch, spoke = watch_over(points)
    # Index 3: gaps 0.45 -> 0.68 grew twice (0.2, 0.45, 0.68) and 4.78 is not below the best 4.75.
    assert spoke == [3]
    seen = watch.seen
    assert seen["step"] == 400 and seen["epoch"] == 4
    assert seen["train_ppl"] == pytest.approx(math.exp(4.1)) and seen["valid_ppl"] == pytest.approx(math.exp(4.78))
    assert seen["best_valid_ppl"] == pytest.approx(math.exp(4.75))
    assert seen["ratio_before"] == pytest.approx(math.exp(0.2)) and seen["ratio"] == pytest.approx(math.exp(0.68))
    assert seen["message"].startswith("overfitting from step 400 (epoch 4): training ppl 60.3")
    assert seen["message"].endswith(": levers")


@pytest.mark.parametrize("points", [
    [(5.0, 5.1), (4.6, 4.8), (4.3, 4.6), (4.1, 4.5), (3.9, 4.45)],  # both fall, the gap grows: still learning
    [(5.0, 5.1), (5.0, 5.2), (5.0, 5.3), (5.0, 5.4)],  # validation rises, training flat: not memorising
    [(5.0, 5.1), (4.8, 5.2), (4.75, 5.15), (4.7, 5.15)],  # the gap grew once, then shrank
])
def test_nothing_is_said_while_validation_improves_or_training_does_not(points):
    watch, spoke = watch_over(points)
    assert spoke == [] and watch.seen is None


def test_the_watch_survives_a_save_and_refuses_damage():
    watch, _ = watch_over([(5.0, 5.1), (4.6, 4.8)])
    position = RunPosition(overfit_watch=watch)
    restored = RunPosition.from_dict(json.loads(json.dumps(position.to_dict())), bptt=35)
    assert restored.overfit_watch.history == watch.history
    # One more point after the resume makes the three the watch needs.
    assert restored.overfit_watch.observe(300, 3, 4.3, 4.8) is not None
    assert RunPosition.from_dict({"epoch": 1}, bptt=35).overfit_watch == OverfitWatch()  # older files
    for damaged in ({"history": [[1.0, 2.0]] * 9, "best_valid_loss": 1.0, "seen": None},
                    {"history": [[1.0, float("nan")]], "best_valid_loss": 1.0, "seen": None},
                    {"history": [], "best_valid_loss": 1.0, "seen": {"step": 1}}):
        with pytest.raises(DamagedState):
            OverfitWatch.from_dict(damaged)


def test_levers_name_the_values_in_force():
    text = levers(ModelConfig(vocab_size=10, dropout=0.3, hidden=512), TrainConfig(patience=2))
    assert "--dropout (now 0.3)" in text and "--hidden 512 now" in text and "--patience 2" in text
    assert "--weight-drop" in text
    assert "--weight-drop" not in levers(ModelConfig(vocab_size=10, weight_drop=0.2), TrainConfig())


def _train(tmp_path, train_tokens, valid_tokens, epochs):
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=32, emb=32, hidden=64, layers=1, dropout=0.0, adaptive_softmax=""))
    config = TrainConfig(batch_size=4, bptt=20, epochs=epochs, lr=0.01, device="cpu", log_interval=10, clip=1.0)
    paths = OutputPaths.beside(str(tmp_path / "m.pt"))
    heard = []

    class Heard(SilentCallbacks):
        def on_overfitting(self, record):
            heard.append(record)

    result = Trainer(model, train_tokens, valid_tokens, TOKENIZER, config, CPU, paths, Heard()).run()
    records = [json.loads(line) for line in Path(paths.metrics).read_text().splitlines()]
    return result, heard, records


def test_a_run_that_memorises_random_text_is_told_so(tmp_path):
    """Uniform random tokens: nothing to learn, so whatever training gains is memorised and
    validation (other random tokens) can only get worse than ln 32."""
    rng = np.random.default_rng(0)
    train, valid = rng.integers(0, 32, 1200).astype(np.uint16), rng.integers(0, 32, 800).astype(np.uint16)
    result, heard, records = _train(tmp_path, train, valid, epochs=12)
    assert len(heard) == 1 and result.overfitting == {k: v for k, v in heard[0].items() if k != "event"}
    valid_losses = [r["valid_loss"] for r in records if r["event"] == "valid"]
    assert valid_losses[-1] > math.log(32)  # worse than guessing: memorised
    assert [r for r in records if r["event"] == "overfitting"][0]["step"] == heard[0]["step"]
    assert heard[0]["ratio"] > heard[0]["ratio_before"]


def test_a_run_that_learns_a_pattern_is_not_told_so(tmp_path):
    """A cycle of 32 tokens in train and valid alike: both losses fall together."""
    cycle = np.tile(np.arange(32, dtype=np.uint16), 60)
    result, heard, records = _train(tmp_path, cycle[:1200], cycle[:800], epochs=6)
    assert heard == [] and result.overfitting is None
    valid_losses = [r["valid_loss"] for r in records if r["event"] == "valid"]
    assert valid_losses[-1] < valid_losses[0]
