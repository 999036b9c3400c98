"""Shared fixtures: tiny tokenizers and models built in memory, files in tmp_path."""

from __future__ import annotations

import errno
import os
import threading
import time

import pytest
import torch
from hypothesis import HealthCheck, settings

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


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models on a small shared machine: a second intra-op thread only adds
    synchronisation (about 100x slower per step under load), and one thread in-process and
    in subprocesses (OMP_NUM_THREADS=1) makes float sums agree between them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
