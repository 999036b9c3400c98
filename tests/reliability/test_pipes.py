"""Pipes are read once: a FIFO, /dev/stdin or `<(...)` input loses nothing to format sniffing.

A named pipe here is fed by a thread the way a shell feeds a process substitution: the
data goes to the first reader, and a later open finds the writer gone (end of file). A
command that opens its input twice (to sniff the format, then to read it) therefore
loses the head of the data, or all of it, and the tests see fewer tokens, other bytes
or an error. Each command runs as a real subprocess, its output compared with the same
command on a regular file holding the same bytes, or with counts known in advance.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest

from rnnlm_cli.errors import DataError, InputMissingError
from rnnlm_cli.store.tokenizer_sources import tokenizer_from_file
from rnnlm_cli.text.tokenfile import TokenFileWriter, is_token_file, open_token_file
from rnnlm_cli.text.tokenizers import WordTokenizer

from conftest import console

RNNLM = [sys.executable, "-m", "rnnlm_cli"]
WORDS = "the a dog cat runs sees big small house tree".split()
TINY_TRAIN = ["--hidden", "8", "--emb", "8", "--layers", "1", "--batch-size", "2", "--bptt", "4",
              "--max-steps", "1", "--device", "cpu"]


rnnlm = console


def corpus(lines: int, seed: int = 0) -> bytes:
    """``lines`` lines of 8 words each (9 word-tokenizer tokens with the line end)."""
    rng = np.random.default_rng(seed)
    return "".join(" ".join(rng.choice(WORDS, 8)) + "\n" for _ in range(lines)).encode()


def write(path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr.decode()
    return result


def counts_line(stderr: bytes) -> str:
    match = re.search(r"training on cpu: ([\d,]+) train tokens, ([\d,]+) valid tokens", stderr.decode())
    assert match, stderr.decode()
    return match.group(0)


# ---------------------------------------------------------------- train


def test_train_reads_every_line_of_a_fifo_corpus_and_valid(tmp_path, fifo):
    # 2000 lines of 9 tokens: more than a pipe's 64 KiB buffer, so a reader that stops
    # early loses data even while the writer is still writing.
    train, valid = corpus(2000), corpus(50, seed=1)
    out = tmp_path / "out" / "m.pt"
    result = ok(rnnlm("train", fifo(train), "--valid", fifo(valid, "valid"), "--out", out, *TINY_TRAIN))
    assert counts_line(result.stderr) == "training on cpu: 18,000 train tokens, 450 valid tokens"
    assert len(open_token_file(tmp_path / "out" / "m.train.tok")) == 18_000


def test_train_reads_dev_stdin_once(tmp_path):
    valid = write(tmp_path / "valid.txt", corpus(50, seed=1))
    out = tmp_path / "out" / "m.pt"
    result = ok(rnnlm("train", "/dev/stdin", "--valid", valid, "--out", out, *TINY_TRAIN, input=corpus(2000)))
    assert counts_line(result.stderr) == "training on cpu: 18,000 train tokens, 450 valid tokens"


def test_train_takes_its_tokenizer_from_a_fifo(tmp_path, fifo):
    tokenizer = WordTokenizer(["<eos>", "<unk>", *WORDS])
    data = json.dumps(tokenizer.to_dict()).encode()
    text = write(tmp_path / "c.txt", corpus(400))
    out = tmp_path / "out" / "m.pt"
    result = ok(rnnlm("train", text, "--tokenizer", fifo(data, "tok.json"), "--out", out, *TINY_TRAIN))
    assert "train tokens" in counts_line(result.stderr)
    assert open_token_file(tmp_path / "out" / "m.train.tok").tokenizer.to_dict() == tokenizer.to_dict()


# ---------------------------------------------------------------- tokenize


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_tokenize_a_fifo_gives_the_same_token_file(tmp_path, fifo, packed):
    data = corpus(2000)
    data = gzip.compress(data, mtime=0) if packed else data
    # The same base name: the token file records it, and nothing else may differ.
    regular = write(tmp_path / "regular" / "corpus.txt", data)
    ok(rnnlm("tokenize", regular, "--out", tmp_path / "regular.tok"))
    ok(rnnlm("tokenize", fifo(data, "corpus.txt"), "--out", tmp_path / "piped.tok"))
    assert (tmp_path / "piped.tok").read_bytes() == (tmp_path / "regular.tok").read_bytes()


def test_tokenize_print_from_a_fifo_prints_every_line(tmp_path, fifo):
    tokenizer = WordTokenizer(["<eos>", "<unk>", *WORDS])
    tok = tmp_path / "tok.json"
    tok.write_text(json.dumps(tokenizer.to_dict()))
    data = corpus(300)
    printed = ok(rnnlm("tokenize", fifo(data), "--tokenizer", tok, "--print", "ids")).stdout.decode()
    expected = "".join(" ".join(map(str, tokenizer.encode(line))) + "\n" for line in data.decode().splitlines())
    assert printed == expected


def test_tokenize_learn_and_print_from_a_fifo(tmp_path, fifo):
    # Learning the vocabulary and then printing the ids reads the text twice: the pipe
    # must be copied first.
    data = corpus(300)
    result = ok(rnnlm("tokenize", fifo(data), "--save-tokenizer", tmp_path / "t.json", "--print", "ids"))
    assert len(result.stdout.decode().splitlines()) == 300


def test_tokenize_sentencepiece_from_a_fifo_gives_the_same_token_file(tmp_path, fifo):
    # Sentencepiece learns from a sample before it encodes: two readings of the text.
    data = corpus(2000)
    regular = write(tmp_path / "regular" / "corpus.txt", data)
    args = ["--kind", "sentencepiece", "--vocab-size", "300"]
    ok(rnnlm("tokenize", regular, *args, "--out", tmp_path / "regular.tok"))
    ok(rnnlm("tokenize", fifo(data, "corpus.txt"), *args, "--out", tmp_path / "piped.tok"))
    assert (tmp_path / "piped.tok").read_bytes() == (tmp_path / "regular.tok").read_bytes()


@pytest.mark.parametrize("kind", ["json", "token file", "model"])
def test_tokenizer_from_a_fifo(tmp_path, fifo, saved_model, kind):
    path, _, tokenizer = saved_model
    if kind == "json":
        data = json.dumps(tokenizer.to_dict()).encode()
    elif kind == "model":
        data = path.read_bytes()
    else:
        with TokenFileWriter(str(tmp_path / "given.tok")) as writer:
            writer.write([2, 0])
            writer.close({"tokenizer": tokenizer.to_dict()})
        data = (tmp_path / "given.tok").read_bytes()
    assert tokenizer_from_file(fifo(data)).to_dict() == tokenizer.to_dict()


# ---------------------------------------------------------------- eval and generate


def scores(result: subprocess.CompletedProcess) -> dict:
    found = json.loads(ok(result).stdout)
    found.pop("file")
    return found


TEXT = b"the dog runs .\nthe cats see a dog .\n" * 30


def test_eval_reads_dev_stdin_like_the_file(tmp_path, saved_model):
    # A FIFO and '-' for every input of every command: test_input_kinds.py.
    model = saved_model[0]
    regular = write(tmp_path / "t.txt", TEXT)
    expected = scores(rnnlm("eval", model, regular, "--json", "--device", "cpu"))
    assert expected["sentences"] == 60
    assert scores(rnnlm("eval", model, "/dev/stdin", "--json", "--device", "cpu", input=TEXT)) == expected


# ---------------------------------------------------------------- the library underneath
# (rnnlm_cli.files.spool is imported in each test, so that on code without it only these fail)


def test_needs_spooling_says_which_inputs_are_read_once(tmp_path):
    from rnnlm_cli.files.spool import needs_spooling

    regular = write(tmp_path / "r.txt", b"x\n")
    os.mkfifo(tmp_path / "p")
    assert [needs_spooling(p) for p in ("-", str(tmp_path / "p"), "/dev/null", regular, str(tmp_path),
                                        str(tmp_path / "missing"))] == [True, True, True, False, False, False]


def test_a_regular_file_is_not_copied(tmp_path):
    from rnnlm_cli.files.spool import spooled

    regular = write(tmp_path / "r.txt", b"x\n")
    with spooled(regular) as readable:
        assert readable == regular


def test_a_fifo_is_copied_once_privately_and_removed(tmp_path, fifo):
    from rnnlm_cli.files.spool import spooled

    data = corpus(3000)  # more than one copy chunk would need for a pipe read
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    with spooled(fifo(data), folder=str(spool_dir)) as readable:
        assert os.path.dirname(readable) == str(spool_dir)
        assert os.path.basename(readable).startswith(f".rnnlm-tmp-{os.getpid()}@")
        assert stat.S_IMODE(os.stat(readable).st_mode) == 0o600
        with open(readable, "rb") as first, open(readable, "rb") as second:
            assert first.read(8) == data[:8] and second.read() == data
    assert os.listdir(spool_dir) == []


def test_a_spool_is_removed_on_error_and_the_message_names_the_input(tmp_path, fifo):
    from rnnlm_cli.files.spool import spooled

    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    pipe = fifo(b"not a token file\n")
    with pytest.raises(DataError) as caught:
        with spooled(pipe, folder=str(spool_dir)) as readable:
            open_token_file(readable)
    assert str(caught.value).startswith(f"{pipe}: not an rnnlm token file")
    assert os.listdir(spool_dir) == []


def test_sniffing_a_fifo_reads_nothing(tmp_path, fifo):
    from rnnlm_cli.files.spool import spooled

    with TokenFileWriter(str(tmp_path / "c.tok")) as writer:
        writer.write([2, 3, 0])
        writer.close({"tokenizer": WordTokenizer(["<eos>", "<unk>", "a", "b"]).to_dict()})
    data = (tmp_path / "c.tok").read_bytes()
    pipe = fifo(data)
    assert not is_token_file(pipe)  # only a copy of it can be looked into
    with pytest.raises(InputMissingError, match="must be a regular file"):
        open_token_file(pipe)
    with spooled(pipe) as readable:  # the bytes are all still there
        assert is_token_file(readable)
        assert open_token_file(readable).tokens.tolist() == [2, 3, 0]
