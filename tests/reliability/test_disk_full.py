"""Disk full is exit 73 everywhere, with the previous files intact.

Tested on a real small file system: a tmpfs mounted for the test where the test may mount
one (as root); elsewhere the save falls back to the RuntimeError torch really raises when
writing to /dev/full. Streams are also tested on /dev/full.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from rnnlm_cli.cli import app
from rnnlm_cli.errors import OutputError

RNNLM = [sys.executable, "-m", "rnnlm_cli"]
TRAIN = ["--hidden", "8", "--emb", "8", "--layers", "1", "--max-steps", "4", "--batch-size", "2", "--bptt", "5",
         "--log-interval", "2"]


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def leftovers(folder) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(".rnnlm-tmp-")]


def one_line(stderr: str | bytes) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    lines = text.strip("\n").split("\n")
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture
def small_fs(tmp_path):
    """A 512 KiB tmpfs of our own, or None where this machine will not mount one."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    yield folder if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def need(small_fs):
    if small_fs is None:
        pytest.skip("cannot mount a small file system here")
    return small_fs


def fill(folder, leave: int = 0) -> None:
    """Fill ``folder``'s file system to the last byte, then free ``leave`` bytes."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        if leave:
            handle.truncate(max(0, handle.tell() - leave))


def test_a_checkpoint_save_on_a_full_disk_is_73_and_keeps_the_previous_file(small_fs, saved_model, monkeypatch):
    import torch

    from rnnlm_cli.store.checkpoint import load_checkpoint, save_checkpoint

    from rnnlm_cli.models.config import ModelConfig
    from rnnlm_cli.models.lm import build_model

    _, _, tokenizer = saved_model
    # Larger than a write buffer, so that torch itself meets the full disk mid-archive.
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, emb=64, hidden=64, layers=1))
    if small_fs is None:
        # The fallback: torch's own RuntimeError, raised by really writing to /dev/full.
        real_save = torch.save

        def to_dev_full(obj, handle, *args, **kwargs):
            with open("/dev/full", "wb") as full:
                real_save(obj, full, *args, **kwargs)

        folder = saved_model[0].parent
        path = saved_model[0]
        monkeypatch.setattr(torch, "save", to_dev_full)
    else:
        folder = small_fs
        path = small_fs / "model.pt"
        save_checkpoint(path, model, tokenizer.to_dict())
        # Room for a part of the archive: the disk fills in the middle of torch's writes.
        fill(small_fs, leave=20000)
    before = digest(path)
    with pytest.raises(OutputError, match=r"model\.pt: cannot write") as caught:
        save_checkpoint(path, model, tokenizer.to_dict())
    monkeypatch.undo()
    assert caught.value.exit_code == 73
    assert digest(path) == before and load_checkpoint(path).state_dict
    assert leftovers(folder) == []


def test_train_on_a_full_disk_is_73_in_one_line_and_keeps_the_previous_model(small_fs, tmp_path, saved_model):
    folder = need(small_fs)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the dog runs .\nthe cats see a dog .\n" * 20)
    valid = tmp_path / "valid.txt"
    valid.write_text("a cat sees the dog .\n" * 10)
    previous = folder / "model.pt"
    previous.write_bytes(saved_model[0].read_bytes())
    before = digest(previous)
    fill(folder, leave=64 * 1024)  # the token files and metrics fit, a model (130 KB) does not
    # Models larger than a write buffer, so that torch itself meets the full disk mid-archive.
    result = CliRunner().invoke(app, ["train", str(corpus), "--valid", str(valid), "--out", str(previous), *TRAIN,
                                      "--hidden", "64", "--emb", "64"])
    assert result.exit_code == 73, result.stderr
    # The training log comes first; the failure is its one last line.
    errors = [line for line in result.stderr.splitlines() if line.startswith("rnnlm:")]
    assert len(errors) == 1 and result.stderr.rstrip("\n").endswith(errors[0]), result.stderr
    assert "model.pt: cannot write (No space left on device)" in errors[0] and "Traceback" not in result.stderr
    assert digest(previous) == before
    assert leftovers(folder) == []


def test_tokenize_on_a_full_disk_is_73_and_keeps_the_previous_token_file(small_fs, tmp_path):
    folder = need(small_fs)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"word{i % 997} and w{i % 13} more words {i}\n" for i in range(20000)))
    out = folder / "corpus.tok"
    out.write_bytes(b"the previous token file")
    fill(folder)
    result = CliRunner().invoke(app, ["tokenize", str(corpus), "--out", str(out)])
    assert result.exit_code == 73, result.stderr
    assert "corpus.tok" in one_line(result.stderr)
    assert out.read_bytes() == b"the previous token file"
    assert leftovers(folder) == []


def test_a_metrics_append_on_a_full_disk_is_73_and_keeps_whole_lines(small_fs):
    from rnnlm_cli.train.outputs import MetricsLog

    folder = need(small_fs)
    path = folder / "model.metrics.jsonl"
    log = MetricsLog(str(path), append=False)
    log.write({"event": "train", "step": 1})
    fill(folder, leave=100)
    with pytest.raises(OutputError, match=r"model\.metrics\.jsonl: cannot append") as caught:
        log.write({"event": "train", "step": 2, "note": "x" * 20000})
    log.close()
    assert caught.value.exit_code == 73
    assert path.read_bytes() == b'{"event": "train", "step": 1}\n'


def test_a_plot_on_a_full_disk_is_73_and_keeps_the_previous_plot(small_fs):
    pytest.importorskip("matplotlib")
    from rnnlm_cli.train.plot import plot_metrics

    folder = need(small_fs)
    metrics = folder / "m.metrics.jsonl"
    metrics.write_text("".join(f'{{"event": "train", "step": {i}, "ppl": {90 - i}, "lr": 0.1}}\n' for i in range(50)))
    png = folder / "m.curve.png"
    png.write_bytes(b"previous plot")
    fill(folder)
    with pytest.raises(OutputError, match=r"m\.curve\.png: cannot write"):
        plot_metrics(metrics, png)
    assert png.read_bytes() == b"previous plot"
    assert leftovers(folder) == []


@pytest.mark.parametrize("where", ["dev-full", "small-fs"])
def test_results_to_a_full_disk_are_73_in_one_line(small_fs, saved_model, tiny_corpus, where):
    if where == "dev-full":
        target = "/dev/full"
    else:
        target = str(need(small_fs) / "scores.txt")
        fill(small_fs)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RNNLM_DEBUG", None)
    with open(target, "wb") as stdout:
        done = subprocess.run([*RNNLM, "eval", str(saved_model[0]), str(tiny_corpus)], stdout=stdout,
                              stderr=subprocess.PIPE, env=env, timeout=120)
    assert done.returncode == 73, done.stderr
    line = one_line(done.stderr)
    assert line.startswith("rnnlm: error: stdout") and "No space left on device" in line, line


def test_every_results_command_writes_through_the_guarded_stdout():
    """Results written past the guarded sys.stdout (click's echo finds the stream underneath it)
    are lost without an error on a full disk; print and the ui's functions go through it."""
    import pathlib
    import re

    folder = pathlib.Path(__file__).parents[2] / "rnnlm_cli" / "cli"
    unguarded = re.compile(r"\b(?:typer|click)\.s?echo\(")
    found = {path.name: unguarded.findall(path.read_text()) for path in folder.glob("*.py")}
    assert {name: hits for name, hits in found.items() if hits} == {}


@pytest.mark.parametrize("command", ["analyze", "version"])
def test_analysis_results_to_dev_full_are_73(saved_model, tiny_corpus, tmp_path, command):
    text = tmp_path / "long.txt"
    text.write_text(tiny_corpus.read_text() * 20)  # long enough for the gradient windows
    args = {"analyze": ["analyze", "gradients", str(saved_model[0]), str(text), "--positions", "4",
                        "--max-distance", "5"],
            "version": ["--version"]}[command]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("RNNLM_DEBUG", None)
    with open("/dev/full", "wb") as stdout:
        done = subprocess.run([*RNNLM, *args], stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=120)
    assert done.returncode == 73, done.stderr
    assert one_line(done.stderr).startswith("rnnlm: error: stdout")
