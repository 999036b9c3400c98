"""Shared fixtures and helpers: tiny tokenizers and models built in memory, one toy model
trained once per session (a copy per test), files in tmp_path, and the two ways to run the
command: :func:`cli` in this process, :func:`console` in a child process where the process
itself is what is tested (signals, pipes, the terminal, the console script's exit codes)."""

from __future__ import annotations

import errno
import os
import random
import shutil
import subprocess
import sys
import threading
import time

import pytest
import torch
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from rnnlm_cli.store.checkpoint import save_checkpoint
from rnnlm_cli.models.config import ModelConfig
from rnnlm_cli.models.lm import build_model

# Property tests: the same examples on every run (derandomized, no example database), no
# deadline (a shared machine's load is not a failure), and how many by profile: "ci", the full
# count, where a CI service runs the suite (it sets CI) or HYPOTHESIS_PROFILE=ci asks for it;
# "dev", a fifth of it, for a developer's run of the whole suite.
_PROPERTIES = dict(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=150, **_PROPERTIES)
settings.register_profile("dev", max_examples=30, **_PROPERTIES)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


MAX_WORKERS = 8
"""Most test processes ``-n auto`` starts: each imports torch (a few hundred MB), and a large
host's CPU count says nothing of the share a container may use."""


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pyproject's addopts): one worker per CPU this process may run on, at most
    :data:`MAX_WORKERS`."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(usable, MAX_WORKERS))


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models on a small shared machine: a second intra-op thread only adds
    synchronisation (about 100x slower per step under load), and one thread in-process and
    in subprocesses (OMP_NUM_THREADS=1) makes float sums agree between them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CLEAN_ENV = {"RNNLM_DEBUG": None, "NO_COLOR": None, "FORCE_COLOR": None}
"""The variables a developer's shell may set that change what a command prints."""
RNNLM = [sys.executable, "-m", "rnnlm_cli"]
"""The command as a child process: this interpreter's rnnlm_cli, the code under test."""


def cli(*args, input=None, env=None):
    """``rnnlm ARGS`` in this process (typer's runner): exit code, stdout and stderr apart."""
    from rnnlm_cli.cli import app

    return CliRunner().invoke(app, [str(arg) for arg in args], input=input, env={**CLEAN_ENV, **(env or {})})


def console_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this one's, less what changes the output (colour,
    width, tracebacks), with one intra-op thread (tiny models gain nothing from a second, which
    only adds synchronisation), and ``extra``."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in (*CLEAN_ENV, "TTY_COMPATIBLE", "COLUMNS")}
    environment.update(OMP_NUM_THREADS="1", **extra)
    return environment


def console(*args, input: bytes | None = b"", cwd=None, **env: str) -> subprocess.CompletedProcess:
    """``python -m rnnlm_cli ARGS`` in a child process (:func:`console_env`), bytes in and out."""
    return subprocess.run([*RNNLM, *map(str, args)], input=input, capture_output=True, env=console_env(**env),
                          timeout=120, cwd=cwd)


def one_error_line(stderr: str | bytes) -> str:
    """The single line an error prints; fails when there is more (a traceback, a warning) or it is
    not one short line."""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    lines = text.splitlines()
    assert len(lines) == 1, text[:2000]
    assert lines[0].startswith("rnnlm: error: ") and len(lines[0]) < 400, text[:2000]
    return lines[0]


_DETS = ["the", "a", "some", "every", "this", "these", "two", "few"]
_ADJS = ["big", "small", "happy", "sad", "quiet", "brave", "lazy", "proud"]
_NOUNS = ["dog", "cat", "girl", "boy", "fox", "bird", "horse", "farmer", "baker", "doctor"]
_VERBS = ["sees", "chases", "likes", "greets", "hears", "watches", "follows", "helps"]
_ADVS = ["quickly", "slowly", "loudly", "today"]


def make_lines(count: int, seed: int) -> list[str]:
    """Sentences of a toy grammar: varied enough for sentencepiece, small enough to learn fast."""
    rng = random.Random(seed)

    def phrase() -> list[str]:
        words = [rng.choice(_DETS)]
        if rng.random() < 0.5:
            words.append(rng.choice(_ADJS))
        return words + [rng.choice(_NOUNS)]

    lines = []
    for _ in range(count):
        words = phrase() + [rng.choice(_VERBS)] + phrase()
        if rng.random() < 0.3:
            words.append(rng.choice(_ADVS))
        lines.append(" ".join(words + ["."]))
    return lines


