"""A training run survives what happens to long jobs: stops and resumes, signals, kills
mid-save, bad steps, retraining from a model, promotion, and a second run in its folder.

Runs go through the real command line: in-process with ``CliRunner`` where only files
and exit codes matter, as ``python -m rnnlm_cli`` subprocesses where signals, kills or
two processes at once are the point. Models are tiny and corpora are the first lines of
the sample corpus, so the whole file takes seconds.

Several subprocess tests make the run wait at a known point without slowing it down:
its stderr is a pipe shrunk to one page that the test does not read, so with
``--log-interval 1`` the run blocks writing its log after about 60 steps, and resumes
when the test drains the pipe.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import rnnlm_cli
import rnnlm_cli.models.lm
from rnnlm_cli.store.checkpoint import load_checkpoint, save_checkpoint
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model
from rnnlm_cli.train.run_control import StopSignals
from rnnlm_cli.text.tokenfile import open_token_file
from rnnlm_cli.text.tokenizers import tokenizer_from_dict

from conftest import cli

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "train.txt"
PACKAGE_ROOT = str(Path(rnnlm_cli.__file__).resolve().parents[1])
TEMP_PREFIX = ".rnnlm-tmp-"
SHAPE = {"--hidden": "16", "--emb": "8", "--layers": "1"}
BATCHING = {"--batch-size": "4", "--bptt": "10", "--device": "cpu"}
# Dropout draws random numbers every step: resuming is exact only if the generators are saved.
# A constant rate: a run stopped by --max-steps N and resumed to 2N takes the rates of one run to 2N.
EXACT = {"--dropout": "0.3", "--deterministic": None, "--seed": "7", "--schedule": "constant"}

pytestmark = pytest.mark.skipif(not hasattr(fcntl, "F_SETPIPE_SZ"), reason="needs Linux pipes")


# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def keep_torch_global_mode():
    """--deterministic switches torch's global mode in-process; give the suite its own back."""
    mode = torch.are_deterministic_algorithms_enabled()
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield
    torch.use_deterministic_algorithms(mode)
    if cublas is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def sample_lines(count: int, start: int = 0) -> list[str]:
    with open(SAMPLE, encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in itertools.islice(handle, start, start + count)]


def write_corpus(path: Path, count: int, start: int = 0, extra: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([*extra, *sample_lines(count, start)]) + "\n", encoding="utf-8")
    return path


def flags(*groups: dict, **overrides) -> list[str]:
    """Command-line flags from dicts of flag -> value (None: a switch); later groups win."""
    merged: dict[str, str | None] = {}
    for group in groups:
        merged.update(group)
    merged.update({"--" + name.replace("_", "-"): value for name, value in overrides.items()})
    out: list[str] = []
    for flag, value in merged.items():
        out += [flag] if value is None else [flag, str(value)]
    return out


def train(corpus: Path, out: Path, *args):
    result = cli("train", corpus, "--out", out, *args)
    assert result.exit_code == 0, result.stderr
    return result


def error_line(stderr: str) -> str:
    """The one `rnnlm: error:` line of a failed run (log lines may stand beside it)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("rnnlm: error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


def records(metrics: Path, event: str) -> list[dict]:
    """The metrics file's records of one kind; a line still being written is left out."""
    lines = metrics.read_text(encoding="utf-8").split("\n")[:-1] if metrics.exists() else []
    return [r for r in map(json.loads, lines) if r["event"] == event]


def beside(out: Path, suffix: str) -> Path:
    return out.with_name(out.stem + suffix)


