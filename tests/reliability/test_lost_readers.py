"""Signals and lost readers: a dead log reader never costs a training
run, stdout that cannot take UTF-8 is never exit 1, and SIGTERM cleans up and says 143."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

RNNLM = [sys.executable, "-m", "rnnlm_cli"]
WORDS = ["the", "dog", "café", "naïve", "über", "runs", "a", "cat"]


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RNNLM_DEBUG", "NO_COLOR", "FORCE_COLOR")}
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    root = tmp_path_factory.mktemp("readers")
    lines = [" ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(6)) for i in range(60)]
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    valid = root / "valid.txt"
    valid.write_text("\n".join(lines[:10]) + "\n", encoding="utf-8")
    return root, corpus, valid


@pytest.fixture(scope="module")
def model(texts):
    from conftest import tiny_model

    from rnnlm_cli.store.checkpoint import save_checkpoint
    from rnnlm_cli.config import TokenizerConfig
    from rnnlm_cli.text.corpus import encode_corpus

    root, corpus, _ = texts
    tokenizer = encode_corpus(str(corpus), str(root / "corpus.tok"), config=TokenizerConfig(kind="word")).tokenizer
    path = root / "model.pt"
    save_checkpoint(path, tiny_model(tokenizer.vocab_size), tokenizer.to_dict())
    return path


@pytest.mark.parametrize("closed", ["stdout and stderr", "stderr"])
def test_a_reader_that_goes_away_never_costs_the_training_run(tmp_path, texts, closed):
    _, corpus, valid = texts
    out = tmp_path / "model.pt"
    args = [*RNNLM, "train", str(corpus), "--valid", str(valid), "--out", str(out), "--hidden", "8", "--emb", "8",
            "--layers", "1", "--batch-size", "2", "--bptt", "5", "--max-steps", "60", "--log-interval", "1"]
    stdout = subprocess.STDOUT if closed == "stdout and stderr" else open(tmp_path / "stdout", "wb")
    # `rnnlm train ... 2>&1 | head -3`: read three lines, then close the pipe.
    process = subprocess.Popen(args, stdout=subprocess.PIPE if stdout == subprocess.STDOUT else stdout,
                               stderr=stdout if stdout == subprocess.STDOUT else subprocess.PIPE,
                               env=environment())
    pipe = process.stdout if closed == "stdout and stderr" else process.stderr
    head = [pipe.readline() for _ in range(3)]
    pipe.close()
    assert process.wait(timeout=240) == 0
    assert all(head)
    assert out.is_file() and (tmp_path / "model.last.pt").is_file()
    if closed == "stderr":
        assert b"best valid ppl" in (tmp_path / "stdout").read_bytes()


@pytest.mark.parametrize("command", ["eval", "tokenize", "generate"])
def test_stdout_that_is_not_utf8_gets_the_words_bytes(texts, model, command):
    _, corpus, _ = texts
    args = {"eval": ["eval", str(model), str(corpus), "--debug", "2"],
            "tokenize": ["tokenize", str(corpus), "--tokenizer", str(model), "--print", "pieces"],
            "generate": ["generate", str(model), "--prompt", "naïve café", "--max-tokens", "3", "--seed", "1"]}
    # (LANG=C alone is not enough to test this: Python coerces the C locale to UTF-8.)
    done = subprocess.run([*RNNLM, *args[command]], capture_output=True, env=environment(PYTHONIOENCODING="ascii"),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    # As SRILM does: the bytes of the words as read (UTF-8), not escapes, whatever the locale.
    assert "café".encode() in done.stdout or "naïve".encode() in done.stdout
    done.stdout.decode("utf-8")


def test_sigterm_during_tokenize_removes_its_temp_files_and_exits_143(tmp_path):
    line = b" ".join(b"w%d" % (i % 1999) for i in range(12)) + b"\n"
    corpus = b"".join(b"w%d " % i + line for i in range(20_000))
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    out = out_folder / "x.tok"
    # The corpus comes through a pipe held open, so tokenize is still reading when it is signalled,
    # however fast the machine: it cannot finish first.
    process = subprocess.Popen([*RNNLM, "tokenize", "-", "--out", str(out)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment())
    process.stdin.write(corpus)
    process.stdin.flush()
    deadline = time.monotonic() + 120
    while not any(n.startswith(".rnnlm-tmp-") for n in os.listdir(out_folder)):
        assert process.poll() is None, "tokenize ended before it could be signalled"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    try:
        process.stdin.close()
    except BrokenPipeError:
        pass
    stderr = process.stderr.read()
    assert process.returncode == 143, stderr
    assert stderr.decode().strip().splitlines() == [stderr.decode().strip()]
    assert stderr.startswith(b"rnnlm: error: terminated by SIGTERM")
    assert os.listdir(out_folder) == []
