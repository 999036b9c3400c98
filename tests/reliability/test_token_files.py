"""Token files are trusted only after a full check, and never by memory-mapping them.

* Every id is checked against the vocabulary when the file is opened, not a sample of
  blocks: one bad id anywhere is refused (exit 65) before any work.
* A token file truncated by another process while a run reads it is exit 66 with one
  error line naming it, never a SIGBUS that kills the process without a word.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from rnnlm_cli.errors import DataError
from rnnlm_cli.text.tokenfile import HEADER_SIZE, TokenFileWriter, open_token_file
from rnnlm_cli.text.tokenizers import WordTokenizer

from conftest import cli, one_error_line

RNNLM = [sys.executable, "-m", "rnnlm_cli"]
TOKENIZER = WordTokenizer(["<eos>", "<unk>", *"the a dog cat runs sees big small house tree".split()])
VOCAB = TOKENIZER.vocab_size
# The old check read 16 blocks of 65536 ids, evenly spread from both ends; in a file of
# three million ids, position 100000 lies between the first two of them.
COUNT = 3_000_000
BAD_AT = 100_000


def token_file(path, count: int, bad_at: int | None = None, seed: int = 0) -> str:
    ids = np.random.default_rng(seed).integers(0, VOCAB, count, dtype=np.uint16)
    ids[::9] = 0  # a line end every 9 ids
    if bad_at is not None:
        ids[bad_at] = VOCAB + 7
    with TokenFileWriter(str(path)) as writer:
        writer.write(ids)
        writer.close({"tokenizer": TOKENIZER.to_dict()})
    return str(path)


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RNNLM_DEBUG", "NO_COLOR", "FORCE_COLOR")}
    env["OMP_NUM_THREADS"] = "1"
    return env




TINY = ["--hidden", "8", "--emb", "8", "--layers", "1", "--batch-size", "2", "--bptt", "4", "--max-steps", "1",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("token_files")
    return {"bad": token_file(folder / "bad.tok", COUNT, bad_at=BAD_AT),
            "good": token_file(folder / "good.tok", 5000, seed=1)}


def test_one_bad_id_deep_in_the_file_is_found_at_open(files):
    with pytest.raises(DataError, match=f"id {VOCAB + 7} outside the vocabulary of {VOCAB}, at position {BAD_AT}"):
        open_token_file(files["bad"])


run = cli


def test_train_refuses_a_corpus_token_file_with_one_bad_id(files, tmp_path):
    result = run("train", files["bad"], "--valid", files["good"], "--out", tmp_path / "out" / "m.pt", *TINY)
    assert result.exit_code == 65, result.stderr
    line = one_error_line(result.stderr)
    assert line.startswith(f"rnnlm: error: {files['bad']}: damaged token file (id {VOCAB + 7} outside")
    assert not (tmp_path / "out" / "m.pt").exists()


def test_train_refuses_a_valid_token_file_with_one_bad_id(files, tmp_path):
    result = run("train", files["good"], "--valid", files["bad"], "--out", tmp_path / "out" / "m.pt", *TINY)
    assert result.exit_code == 65, result.stderr
    assert one_error_line(result.stderr).startswith(f"rnnlm: error: {files['bad']}: damaged token file")
    assert not (tmp_path / "out" / "m.pt").exists()


def test_ids_rewritten_in_place_after_open_are_refused_when_read(tmp_path):
    from rnnlm_cli.text.tokenview import TokenFileChangedError

    path = token_file(tmp_path / "c.tok", 1000)
    tokens = open_token_file(path).tokens
    with open(path, "r+b") as handle:
        handle.seek(HEADER_SIZE + 2 * 500)
        handle.write((VOCAB + 1).to_bytes(2, "little"))
    assert len(tokens[:500].tolist()) == 500  # the part before is still good
    with pytest.raises(TokenFileChangedError, match="changed while in use"):
        tokens[400:600].tolist()


def _no_core_dump() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


TRUNCATE_AND_READ = """
import os, sys
from rnnlm_cli.errors import RnnlmError
from rnnlm_cli.text.tokenfile import HEADER_SIZE, open_token_file
path = sys.argv[1]
tokens = open_token_file(path).tokens
os.truncate(path, HEADER_SIZE + 100)
try:
    tokens[50_000:50_010].tolist()
except RnnlmError as exc:
    print(type(exc).__name__, exc.exit_code, exc)
"""


def test_a_token_file_truncated_after_open_is_an_error_not_sigbus(tmp_path):
    # In a child process: with a memory map, the read below kills the process with SIGBUS.
    path = token_file(tmp_path / "c.tok", 100_000)
    result = subprocess.run([sys.executable, "-c", TRUNCATE_AND_READ, path], capture_output=True, text=True,
                            env=environment(), preexec_fn=_no_core_dump, timeout=60)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    assert result.stdout.startswith(f"TokenFileChangedError 66 {path}: token file shrank while in use"), result.stdout


def test_training_on_a_token_file_truncated_under_it_exits_66(tmp_path):
    # 64 streams of about 31000 ids: reading moves along every stream all the time, so
    # a truncation reaches the reader within a few steps, however the streams are read.
    corpus = token_file(tmp_path / "big.tok", 2_000_000)
    valid = token_file(tmp_path / "valid.tok", 2000, seed=1)
    out = tmp_path / "out" / "m.pt"
    args = ["train", corpus, "--valid", valid, "--out", out, "--hidden", "8", "--emb", "8", "--layers", "1",
            "--batch-size", "64", "--bptt", "32", "--max-time", "60", "--log-interval", "5", "--device", "cpu"]
    process = subprocess.Popen([*RNNLM, *map(str, args)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               env=environment(), preexec_fn=_no_core_dump, text=True)
    seen: list[str] = []
    logged = threading.Event()

    def read_stderr() -> None:
        for line in process.stderr:
            seen.append(line)
            if " step " in line:
                logged.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert logged.wait(90), "".join(seen)
        os.truncate(corpus, HEADER_SIZE + 1000)
        code = process.wait(90)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(10)
    stderr = "".join(seen)
    assert code != -signal.SIGBUS, f"killed by SIGBUS:\n{stderr}"
    assert code == 66, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("rnnlm: error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert errors[0].startswith(f"rnnlm: error: {corpus}: token file shrank while in use"), stderr
    # The steps taken before the data went away are kept, resumable.
    from rnnlm_cli.store.checkpoint import load_checkpoint

    state = load_checkpoint(out.with_name("m.last.pt")).training_state
    assert state["progress"]["step"] >= 5