def assert_same_bits(a, b, where: str = "") -> None:
    """Equal nested data, tensors compared bit for bit (dtype included)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_bits(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_bits(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_training_state(path_a: Path, path_b: Path) -> None:
    """Two .last.pt files hold the same weights, optimizer, generators, hidden state and position."""
    a, b = load_checkpoint(path_a), load_checkpoint(path_b)
    assert_same_bits(a.state_dict, b.state_dict, "state_dict")
    state_a, state_b = a.training_state, b.training_state
    for key in ("optimizer", "rng", "hidden"):
        assert_same_bits(state_a[key], state_b[key], key)
    for key in ("epoch", "segment", "step", "train_tokens", "skipped_steps"):
        assert state_a["progress"][key] == state_b["progress"][key], key


def progress(last: Path) -> dict:
    return load_checkpoint(last).training_state["progress"]


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RNNLM_DEBUG", "FORCE_COLOR")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_COLOR="1",
               PYTHONPATH=os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")])))
    return env


class BackgroundTrain:
    """`python -m rnnlm_cli train` in a subprocess, its stderr a one-page pipe (see the module doc)."""

    def __init__(self, corpus: Path, out: Path, *args):
        self.out = out
        self.metrics = beside(out, ".metrics.jsonl")
        read_end, write_end = os.pipe()
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rnnlm_cli", "train", str(corpus), "--out", str(out), *map(str, args)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=write_end, env=subprocess_env())
        os.close(write_end)
        self._stderr = os.fdopen(read_end, "rb")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._stderr.close()

    def wait_for(self, condition, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended (exit {self.proc.returncode}) before {what}:\n{self.finish()[1]}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.01)

    def wait_until_training(self) -> None:
        self.wait_for(lambda: records(self.metrics, "train"), "the first training step")

    def wait_until_blocked(self, quiet: float = 0.5) -> None:
        """Wait until the run is stuck on its full stderr pipe: no new record for ``quiet`` s."""
        seen = {"size": -1, "since": time.monotonic()}

        def still() -> bool:
            size = self.metrics.stat().st_size if self.metrics.exists() else -1
            if size != seen["size"]:
                seen.update(size=size, since=time.monotonic())
            return size > 0 and time.monotonic() - seen["since"] >= quiet

        self.wait_for(still, "the run to block on its log")

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        """Let the run go on (drain its stderr) until it exits: (exit code, stderr)."""
        stderr = self._stderr.read().decode("utf-8", "replace")
        self._stderr.close()
        return self.proc.wait(timeout=timeout), stderr


@pytest.fixture
def background():
    """Starts BackgroundTrain runs; one still running when the test ends (it failed) is killed."""
    runs: list[BackgroundTrain] = []

    def start(corpus: Path, out: Path, *args) -> BackgroundTrain:
        runs.append(BackgroundTrain(corpus, out, *args))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()


# ---------------------------------------------------------------- 1. --resume


@pytest.mark.parametrize("half, full, epochs", [(20, 40, (1, 1)), (60, 120, (1, 2))],
                         ids=["inside-an-epoch", "across-an-epoch-end"])
def test_stop_and_resume_gives_the_bits_of_an_uninterrupted_run(tmp_path, half, full, epochs):
    corpus = write_corpus(tmp_path / "corpus.txt", 300)  # about 84 steps per epoch
    common = flags(SHAPE, BATCHING, EXACT, log_interval=1)
    straight = tmp_path / "straight" / "m.pt"
    train(corpus, straight, *common, "--max-steps", full)
    assert progress(beside(straight, ".last.pt"))["epoch"] == epochs[1]

    def stop_at_half(out: Path) -> None:
        train(corpus, out, *common, "--max-steps", half)
        assert progress(beside(out, ".last.pt"))["epoch"] == epochs[0]
        # A fresh start would give the same bits too: the steps logged after this show
        # that the second run trained only the second half.
        beside(out, ".metrics.jsonl").unlink()

    def trained_steps(out: Path) -> list[int]:
        return [r["step"] for r in records(beside(out, ".metrics.jsonl"), "train")]

    # --resume auto: the .last.pt beside --out.
    auto = tmp_path / "auto" / "m.pt"
    stop_at_half(auto)
    result = train(corpus, auto, *common, "--max-steps", full, "--resume", "auto")
    assert f"resuming {beside(auto, '.last.pt')}" in result.stderr
    assert trained_steps(auto) == list(range(half + 1, full + 1))
    assert_same_training_state(beside(auto, ".last.pt"), beside(straight, ".last.pt"))

    # --resume PATH: a saved state elsewhere, into a folder with nothing to find by itself.
    first = tmp_path / "first" / "m.pt"
    stop_at_half(first)
    saved = tmp_path / "saved-state.pt"
    shutil.move(beside(first, ".last.pt"), saved)
    train(corpus, first, *common, "--max-steps", full, "--resume", saved)
    assert trained_steps(first) == list(range(half + 1, full + 1))
    assert_same_training_state(beside(first, ".last.pt"), beside(straight, ".last.pt"))


def test_resume_auto_with_nothing_to_resume_starts_a_new_run(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", 100)
    common = flags(SHAPE, BATCHING, EXACT, max_steps=5)
    fresh = tmp_path / "fresh" / "m.pt"
    train(corpus, fresh, *common)
    auto = tmp_path / "auto" / "m.pt"
    result = train(corpus, auto, *common, "--resume", "auto")
    assert f"nothing to resume at {beside(auto, '.last.pt')}" in result.stderr
    assert progress(beside(auto, ".last.pt"))["step"] == 5
    assert_same_training_state(beside(auto, ".last.pt"), beside(fresh, ".last.pt"))


def test_resume_refuses_another_corpus_and_a_model_file(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", 100)
    other = write_corpus(tmp_path / "other.txt", 100, start=500)
    out = tmp_path / "run" / "m.pt"
    common = flags(SHAPE, BATCHING, EXACT, max_steps=5)
    train(corpus, out, *common)
    last = beside(out, ".last.pt")
    saved = last.read_bytes()

    changed = cli("train", other, "--out", out, *common, "--max-steps", 10, "--resume", "auto")
    assert changed.exit_code == 65, changed.stderr
    assert "corpus" in error_line(changed.stderr)
    assert last.read_bytes() == saved

    # The best model has weights but no optimizer or position: nothing to continue.
    model_only = cli("train", corpus, "--out", tmp_path / "new" / "m.pt", *common, "--resume", out)
    assert model_only.exit_code == 2, model_only.stderr
    assert ".last.pt" in error_line(model_only.stderr)
    assert not (tmp_path / "new" / "m.last.pt").exists()


# ---------------------------------------------------------------- 2. signals

SIGNAL_RUN = 150  # steps; a run blocks on its log near step 60, so a signal always comes first


@pytest.fixture(scope="module")
def signal_setup(tmp_path_factory):
    """The corpus and the uninterrupted run a signalled and resumed one must equal."""
    root = tmp_path_factory.mktemp("signals")
    corpus = write_corpus(root / "corpus.txt", 300)  # about 84 steps per epoch
    args = flags(SHAPE, BATCHING, EXACT, max_steps=SIGNAL_RUN, log_interval=1)
    straight = root / "straight" / "m.pt"
    train(corpus, straight, *args)
    return corpus, args, beside(straight, ".last.pt")


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_after_the_step_and_the_saved_state_resumes_exactly(tmp_path, background, signal_setup,
                                                                           signum, code):
    corpus, args, reference = signal_setup
    out = tmp_path / "run" / "m.pt"
    run = background(corpus, out, *args)
    run.wait_until_training()
    run.proc.send_signal(signum)
    exit_code, stderr = run.finish()

    assert exit_code == code, stderr
    last = beside(out, ".last.pt")
    assert "Traceback" not in stderr, stderr
    told = [line for line in stderr.splitlines() if "--resume" in line]
    assert len(told) == 1 and told[0].startswith("rnnlm: ") and told[0].endswith(f"--resume {last}"), stderr
    # The step in progress was completed (its record written) and saved, nothing after it.
    stopped_at = progress(last)["step"]
    assert stopped_at == records(run.metrics, "train")[-1]["step"]
    assert 1 <= stopped_at < SIGNAL_RUN

    run.metrics.unlink()  # what the resumed run logs: only the steps after the stop
    train(corpus, out, *args, "--resume", last)
    assert [r["step"] for r in records(run.metrics, "train")] == list(range(stopped_at + 1, SIGNAL_RUN + 1))
    assert_same_training_state(last, reference)


def test_a_second_signal_aborts_at_once_and_keeps_the_saved_state(tmp_path, background):
    corpus = write_corpus(tmp_path / "corpus.txt", 60)  # about 16 steps per epoch
    out = tmp_path / "run" / "m.pt"
    last = beside(out, ".last.pt")
    run = background(corpus, out, *flags(SHAPE, BATCHING, EXACT, epochs=100, log_interval=1))
    run.wait_until_blocked()  # some epochs in, each ended with a saved state
    assert last.exists()
    run.proc.send_signal(signal.SIGTERM)
    # The run is still finishing the step the first signal found it in. A repeat within
    # ECHO_SECONDS counts as the same request (a process group signalled twice), so the
    # second one comes later.
    time.sleep(StopSignals.ECHO_SECONDS + 0.25)
    assert run.proc.poll() is None
    run.proc.send_signal(signal.SIGTERM)
    exit_code, stderr = run.finish()

    # The second signal raises KeyboardInterrupt: exit 130 whichever signal it was; a
    # stop that finished its step would have saved and exited 143.
    assert exit_code == 130, stderr
    state = load_checkpoint(last).training_state
    epoch_ends = {r["step"] for r in records(run.metrics, "valid")}
    assert state["progress"]["step"] in epoch_ends, "the state was re-saved after the signals"
    assert not [name for name in os.listdir(out.parent) if name.startswith(TEMP_PREFIX)]


def test_an_interrupt_is_reported_in_one_line(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("rnnlm_cli.train.run.run_training", interrupted)
    corpus = write_corpus(tmp_path / "corpus.txt", 50)
    result = cli("train", corpus, "--out", tmp_path / "m.pt", *flags(SHAPE, BATCHING))
    assert result.exit_code == 130
    assert error_line(result.stderr) == "rnnlm: error: interrupted"


# ---------------------------------------------------------------- 3. atomic saves

# Forks a child per round that saves a ~3.5 MB checkpoint in a tight loop; torch is
# imported once, and the test kills the children itself.
SAVE_LOOP = """
import os, sys, torch
from rnnlm_cli.store.checkpoint import save_checkpoint
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model
torch.manual_seed(0)
model = build_model(ModelConfig(vocab_size=257, emb=128, hidden=384, layers=1))
dest = sys.argv[1]
for command in sys.stdin:
    if command.strip() == "reap":
        os.waitpid(child, 0)
        print("reaped", flush=True)
        continue
    child = os.fork()
    if child == 0:
        saves = 0
        while True:
            saves += 1
            save_checkpoint(dest, model, {"kind": "byte", "version": 1}, metrics={"saves": saves})
    print(child, flush=True)
