"""Crafted checkpoints: nothing in a file decides how much memory we
allocate or which kernel indexes memory.

A genuine ``.last.pt`` of a tiny run is edited the way a hostile or broken file would be:
views that inflate when touched, moments of the wrong shape for the fused optimizer,
fields of the wrong type or range. Each must be refused with exit 65 and one error line
naming the file and the field, before any of it is used, and the model in place must not
change. Cases that could corrupt memory on a build without the checks run in a
subprocess, so a crash there is a failed test, not a dead test run.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnlm_cli.store.checkpoint import load_checkpoint, load_model, save_checkpoint
from rnnlm_cli.config import TrainConfig
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.errors import CheckpointError, UsageError
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.train.optimizers import make_optimizer
from rnnlm_cli.train.schedules import LrSchedule, WeightAverage
from rnnlm_cli.models.sizing import estimated_parameters
from rnnlm_cli.train.state import RunPosition, capture_rng, restore_rng

from conftest import cli

# Functions this issue added are imported where used, so that each test of this file
# also runs (and fails on its own) against the code before it.

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "train.txt"
SHAPE = ["--hidden", "16", "--emb", "8", "--layers", "1"]
RUN = ["--batch-size", "4", "--bptt", "10", "--device", "cpu", "--log-interval", "1000"]
CONFIG = TrainConfig(batch_size=4, bptt=10)
HUGE = 10**9  # elements: a gigabyte or more once anything materialises the view
MEMORY_LIMIT = 4 << 30  # address space for a subprocess: torch itself takes under 1 GiB


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("rnnlm: error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def payload_of(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def write_payload(path: Path, payload: dict) -> Path:
    with open(path, "wb") as handle:
        torch.save(payload, handle)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A folder with a tiny run's corpus (c.txt), model (m.pt) and state (m.last.pt)."""
    folder = tmp_path_factory.mktemp("crafted")
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:300]
    (folder / "c.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("train", folder / "c.txt", "--out", folder / "m.pt", *SHAPE, *RUN, "--max-steps", "3")
    assert result.exit_code == 0, result.stderr
    return folder


def crafted(run: Path, tmp_path: Path, change) -> Path:
    payload = payload_of(run / "m.last.pt")
    change(payload)
    return write_payload(tmp_path / "crafted.last.pt", payload)


def checked(path: Path) -> None:
    """What ``train --resume`` runs on a loaded file before using it."""
    from rnnlm_cli.train.state import check_training_state

    checkpoint = load_checkpoint(path)
    check_training_state(str(path), checkpoint, build_model(checkpoint.model_config), CONFIG, 1)


# -- what a damaged field is -----------------------------------------------------------------

def _set(*keys, value):
    def change(payload):
        target = payload["training_state"]
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value(target[keys[-1]]) if callable(value) else value
    return change


def _drop(*keys):
    def change(payload):
        target = payload["training_state"]
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return change


def _groups(**changes):
    return _set("optimizer", "param_groups", value=lambda groups: [{**groups[0], **changes}])


DAMAGED = {
    # Adam's moments go straight into torch's fused kernel, which trusts their shapes.
    "moment of a wrong shape": (_set("optimizer", "state", 0, "exp_avg", value=torch.zeros(3)),
                                "optimizer.state.0.exp_avg has shape (3,), expected ("),
    "moment too large": (_set("optimizer", "state", 1, "exp_avg_sq", value=torch.zeros(65, 8)),
                         "optimizer.state.1.exp_avg_sq has shape (65, 8), expected (64, 8)"),
    "moment of another dtype": (_set("optimizer", "state", 0, "exp_avg", value=lambda t: t.double()),
                                "optimizer.state.0.exp_avg has dtype torch.float64"),
    "moment not finite": (_set("optimizer", "state", 0, "exp_avg", value=lambda t: t * math.nan),
                          "optimizer.state.0.exp_avg holds NaN"),
    "negative second moment": (_set("optimizer", "state", 0, "exp_avg_sq", value=lambda t: t - 1),
                               "optimizer.state.0.exp_avg_sq holds values below 0"),
    "step a vector": (_set("optimizer", "state", 0, "step", value=torch.zeros(5)),
                      "optimizer.state.0.step has shape (5,), expected ()"),
    "step an integer tensor": (_set("optimizer", "state", 0, "step", value=torch.tensor(3)),
                               "optimizer.state.0.step has dtype torch.int64"),
    "step negative": (_set("optimizer", "state", 0, "step", value=torch.tensor(-2.0)),
                      "optimizer.state.0.step holds values below 0"),
    "moments missing": (_set("optimizer", "state", 0, value={"step": torch.tensor(3.0)}),
                        "optimizer.state.0 has no exp_avg"),
    "state for no parameter": (_set("optimizer", "state", 99, value={}), "optimizer.state has an entry for 99"),
    "state keyed by name": (_set("optimizer", "state", "embedding", value={}), "optimizer.state has an entry"),
    "fewer parameters": (_set("optimizer", "param_groups", value=lambda g: [{**g[0], "params": g[0]["params"][:-1]}]),
                         "optimizer.param_groups.0.params has"),
    "two groups": (_set("optimizer", "param_groups", value=lambda g: g * 2), "optimizer.param_groups has 2 entries"),
    "amsgrad switched on": (_groups(amsgrad=True), "optimizer.param_groups.0.amsgrad is True"),
    "maximize switched on": (_groups(maximize=True), "optimizer.param_groups.0.maximize"),
    "capturable on a CPU": (_groups(capturable=True), "optimizer.param_groups.0.capturable"),
    "other betas": (_groups(betas=(0.5, 2.0)), "optimizer.param_groups.0.betas"),
    "lr a string": (_groups(lr="fast"), "optimizer.param_groups.0.lr is a str"),
    "unknown group setting": (_groups(colour="red"), "optimizer.param_groups.0 has an unknown entry colour"),
    "optimizer missing": (_drop("optimizer"), "training_state has no optimizer"),
    "optimizer a list": (_set("optimizer", value=[1, 2]), "optimizer is a list"),
    "progress.step a string": (_set("progress", "step", value="3"), "progress.step is a str"),
    "negative position": (_set("progress", "position", value=-40), "progress.position is -40"),
    "best loss a list": (_set("progress", "best_valid_loss", value=[1.0]), "progress.best_valid_loss is a list"),
    "best loss NaN": (_set("progress", "best_valid_loss", value=math.nan), "progress.best_valid_loss is nan"),
    "epoch 0": (_set("progress", "epoch", value=0), "progress.epoch is 0"),
    "step past int64": (_set("progress", "step", value=2**70), "progress.step is a huge integer"),
    "step a bool": (_set("progress", "step", value=True), "progress.step is a bool"),
    "progress unknown field": (_set("progress", "colour", value=1), "progress has an unknown entry colour"),
    "progress a tensor": (_set("progress", value=torch.zeros(2)), "progress is a Tensor"),
    "torch RNG short": (_set("rng", "torch", value=torch.zeros(100, dtype=torch.uint8)), "rng.torch has shape (100,)"),
    "torch RNG of int64": (_set("rng", "torch", value=lambda t: t.long()), "rng.torch has dtype torch.int64"),
    "numpy keys short": (_set("rng", "numpy", "keys", value=lambda t: t[:623].clone()), "rng.numpy.keys has shape"),
    "numpy key too large": (_set("rng", "numpy", "keys", value=lambda t: t + 2**32), "rng.numpy.keys holds values above"),
    "numpy pos past the state": (_set("rng", "numpy", "pos", value=700), "rng.numpy.pos is 700"),
    "python state short": (_set("rng", "python", value=lambda s: (s[0], s[1][:10], s[2])),
                           "rng.python.state has 10 entries"),
    "python version 2": (_set("rng", "python", value=lambda s: (2, s[1], s[2])), "rng.python.version is 2"),
    "cuda state of a wrong size": (_set("rng", "cuda", value=[torch.zeros(7, dtype=torch.uint8)]),
                                   "rng.cuda.0 has shape (7,)"),
    "rng missing": (_drop("rng"), "training_state has no rng"),
    "hidden of another batch": (_set("hidden", value=lambda h: tuple(torch.zeros(1, 5, 16) for _ in h)),
                                "hidden.0 has shape (1, 5, 16), expected (1, 4, 16)"),
    "hidden of three tensors": (_set("hidden", value=lambda h: (*h, h[0].clone())), "hidden has 3 entries"),
    "hidden of integers": (_set("hidden", value=lambda h: tuple(t.long() for t in h)), "hidden.0 has dtype"),
    "ranks of another world": (_set("ranks", value=[{}, {}]), "training_state has both"),
    "schedule level a string": (_set("schedule", "level", value="0.1"), "schedule.level is a str"),
    "schedule without stalled": (_drop("schedule", "stalled"), "schedule has no stalled"),
    "average of one mean": (_set("average", value={"count": 2, "mean": [torch.zeros(20, 8)]}),
                            "average.mean has 1 entries"),
    "unknown state entry": (_set("extra", value=1), "training_state has an unknown entry extra"),
    "world size a tensor": (_set("world_size", value=torch.tensor([1, 1])), "world_size is a Tensor"),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_field_is_named_and_refused(run, tmp_path, case):
    change, detail = DAMAGED[case]
    path = crafted(run, tmp_path, change)
    with pytest.raises(CheckpointError) as refusal:
        checked(path)
    message = str(refusal.value)
    assert message.startswith(f"{path}: training state is damaged ({detail}"), message
    assert len(message.splitlines()) == 1 and message.endswith("start anew with --init-from the model")


@pytest.mark.parametrize("case", ["train_config batch size a tensor", "provenance a list"])
def test_damaged_resume_settings_are_refused(run, tmp_path, case):
    def change(payload):
        if case == "provenance a list":
            payload["train_config"]["provenance"] = [1]
        else:
            payload["train_config"]["batch_size"] = torch.tensor([4, 4])
    path = crafted(run, tmp_path, change)
    with pytest.raises(CheckpointError, match=r"training state is damaged \(train_config\."):
        checked(path)


def test_the_genuine_state_passes_and_resumes(run, tmp_path):
    checked(run / "m.last.pt")  # the checks refuse nothing a run writes
    out = tmp_path / "m.pt"
    result = cli("train", run / "c.txt", "--out", out, *RUN, "--max-steps", "5", "--resume", run / "m.last.pt")
    assert result.exit_code == 0, result.stderr
    assert load_checkpoint(tmp_path / "m.last.pt").training_state["progress"]["step"] == 5


@pytest.mark.parametrize("options", [
    ["--optimizer", "sgd", "--asgd", "--nonmono", "1", "--max-steps", "2"],
    ["--optimizer", "adamw", "--attention", "3", "--cell", "gru", "--max-steps", "2"],
    ["--cell", "mogrifier", "--mogrifier-rounds", "3", "--tied", "--max-steps", "2"],
])
def test_genuine_states_of_other_settings_pass(run, tmp_path, options):
    from rnnlm_cli.train.state import check_training_state

    out = tmp_path / "m.pt"
    result = cli("train", run / "c.txt", "--out", out, *SHAPE, *RUN, *options)
    assert result.exit_code == 0, result.stderr
    checkpoint = load_checkpoint(tmp_path / "m.last.pt")
    config = TrainConfig(batch_size=4, bptt=10, optimizer=options[options.index("--optimizer") + 1]
                         if "--optimizer" in options else "adam", asgd="--asgd" in options)
    check_training_state("m.last.pt", checkpoint, build_model(checkpoint.model_config), config, 1)


# -- through the command line ------------------------------------------------------------------

RESUME_REFUSED = ["progress.step a string", "best loss a list", "negative position", "torch RNG short",
                  "hidden of another batch", "fewer parameters", "amsgrad switched on", "schedule level a string",
                  "rng missing"]


def assert_resume_refused(run, tmp_path, case: str, invoke) -> None:
    """``invoke(args) -> (exit code, stderr)`` resumes from the crafted state: exit 65, the field named, the model kept."""
    change, detail = DAMAGED[case]
    path = crafted(run, tmp_path, change)
    out = tmp_path / "m.pt"
    shutil.copy(run / "m.pt", out)
    before = digest(out)
    code, stderr = invoke(["train", str(run / "c.txt"), "--out", str(out), *RUN, "--max-steps", "6",
                           "--resume", str(path)])
    assert code == 65, stderr  # not -11 (a segfault) nor 1
    assert error_line(stderr).startswith(f"rnnlm: error: {path}: training state is damaged ({detail}")
    assert digest(out) == before


def _in_process(args: list[str]) -> tuple[int, str]:
    result = cli(*args)
    return result.exit_code, result.stderr


@pytest.mark.parametrize("case", RESUME_REFUSED)
def test_resume_refuses_a_damaged_field_with_exit_65(run, tmp_path, case):
    assert_resume_refused(run, tmp_path, case, _in_process)


_MEASURED = """
import os, resource, subprocess, sys
limit = int(sys.argv[1])
# A build without the checks would grow until the OOM killer came, on a machine the test
# shares; under this limit it fails on its own instead.
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""
"""Runs a command from a small parent: a child forked from pytest itself would start with the
test process' pages, so its peak would say how much the earlier tests had grown pytest."""


def _run_python(args: list[str], cwd: Path) -> tuple[int, str, int]:
    """(exit code, stderr, peak resident KiB) of ``python args`` in a fresh, memory-limited process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("RNNLM_DEBUG", None)
    with open(cwd / "stderr.txt", "wb") as errors:
        done = subprocess.run([sys.executable, "-c", _MEASURED, str(MEMORY_LIMIT), sys.executable, *args], cwd=cwd,
                              env=env, stdout=subprocess.PIPE, stderr=errors, check=True)
    code, peak = done.stdout.split()
    return int(code), (cwd / "stderr.txt").read_text(errors="replace"), int(peak)


@pytest.mark.parametrize("case", ["moment of a wrong shape", "moment too large", "step a vector"])
def test_resume_with_a_moment_the_fused_kernel_would_overrun_exits_65(run, tmp_path, case):
    assert_resume_refused(run, tmp_path, case, lambda args: _run_python(["-m", "rnnlm_cli", *args], tmp_path)[:2])


# -- views that inflate when touched ---------------------------------------------------------------

def _expand_weight(payload):
    payload["state_dict"]["rnn.weight_hh_l0"] = torch.zeros(1).expand(HUGE)


def _expand_moment(payload):
    payload["training_state"]["optimizer"]["state"][0]["exp_avg"] = torch.zeros(1).expand(HUGE, 8)


def _expand_hidden(payload):
    payload["training_state"]["hidden"] = (torch.zeros(1).expand(1, HUGE, 16), torch.zeros(1, 4, 16))


def _expand_in_metrics(payload):
    payload["metrics"]["anything"] = torch.zeros(1).expand(HUGE)


EXPANDED = {"weight": (_expand_weight, "state_dict.rnn.weight_hh_l0"),
            "adam moment": (_expand_moment, "training_state.optimizer.state.0.exp_avg"),
            "hidden state": (_expand_hidden, "training_state.hidden.0"),
            "metrics": (_expand_in_metrics, "metrics.anything")}


@pytest.mark.parametrize("case", EXPANDED)
def test_an_expanded_view_is_refused_before_anything_touches_it(run, tmp_path, case):
    change, field = EXPANDED[case]
    path = crafted(run, tmp_path, change)
    # A few bytes more on disk than the genuine file; gigabytes once materialised.
    assert path.stat().st_size < (run / "m.last.pt").stat().st_size + 4096
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as refusal:
        load_checkpoint(path)
    assert time.perf_counter() - started < 5
    assert str(refusal.value).startswith(f"{path}: checkpoint is damaged (tensor {field} of shape")


@pytest.mark.parametrize("case", ["weight", "adam moment"])
def test_the_command_line_refuses_an_expanded_view_in_bounded_memory(run, tmp_path, case):
    path = crafted(run, tmp_path, EXPANDED[case][0])
    code, stderr, peak_kib = _run_python(["-m", "rnnlm_cli", "eval", str(path), str(run / "c.txt")], tmp_path)
    assert code == 65, stderr
    assert error_line(stderr).startswith(f"rnnlm: error: {path}: checkpoint is damaged (tensor {EXPANDED[case][1]}")
    assert peak_kib < (HUGE // 2) // 1024, f"peak resident memory {peak_kib} KiB"


@pytest.mark.parametrize("make", [
    lambda t: t.t(),  # strided: a transposed view
    lambda t: t.reshape(-1)[1:],  # offset into a larger buffer
    lambda t: torch.cat([t.reshape(-1), t.reshape(-1)])[: t.numel()].reshape(t.shape),  # storage too large
])
def test_views_of_any_kind_are_refused(run, tmp_path, make):
    def change(payload):
        weight = payload["state_dict"]["rnn.weight_hh_l0"]
        payload["state_dict"]["rnn.weight_hh_l0"] = make(weight.reshape(weight.shape[1], -1).clone())
    path = crafted(run, tmp_path, change)
    with pytest.raises(CheckpointError, match="expanded, strided or offset view"):
        load_checkpoint(path)


# -- restore functions never fail with anything but a CheckpointError -----------------------------

@pytest.mark.parametrize("state", [
    None, [1, 2], {}, {"torch": torch.zeros(3)},
    {**capture_rng(), "torch": torch.get_rng_state()[:-1].clone()},
    {**capture_rng(), "python": "abc"},
    {**capture_rng(), "python": (3, tuple(range(624)) + (10**6,), None)},
    {**capture_rng(), "numpy": {**capture_rng()["numpy"], "name": "PCG64"}},
    {**capture_rng(), "numpy": {**capture_rng()["numpy"], "has_gauss": 2}},
])
def test_restore_rng_refuses_crafted_states_as_checkpoint_errors(state):
    with pytest.raises(CheckpointError):
        restore_rng(state)


def test_restore_rng_still_restores():
    saved = capture_rng()
    first, first_tensor = random.random(), torch.rand(3)
    restore_rng(saved)
    assert random.random() == first and torch.equal(torch.rand(3), first_tensor)


@pytest.mark.parametrize("data", [None, "x", [], {"step": "3"}, {"epoch": -1}, {"train_seconds": math.inf},
                                  {"position": 1.5}, {"nonsense": 1}, {"best_step": -2}])
def test_progress_from_a_crafted_dict_is_a_checkpoint_error(data):
    with pytest.raises(CheckpointError):
        RunPosition.from_dict(data, 35)


def test_progress_from_an_older_dict_keeps_its_defaults():
    assert RunPosition.from_dict({"segment": 3, "step": 3}, 10).position == 30


def test_schedule_and_average_states_are_checked_on_load():
    model = build_model(ModelConfig(vocab_size=11, emb=4, hidden=6, layers=1))
    schedule = LrSchedule(CONFIG, 100)
    schedule.load_state_dict({"level": 0.5, "stalled": 2})
    for bad in ({"level": "x", "stalled": 0}, {"level": 0.1}, {"level": math.inf, "stalled": 0}, [0.1, 0]):
        with pytest.raises(CheckpointError):
            schedule.load_state_dict(bad)
    average = WeightAverage(model, nonmono=1)
    average.after_validation(stalled=1)
    average.load_state_dict(average.state_dict())
    good = average.state_dict()
    for bad in ({**good, "mean": good["mean"][:-1]}, {**good, "count": -1},
                {**good, "mean": [torch.zeros(1).expand(m.shape) for m in good["mean"]]}):
        with pytest.raises(CheckpointError):
            average.load_state_dict(bad)


def test_loading_an_optimizer_state_keeps_this_machines_kernel_choice():
    from rnnlm_cli.train.optimizers import load_optimizer_state

    model = build_model(ModelConfig(vocab_size=11, emb=4, hidden=6, layers=1))
    optimizer = make_optimizer(model, CONFIG)
    saved = optimizer.state_dict()
    saved["param_groups"][0] |= {"fused": False, "foreach": True}
    load_optimizer_state(optimizer, saved)
    group = optimizer.param_groups[0]
    assert (group["fused"], group["foreach"]) == (True, None)
    model(torch.zeros(3, 2, dtype=torch.long))[0].sum().backward()
    optimizer.step()  # the fused kernel, on tensors it accepts


# -- sizes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [
    dict(cell="lstm", emb=8, hidden=12, layers=2, tied=True, attention=3),
    dict(cell="mogrifier", emb=5, hidden=7, layers=3, mogrifier_rounds=3),
    dict(cell="mogrifier", emb=5, hidden=7, layers=1, mogrifier_rounds=1, tied=True),
    dict(cell="gru", emb=8, hidden=16, layers=2, adaptive_softmax="10,20"),
    dict(cell="rnn", emb=6, hidden=5, layers=1, adaptive_softmax="3", impl="reference"),
])
def test_sizes_are_counted_without_building(shape):
    from rnnlm_cli.models.sizing import tensor_count

    config = ModelConfig(vocab_size=37, **shape)
    with torch.device("meta"):
        model = build_model(config)
    assert estimated_parameters(config) == sum({id(p): p.numel() for p in model.parameters()}.values())
    assert tensor_count(config) == len(model.state_dict())


def test_the_default_cap_is_the_memory_a_training_run_needs():
    from rnnlm_cli.models.sizing import default_max_params, memory_bytes

    assert default_max_params() == memory_bytes() // 16 > 10**6
    assert default_max_params(loading=True) == memory_bytes() // 8


def test_a_model_over_the_cap_is_refused_from_flags_and_from_a_file():
    from rnnlm_cli.models.sizing import check_model_size

    absurd = ModelConfig(vocab_size=10**12)
    started = time.perf_counter()
    with pytest.raises(UsageError, match=r"more than [\d,]+, the most this machine.s memory trains"):
        check_model_size(absurd)
    assert time.perf_counter() - started < 1
    with pytest.raises(UsageError, match="more than --max-params 1,000"):
        check_model_size(ModelConfig(vocab_size=100), max_params=1000)
    with pytest.raises(CheckpointError, match="^m.pt: the stored model config asks for .* memory loads"):
        check_model_size(absurd, path="m.pt")
    check_model_size(ModelConfig(vocab_size=100))


def test_loading_holds_a_file_to_the_cap(run, tmp_path):
    count = estimated_parameters(load_checkpoint(run / "m.pt").model_config)
    load_model(run / "m.pt", max_params=count)
    with pytest.raises(CheckpointError, match=f"asks for {count:,} parameters, more than --max-params {count - 1:,}"):
        load_model(run / "m.pt", max_params=count - 1)
    result = cli("train", run / "c.txt", "--out", tmp_path / "n.pt", *RUN, "--max-steps", "2",
                 "--init-from", run / "m.pt", "--max-params", count - 1)
    assert result.exit_code == 65 and "--max-params" in error_line(result.stderr)


@pytest.mark.parametrize("change", [{"vocab_size": 10**12}, {"layers": 65536, "hidden": 1, "emb": 1}])
def test_an_absurd_stored_config_is_refused_at_once(run, tmp_path, change):
    payload = payload_of(run / "m.pt")
    payload["model_config"] |= change
    path = write_payload(tmp_path / "absurd.pt", payload)
    started = time.perf_counter()
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert time.perf_counter() - started < 5


def test_save_then_load_round_trip_still_works(tmp_path):
    model = build_model(ModelConfig(vocab_size=11, emb=4, hidden=6, layers=1, attention=2))
    save_checkpoint(tmp_path / "m.pt", model, {"kind": "byte"})
    assert load_checkpoint(tmp_path / "m.pt").model_config.attention == 2


def test_a_zip_member_claiming_more_bytes_than_the_file_holds_is_refused(tmp_path):
    """The archive reader allocates what a member's directory entry claims: 2 GiB from a few KB here."""
    import struct

    path = tmp_path / "m.pt"
    save_checkpoint(path, build_model(ModelConfig(vocab_size=5, emb=4, hidden=6, layers=1)),
                    {"kind": "word", "version": 1, "vocab": ["<eos>", "<unk>", "a", "b", "c"]})
    data = bytearray(path.read_bytes())
    entry = data.find(b"PK\x01\x02")
    patched = 0
    while entry != -1:  # every central-directory entry of a tensor record claims 2 GiB
        name_length = struct.unpack("<H", data[entry + 28:entry + 30])[0]
        if b"/data/" in data[entry + 46:entry + 46 + name_length]:
            data[entry + 20:entry + 28] = struct.pack("<II", 1 << 31, 1 << 31)
            patched += 1
        entry = data.find(b"PK\x01\x02", entry + 4)
    assert patched
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="claims more bytes than the file has"):
        load_checkpoint(path)
