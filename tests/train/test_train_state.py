"""The one layout of a ``.last.pt`` training state: it round-trips, reads files written before
it carried a version (and resumes them exactly), refuses newer layouts and damaged fields."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.errors import CheckpointError
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.store.checkpoint import load_checkpoint, save_checkpoint
from rnnlm_cli.train.loop import OutputPaths, Trainer
from rnnlm_cli.train.optimizers import make_optimizer
from rnnlm_cli.train.state import (STATE_VERSION, RankState, RunPosition, TrainState, capture_rng,
                                   check_training_state)

CPU = torch.device("cpu")
BYTES = {"kind": "byte", "version": 1}
CONFIG = TrainConfig(batch_size=3, bptt=5, optimizer="adam")
TODAYS_KEYS = ["optimizer", "progress", "world_size", "schedule", "average", "rng", "hidden"]
"""The keys, in order, of a one-process state as files without a version hold them."""


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(vocab_size=11, emb=4, hidden=6, layers=1, dropout=0.0))


def trained_optimizer(model: torch.nn.Module) -> dict:
    """An Adam state with moments: one step on a real loss."""
    optimizer = make_optimizer(model, CONFIG)
    model(torch.randint(0, 11, (5, 3)))[0].float().sum().backward()
    optimizer.step()
    return optimizer.state_dict()


def make_state(model: torch.nn.Module, ranks: int = 1) -> TrainState:
    carried = [tuple(torch.randn_like(t) for t in model.init_state(CONFIG.batch_size)) for _ in range(ranks)]
    return TrainState(
        progress=RunPosition(epoch=2, segment=7, position=33, step=40, train_tokens=480, best_valid_loss=2.5,
                             best_step=35, skipped_steps=1, train_seconds=12.5),
        optimizer=trained_optimizer(model),
        ranks=tuple(RankState(rng=capture_rng(), hidden=hidden) for hidden in carried),
        schedule={"level": 0.25, "stalled": 2},
        average={"count": 3, "mean": [torch.randn_like(p) for p in model.parameters()]})


def assert_same(a, b, where: str = "state") -> None:
    """Equal values of equal types; tensors bit for bit (torch.equal) with the same dtype."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}.{index}")
    elif isinstance(a, (TrainState, RankState, RunPosition)):
        for name in type(a).__dataclass_fields__:
            assert_same(getattr(a, name), getattr(b, name), f"{where}.{name}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def saved_and_loaded(tmp_path: Path, model: torch.nn.Module, state: dict) -> dict:
    """``state`` after a trip through a checkpoint file and the safe loader."""
    save_checkpoint(tmp_path / "m.last.pt", model, BYTES, training_state=state)
    return load_checkpoint(tmp_path / "m.last.pt").training_state


# -- round trips ---------------------------------------------------------------------------------

def test_a_state_round_trips_through_a_file(tmp_path):
    model = tiny_model()
    state = make_state(model)
    data = saved_and_loaded(tmp_path, model, state.to_dict())
    assert list(data) == ["state_version"] + TODAYS_KEYS and data["state_version"] == STATE_VERSION == 1
    back = TrainState.from_dict(data, model, CONFIG)
    assert_same(back, state)
    assert_same(back.to_dict(), state.to_dict())


def test_a_state_of_two_processes_keeps_a_list_of_ranks(tmp_path):
    model = tiny_model()
    state = make_state(model, ranks=2)
    data = saved_and_loaded(tmp_path, model, state.to_dict())
    assert list(data) == ["state_version", "optimizer", "progress", "world_size", "schedule", "average", "ranks"]
    assert data["world_size"] == 2 and [list(rank) for rank in data["ranks"]] == [["rng", "hidden"]] * 2
    assert_same(TrainState.from_dict(data, model, CONFIG, world_size=2), state)
    with pytest.raises(CheckpointError, match=r"ranks has 2 entries, expected 1"):
        TrainState.from_dict(data, model, CONFIG, world_size=1)


def test_the_loop_writes_a_state_that_reads_back_as_written(tmp_path):
    model, train, valid, config, paths = tiny_run(tmp_path, max_steps=4)
    Trainer(model, train, valid, BYTES, config, CPU, paths).run()
    data = load_checkpoint(paths.last).training_state
    assert list(data) == ["state_version"] + TODAYS_KEYS
    state = TrainState.from_dict(data, model, config)
    assert state.progress.step == 4 and state.progress.position == 4 * config.bptt
    assert state.world_size == 1 and len(state.ranks[0].hidden) == 2  # an LSTM's (h, c)
    assert_same(state.to_dict(), data)


# -- files from before the version ---------------------------------------------------------------

def test_a_state_without_a_version_reads_as_version_1(tmp_path):
    model = tiny_model()
    data = {key: value for key, value in make_state(model).to_dict().items() if key != "state_version"}
    del data["progress"]["position"]  # older still: fixed-length segments, no position kept
    data["hidden"] = list(data["hidden"])
    state = TrainState.from_dict(saved_and_loaded(tmp_path, model, data), model, CONFIG)
    assert state.version == 1
    assert state.progress.position == 7 * 5  # segment * bptt
    assert type(state.ranks[0].hidden) is tuple
    assert list(state.to_dict()) == ["state_version"] + TODAYS_KEYS


def tiny_run(folder: Path, **train):
    torch.manual_seed(0)
    np.random.seed(0)
    tokens = np.random.default_rng(0).integers(0, 20, size=1000).astype(np.uint16)
    model = build_model(ModelConfig(vocab_size=20, emb=8, hidden=8, layers=1, dropout=0.0))
    # A constant rate: a run stopped at step 5 and resumed to 12 follows the same rates as one of 12.
    config = TrainConfig(**{"batch_size": 4, "bptt": 10, "epochs": 1, "device": "cpu", "log_interval": 100,
                            "schedule": "constant", **train})
    return model, tokens[:800], tokens[800:], config, OutputPaths.beside(str(folder / "m.pt"))


def test_a_state_without_a_version_resumes_exactly(tmp_path):
    (tmp_path / "straight").mkdir()
    (tmp_path / "split").mkdir()
    model, train, valid, config, straight = tiny_run(tmp_path / "straight", max_steps=12)
    Trainer(model, train, valid, BYTES, config, CPU, straight).run()

    model, train, valid, config, split = tiny_run(tmp_path / "split", max_steps=5)
    Trainer(model, train, valid, BYTES, config, CPU, split).run()
    payload = torch.load(split.last, weights_only=True)
    del payload["training_state"]["state_version"]  # as the files written before it
    torch.save(payload, split.last)

    model, train, valid, config, split = tiny_run(tmp_path / "split", max_steps=12)
    saved = load_checkpoint(split.last)
    model.load_state_dict(saved.state_dict)
    resume = TrainState.from_dict(saved.training_state, model, config)
    torch.manual_seed(123)  # whatever the generators hold now, the resume restores the saved ones
    Trainer(model, train, valid, BYTES, config, CPU, split, resume=resume).run()

    a, b = load_checkpoint(straight.last), load_checkpoint(split.last)
    assert_same(a.state_dict, b.state_dict, "weights")
    for key in ("optimizer", "rng", "hidden", "state_version"):
        assert_same(a.training_state[key], b.training_state[key], key)
    assert a.training_state["progress"]["step"] == b.training_state["progress"]["step"] == 12


# -- refusals ------------------------------------------------------------------------------------

def refusal(data, model=None, world_size: int = 1) -> CheckpointError:
    model = model or tiny_model()
    with pytest.raises(CheckpointError) as refused:
        TrainState.from_dict(data, model, CONFIG, world_size)
    assert refused.value.exit_code == 65
    return refused.value


def test_a_newer_version_is_refused_with_advice_to_upgrade():
    model = tiny_model()
    data = {**make_state(model).to_dict(), "state_version": 2, "new_entry": {"x": 1}}
    message = str(refusal(data, model))
    assert message == "training state version 2 is newer than this rnnlm reads (version 1); upgrade rnnlm to resume it"


class _Saved:
    """The parts of a loaded checkpoint the check reads."""

    def __init__(self, training_state, train_config=None):
        self.training_state, self.train_config = training_state, train_config or {}


def test_the_check_names_the_file_for_a_newer_version_and_for_damage():
    model = tiny_model()
    newer = {**make_state(model).to_dict(), "state_version": 7}
    with pytest.raises(CheckpointError) as refused:
        check_training_state("run/m.last.pt", _Saved(newer), model, CONFIG, 1)
    assert str(refused.value).startswith("run/m.last.pt: training state version 7 is newer than this rnnlm reads")
    damaged = {**make_state(model).to_dict(), "state_version": "1"}
    with pytest.raises(CheckpointError) as refused:
        check_training_state("run/m.last.pt", _Saved(damaged), model, CONFIG, 1)
    assert str(refused.value).startswith("run/m.last.pt: training state is damaged (state_version is a str")


@pytest.mark.parametrize("change, detail", [
    (lambda d: d.pop("optimizer"), "training_state has no optimizer"),
    (lambda d: d.pop("progress"), "training_state has no progress"),
    (lambda d: d.pop("rng"), "training_state has no rng"),
    (lambda d: d.update(state_version=0), "state_version is 0"),
    (lambda d: d.update(state_version=True), "state_version is a bool"),
    (lambda d: d.update(state_version=1.0), "state_version is a float"),
    (lambda d: d.update(world_size=2), "world_size is 2, but the state holds 1 process(es)"),
    (lambda d: d["progress"].update(step="40"), "progress.step is a str"),
    (lambda d: d["progress"].update(best_valid_loss=None), "progress.best_valid_loss is a NoneType"),
    (lambda d: d.update(hidden=d["hidden"][:1]), "hidden has 1 entries, expected 2"),
    (lambda d: d.update(hidden=tuple(t.double() for t in d["hidden"])), "hidden.0 has dtype torch.float64"),
    (lambda d: d["schedule"].pop("stalled"), "schedule has no stalled"),
    (lambda d: d["average"].update(count=-1), "average.count is -1"),
    (lambda d: d["optimizer"]["state"][0].update(exp_avg=torch.zeros(2)), "optimizer.state.0.exp_avg has shape (2,)"),
])
def test_a_missing_or_mistyped_field_is_refused(change, detail):
    model = tiny_model()
    data = make_state(model).to_dict()
    change(data)
    message = str(refusal(data, model))
    assert message.startswith(f"the saved training state is damaged ({detail}"), message


@pytest.mark.parametrize("data", [None, [], "state", torch.zeros(3)])
def test_a_state_that_is_not_a_mapping_is_refused(data):
    assert "training_state is a" in str(refusal(data))


def test_resuming_a_newer_state_exits_65_and_leaves_the_model(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the dog runs .\nthe cats see a dog .\na cat sees the dog .\n" * 40, encoding="utf-8")
    options = ["--out", str(tmp_path / "m.pt"), "--hidden", "8", "--emb", "4", "--layers", "1", "--batch-size", "4",
               "--bptt", "10", "--device", "cpu", "--max-steps"]
    env = {"RNNLM_DEBUG": None, "NO_COLOR": "1"}
    result = CliRunner().invoke(app, ["train", str(corpus), *options, "2"], env=env)
    assert result.exit_code == 0, result.stderr
    last = tmp_path / "m.last.pt"
    payload = torch.load(last, weights_only=True)
    payload["training_state"]["state_version"] = STATE_VERSION + 1
    torch.save(payload, last)
    before = hashlib.sha256((tmp_path / "m.pt").read_bytes()).hexdigest()
    result = CliRunner().invoke(app, ["train", str(corpus), *options, "4", "--resume", str(last)], env=env)
    assert result.exit_code == 65, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("rnnlm: error: ")]
    assert errors == [f"rnnlm: error: {last}: training state version 2 is newer than this rnnlm reads "
                      "(version 1); upgrade rnnlm to resume it"], result.stderr
    assert hashlib.sha256((tmp_path / "m.pt").read_bytes()).hexdigest() == before