"""


def test_a_save_killed_at_any_moment_leaves_the_previous_file_whole(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    dest = folder / "model.pt"
    torch.manual_seed(0)
    expected = build_model(ModelConfig(vocab_size=257, emb=128, hidden=384, layers=1)).state_dict()
    helper = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(dest)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, env=subprocess_env(), text=True)
    delays = random.Random(0)
    child = None
    try:
        for _ in range(10):
            helper.stdin.write("go\n")
            helper.stdin.flush()
            child = int(helper.stdout.readline())
            deadline = time.monotonic() + 60
            while not dest.exists() and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(delays.uniform(0.0, 0.3))
            os.kill(child, signal.SIGKILL)
            helper.stdin.write("reap\n")
            helper.stdin.flush()
            assert helper.stdout.readline().strip() == "reaped"
            child = None

            checkpoint = load_checkpoint(dest)  # never a partial file under the final name
            assert checkpoint.metrics["saves"] >= 1
            assert_same_bits(checkpoint.state_dict, expected)
    finally:
        if child is not None:  # a failed round: its saver would loop on forever
            os.kill(child, signal.SIGKILL)
        helper.stdin.close()
        helper.wait(timeout=30)
    # The loop is nearly always inside a save, so the kills leave temporary files.
    assert [name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX)]

    corpus = write_corpus(tmp_path / "corpus.txt", 50)
    result = train(corpus, folder / "m.pt", *flags(SHAPE, BATCHING, max_steps=2))
    assert "removed temporary files" in result.stderr
    assert not [name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX)]
    load_checkpoint(dest)


# ---------------------------------------------------------------- 4. last and best


def fake_validation(monkeypatch, losses: list[float]) -> None:
    """Validation reports these mean losses in turn (one per epoch), as a sum over one token."""
    given = iter(losses)
    monkeypatch.setattr("rnnlm_cli.train.loop.stream_loss_sum", lambda *args, **kwargs: (next(given), 1))


def test_last_and_best_are_both_kept_and_best_is_the_lowest_validation(tmp_path, monkeypatch):
    fake_validation(monkeypatch, [2.0, 1.0, 1.5])
    corpus = write_corpus(tmp_path / "corpus.txt", 100)  # about 28 steps per epoch
    out = tmp_path / "m.pt"
    train(corpus, out, *flags(SHAPE, BATCHING, epochs=3))
    valid = records(beside(out, ".metrics.jsonl"), "valid")
    assert [r["valid_loss"] for r in valid] == [2.0, 1.0, 1.5]
    best = load_checkpoint(out).metrics
    assert best["valid_loss"] == min(r["valid_loss"] for r in valid)
    assert best["step"] == valid[1]["step"]
    assert progress(beside(out, ".last.pt"))["step"] == valid[2]["step"] > valid[1]["step"]


def test_a_nan_validation_never_becomes_best(tmp_path, monkeypatch):
    nan = float("nan")
    fake_validation(monkeypatch, [nan, 2.0, nan, 3.0])
    corpus = write_corpus(tmp_path / "corpus.txt", 100)
    out = tmp_path / "m.pt"
    train(corpus, out, *flags(SHAPE, BATCHING, epochs=4))
    valid = records(beside(out, ".metrics.jsonl"), "valid")
    assert [r["best"] for r in valid] == [False, True, False, False]
    best = load_checkpoint(out).metrics
    assert (best["valid_loss"], best["step"]) == (2.0, valid[1]["step"])


@pytest.mark.parametrize("losses, keep, kept", [
    ([1.0, 2.0, 3.0, 4.0], 2, [0, 2, 3]),  # the best is the oldest: it stays beside the newest two
    ([1.0, 2.0, 3.0, 4.0], 1, [0, 3]),
    ([4.0, 3.0, 2.0, 1.0], 2, [2, 3]),  # the best is among the newest: nothing extra
])
def test_keep_checkpoints_keeps_the_newest_and_the_best(tmp_path, monkeypatch, losses, keep, kept):
    fake_validation(monkeypatch, losses)
    corpus = write_corpus(tmp_path / "corpus.txt", 100)
    out = tmp_path / "m.pt"
    train(corpus, out, *flags(SHAPE, BATCHING, epochs=4, keep_checkpoints=keep))
    epoch_steps = [r["step"] for r in records(beside(out, ".metrics.jsonl"), "valid")]
    snapshots = {int(p.name[len("m.step"):-len(".pt")]): p for p in tmp_path.glob("m.step*.pt")}
    assert sorted(snapshots) == [epoch_steps[i] for i in kept]
    for step, path in snapshots.items():
        assert load_checkpoint(path).metrics["step"] == step


# ---------------------------------------------------------------- 5. non-finite steps


def poison_training(monkeypatch, bad) -> None:
    """Models built for training return NaN scores on the training calls ``bad(n)`` selects."""
    real_build = rnnlm_cli.models.lm.build_model
    calls = {"train": 0}

    def build(config):
        model = real_build(config)
        forward = model.forward

        def maybe_nan(tokens, state=None, **options):
            scores, state = forward(tokens, state, **options)
            if model.training:
                calls["train"] += 1
                if bad(calls["train"]):
                    scores = scores * float("nan")
            return scores, state

        model.forward = maybe_nan
        return model

    monkeypatch.setattr(rnnlm_cli.models.lm, "build_model", build)



def test_non_finite_steps_are_skipped_and_counted(tmp_path, monkeypatch):
    poison_training(monkeypatch, lambda n: n in (2, 4, 5))
    corpus = write_corpus(tmp_path / "corpus.txt", 100)
    out = tmp_path / "m.pt"
    result = train(corpus, out, *flags(SHAPE, BATCHING, max_steps=8, log_interval=1, max_bad_steps=3), "--json")
    summary = json.loads(result.stdout)
    assert (summary["steps"], summary["skipped_steps"]) == (8, 3)
    metrics = beside(out, ".metrics.jsonl")
    assert [r["in_a_row"] for r in records(metrics, "skipped")] == [1, 1, 2]
    assert [r["step"] for r in records(metrics, "train")] == list(range(1, 9))
    assert all(math.isfinite(r["loss"]) for r in records(metrics, "train"))
    for name, tensor in load_checkpoint(beside(out, ".last.pt")).state_dict.items():
        assert torch.isfinite(tensor).all(), name


def test_too_many_bad_steps_in_a_row_stop_the_run_and_keep_the_checkpoints(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus.txt", 100)
    out = tmp_path / "m.pt"
    kept = [out, beside(out, ".last.pt")]
    before: dict[Path, bytes] = {}

    def bad_after_the_first_epoch(n: int) -> bool:
        if not kept[1].exists():
            return False
        if not before:  # the files as they are when things go wrong
            before.update({path: path.read_bytes() for path in kept})
        return True

    poison_training(monkeypatch, bad_after_the_first_epoch)
    result = cli("train", corpus, "--out", out, *flags(SHAPE, BATCHING, epochs=3, max_bad_steps=3))
    assert result.exit_code == 1, result.stderr
    assert "3 steps in a row" in error_line(result.stderr)
    assert before and all(path.read_bytes() == data for path, data in before.items())
    assert len(records(beside(out, ".metrics.jsonl"), "skipped")) == 3


def test_the_gradient_norm_is_logged_before_clipping(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", 100)
    out = tmp_path / "m.pt"
    train(corpus, out, *flags(SHAPE, BATCHING, max_steps=3, log_interval=1, clip=0.001))
    norms = [r["grad_norm"] for r in records(beside(out, ".metrics.jsonl"), "train")]
    assert len(norms) == 3 and all(norm > 100 * 0.001 for norm in norms), norms


# ---------------------------------------------------------------- 6. --init-from


def test_init_from_starts_from_the_models_weights_and_tokenizer(tmp_path):
    source = tmp_path / "source" / "m.pt"
    train(write_corpus(tmp_path / "a.txt", 200), source, *flags(SHAPE, BATCHING, max_steps=30))
    unknown = ("zyzzyva quux zyzzyva .",)  # words the source's vocabulary does not hold
    corpus = write_corpus(tmp_path / "b.txt", 100, start=3000, extra=unknown)
    out = tmp_path / "new" / "m.pt"
    # SGD at a negligible rate: one step leaves the weights where training started.
    result = train(corpus, out, "--init-from", source, *flags(BATCHING, max_steps=1, optimizer="sgd", lr=1e-9))
    assert f"starting from the weights of {source}" in result.stderr

    old, new = load_checkpoint(source), load_checkpoint(beside(out, ".last.pt"))
    assert new.tokenizer == old.tokenizer
    assert new.model_config == old.model_config
    for name, tensor in old.state_dict.items():
        assert torch.allclose(new.state_dict[name], tensor, rtol=0, atol=1e-6), name
    # The corpus was read with the source's vocabulary: its new words became <unk>.
    unk_id = tokenizer_from_dict(old.tokenizer).unk_id
    tokens = open_token_file(str(beside(out, ".train.tok"))).tokens
    assert int((tokens == unk_id).sum()) >= 3


def test_init_from_refuses_a_different_shape(tmp_path):
    corpus = write_corpus(tmp_path / "a.txt", 100)
    source = tmp_path / "source" / "m.pt"
    train(corpus, source, *flags(SHAPE, BATCHING, max_steps=2))
    out = tmp_path / "new" / "m.pt"
    result = cli("train", corpus, "--out", out, "--init-from", source, *flags(BATCHING, hidden=32))
    assert result.exit_code == 2, result.stderr
    assert "--hidden" in error_line(result.stderr)
    assert not out.exists() and not beside(out, ".last.pt").exists()


# ---------------------------------------------------------------- 7. --promote-if-better


def temp_files(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(TEMP_PREFIX)]


def test_promote_if_better_creates_replaces_or_keeps_the_target(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", 200)
    common = flags(SHAPE, BATCHING)
    prod = tmp_path / "prod"

    weak = tmp_path / "weak" / "m.pt"
    created = prod / "new.pt"
    train(corpus, weak, *common, "--max-steps", 1, "--promote-if-better", created)
    assert created.read_bytes() == weak.read_bytes()

    target = prod / "model.pt"
    shutil.copyfile(weak, target)
    strong = tmp_path / "strong" / "m.pt"
    result = train(corpus, strong, *common, "--max-steps", 150, "--lr", 0.01, "--promote-if-better", target)
    assert "promoted" in result.stderr
    assert target.read_bytes() == strong.read_bytes()
    assert not temp_files(prod)

    in_place = target.read_bytes()
    worse = cli("train", corpus, "--out", tmp_path / "weak2" / "m.pt", *common, "--max-steps", 1,
                "--promote-if-better", target)
    assert worse.exit_code == 3, worse.stderr
    assert "not promoted" in error_line(worse.stderr)
    assert target.read_bytes() == in_place
    assert not temp_files(prod)


def test_promote_refuses_a_target_with_another_tokenizer_before_training(tmp_path):
    target = tmp_path / "prod" / "model.pt"
    torch.manual_seed(0)
    save_checkpoint(target, build_model(ModelConfig(vocab_size=257, emb=8, hidden=16, layers=1)),
                    {"kind": "byte", "version": 1})
    in_place = target.read_bytes()
    corpus = write_corpus(tmp_path / "corpus.txt", 100)
    out = tmp_path / "run" / "m.pt"
    result = cli("train", corpus, "--out", out, *flags(SHAPE, BATCHING, max_steps=2), "--promote-if-better", target)
    assert result.exit_code == 65, result.stderr
    assert "tokenizer" in error_line(result.stderr)
    assert not beside(out, ".last.pt").exists() and not out.exists()
    assert target.read_bytes() == in_place


# ---------------------------------------------------------------- 8. the output lock


def test_a_second_run_for_the_same_output_is_refused_and_others_train_beside_it(tmp_path, background):
    corpus = write_corpus(tmp_path / "corpus.txt", 300)
    folder = tmp_path / "runs"
    first = background(corpus, folder / "first.pt", *flags(SHAPE, BATCHING, max_steps=120, log_interval=1))
    first.wait_until_training()  # it holds the lock, and stays blocked on its log until drained

    started = time.monotonic()
    refused = cli("train", corpus, "--out", folder / "first.pt", *flags(SHAPE, BATCHING, max_steps=2))
    assert time.monotonic() - started < 2.0
    assert refused.exit_code == 75, refused.stderr
    assert f"pid {first.proc.pid}" in error_line(refused.stderr)
    assert (folder / ".first.rnnlm.lock").read_text().strip() == str(first.proc.pid)

    # Another output in the same folder trains while the first holds its own lock.
    beside = folder / "second.pt"
    train(corpus, beside, *flags(SHAPE, BATCHING, max_steps=2))
    assert beside.exists() and not (folder / ".second.rnnlm.lock").exists()  # removed at exit
    assert first.proc.poll() is None, "the first run ended before the run beside it"

    exit_code, stderr = first.finish()
    assert exit_code == 0, stderr
    assert progress(folder / "first.last.pt")["step"] == 120


# ---------------------------------------------------------------- 9. --deterministic


def test_deterministic_runs_repeat_bit_for_bit_and_record_provenance(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.txt", 100)
    args = flags(SHAPE, BATCHING, EXACT, max_steps=10)
    one, two = tmp_path / "one" / "m.pt", tmp_path / "two" / "m.pt"
    train(corpus, one, *args)
    train(corpus, two, *args)
    assert_same_training_state(beside(one, ".last.pt"), beside(two, ".last.pt"))
    assert_same_bits(load_checkpoint(one).state_dict, load_checkpoint(two).state_dict)

    config = load_checkpoint(one).train_config
    assert config["deterministic"] is True
    provenance = config["provenance"]
    assert provenance["environment"]["torch"] == str(torch.__version__)
    assert provenance["environment"]["rnnlm"] == rnnlm_cli.__version__
    fingerprint = provenance["data_fingerprint"]
    assert isinstance(fingerprint, str) and len(fingerprint) >= 16
    assert load_checkpoint(two).train_config["provenance"]["data_fingerprint"] == fingerprint

    other = tmp_path / "other" / "m.pt"
    train(write_corpus(tmp_path / "other.txt", 100, start=500), other, *flags(SHAPE, BATCHING, EXACT, max_steps=1))
    assert load_checkpoint(other).train_config["provenance"]["data_fingerprint"] != fingerprint


# ---------------------------------------------------------------- 10. refusals before work


@pytest.mark.parametrize("override, before_data", [
    ({"--bptt": "400"}, False),  # 50 lines leave each of 4 streams about 140 tokens
    ({"--device": "cuda"}, True),
    ({"--hidden": "-5"}, True),
    ({"--cell": "transformer"}, True),
], ids=["bptt-too-long", "cuda", "negative-hidden", "unknown-cell"])
def test_impossible_flags_are_refused_before_training(tmp_path, override, before_data):
    if override.get("--device") == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    corpus = write_corpus(tmp_path / "corpus.txt", 50)
    out = tmp_path / "run" / "m.pt"
    result = cli("train", corpus, "--out", out, *flags(SHAPE, BATCHING, override, max_steps=2))
    assert result.exit_code == 2, result.stderr
    error_line(result.stderr)
    for suffix in (".pt", ".last.pt", ".metrics.jsonl"):
        assert not beside(out, suffix).exists()
    if before_data:
        assert not out.parent.exists()