def write_lines(path, lines: list[str]):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


TOY_TRAIN = ["--hidden", "16", "--emb", "8", "--layers", "1", "--bptt", "8", "--epochs", "3", "--batch-size", "8",
             "--dropout", "0", "--lr", "0.01", "--device", "cpu"]
"""How :func:`toy` is trained: a tiny LSTM, a few epochs, enough to prefer words to line ends."""


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> dict:
    """One toy LSTM trained on :func:`make_lines` text, once per session (per worker): its
    texts (``train``, ``valid``, ``test`` files and their ``*_lines``) and ``model``. Tests that
    may change the model file take :func:`toy_model`, a copy."""
    root = tmp_path_factory.mktemp("toy")
    lines = {"train": make_lines(300, seed=1), "valid": make_lines(12, seed=2), "test": make_lines(15, seed=3)}
    files = {name: write_lines(root / f"{name}.txt", text) for name, text in lines.items()}
    model = root / "lm" / "model.pt"
    result = cli("train", files["train"], "--valid", files["valid"], "--out", model, *TOY_TRAIN)
    assert result.exit_code == 0, result.stderr
    return {"root": root, "model": model, **files, **{f"{name}_lines": text for name, text in lines.items()}}


@pytest.fixture
def toy_model(toy, tmp_path):
    """A copy of the session's toy model, this test's own."""
    copy = tmp_path / "toy" / "model.pt"
    copy.parent.mkdir()
    shutil.copyfile(toy["model"], copy)
    return copy


TINY_TEXT = [
    "the dog runs .",
    "the dogs run .",
    "a cat sees the dog .",
    "the cats see a dog .",
] * 5


@pytest.fixture
def tiny_corpus(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(TINY_TEXT) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def word_tokenizer(tiny_corpus, tmp_path):
    from rnnlm_cli.config import TokenizerConfig
    from rnnlm_cli.text.corpus import encode_corpus

    return encode_corpus(str(tiny_corpus), str(tmp_path / "tiny.tok"), config=TokenizerConfig(kind="word")).tokenizer


def tiny_model(vocab_size: int, cell: str = "lstm", tied: bool = False, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=vocab_size, cell=cell, emb=8, hidden=8 if tied else 12, layers=2,
                         dropout=0.0, tied=tied)
    return build_model(config).eval()


@pytest.fixture
def saved_model(tmp_path, word_tokenizer):
    """A small random LSTM over the tiny corpus' vocabulary, saved as a checkpoint."""
    model = tiny_model(word_tokenizer.vocab_size)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, word_tokenizer.to_dict(), metrics={"valid_ppl": 1.0})
    return path, model, word_tokenizer


class Fifo:
    """A named pipe at ``path`` whose first reader gets ``data``; later readers get end of file."""

    def __init__(self, path, data: bytes) -> None:
        self.path = str(path)
        self.data = data
        self.written = 0
        self._stop = threading.Event()
        os.mkfifo(self.path)
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()

    def _open_writer(self) -> int | None:
        while not self._stop.is_set():
            try:
                return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
                time.sleep(0.005)
        return None

    def _feed(self) -> None:
        fd = self._open_writer()
        if fd is None:
            return
        os.set_blocking(fd, True)
        try:
            view = memoryview(self.data)
            while view:
                sent = os.write(fd, view)
                self.written += sent
                view = view[sent:]
        except BrokenPipeError:
            pass  # the reader closed early: what it did not read is gone, as with a real pipe
        finally:
            os.close(fd)
        # The writer is gone: any later reader sees end of file at once.
        while (fd := self._open_writer()) is not None:
            os.close(fd)
            time.sleep(0.005)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def fifo(tmp_path):
    made: list[Fifo] = []

    def make(data: bytes, name: str = "pipe") -> str:
        folder = tmp_path / f"fifo{len(made)}"
        folder.mkdir()
        made.append(Fifo(folder / name, data))
        return made[-1].path

    yield make
    for pipe in made:
        pipe.close()
