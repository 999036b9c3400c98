"""Real processes in real pipes: stdin, stdout closed early, colour and the shape of errors."""

from __future__ import annotations

import json
import os
import pickle
import pty
import re
import subprocess
import sys

import pytest

from conftest import RNNLM, console, console_env as environment
from test_cli import SRILM_LINE1, SRILM_LINE2, TINY

# SGR parameters that set a foreground or background colour (30-49, 90-107).
COLOUR = re.compile(rb"\x1b\[(?:[0-9]*;)*(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])(?:;[0-9]*)*m")


@pytest.fixture(scope="module")
def files(toy):
    """The session's toy texts and model (conftest); the tests here read them, never write them."""
    return toy


def test_python_dash_m_help_lists_the_commands():
    result = console("--help")
    assert result.returncode == 0
    for name in ("tokenize", "train", "eval", "generate", "export"):
        assert name.encode() in result.stdout


def test_cat_into_eval_reads_stdin(files):
    command = f"cat {files['test']} | {sys.executable} -m rnnlm_cli eval {files['model']} -"
    result = subprocess.run(command, shell=True, capture_output=True, env=environment(), timeout=120)
    assert result.returncode == 0, result.stderr
    line1, line2 = result.stdout.decode().splitlines()
    head = SRILM_LINE1.match(line1)
    assert head and head.group(1) == "-"  # as SRILM names a file read from stdin
    assert int(head.group(2)) == len(files["test_lines"])
    assert SRILM_LINE2.match(line2)
    from_file = json.loads(console("eval", files["model"], files["test"], "--json").stdout)
    assert line2.split("logprob= ")[1].split()[0] == f"{from_file['logprob']:.6g}"


def _generate_into_head(files):
    # Far more text than a pipe buffers (64 KiB), so the writer must meet the closed pipe.
    generator = subprocess.Popen([*RNNLM, "generate", str(files["model"]), "--max-tokens", "100000", "--seed", "1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment())
    head = subprocess.Popen(["head", "-c", "10"], stdin=generator.stdout, stdout=subprocess.PIPE)
    generator.stdout.close()
    shown, _ = head.communicate(timeout=120)
    stderr = generator.stderr.read()
    generator.stderr.close()
    return shown, generator.wait(timeout=120), stderr


@pytest.fixture(scope="module")
def head_pipeline(files):
    return _generate_into_head(files)


def test_generate_into_head_is_quiet(head_pipeline):
    shown, _, stderr = head_pipeline
    assert len(shown) == 10
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr
    assert stderr == b""


def test_generate_into_head_exits_zero(head_pipeline):
    _, returncode, _ = head_pipeline
    assert returncode == 0


def test_piped_output_has_no_escape_codes(files, tmp_path):
    env = {}  # colours are for terminals alone: no NO_COLOR needed (test_no_color_on_a_terminal_drops_colours)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"the dog \xff sees a cat .\n")
    commands = [
        ["eval", "--help"],
        ["train", files["train"], "--out", tmp_path / "m.pt", *TINY, "--max-steps", "2", "--log-interval", "1"],
        ["eval", files["model"], bad],  # a warning
        ["eval", tmp_path / "missing.pt", bad],  # an error
    ]
    # Independent processes: run together, each piped as a pipeline would.
    started = [subprocess.Popen([*RNNLM, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=environment(**env)) for args in commands]
    runs = [subprocess.CompletedProcess(p.args, 0, *p.communicate(timeout=120)) for p in started]
    for run, process in zip(runs, started):
        run.returncode = process.returncode
    assert [r.returncode for r in runs] == [0, 0, 0, 66]
    assert b"step 1" in runs[1].stderr and b"warning" in runs[2].stderr
    for result in runs:
        assert b"\x1b" not in result.stdout and b"\x1b" not in result.stderr, result


def _on_a_terminal(args, **env) -> tuple[int, bytes]:
    main, side = pty.openpty()
    process = subprocess.Popen([*RNNLM, *map(str, args)], stdin=subprocess.DEVNULL, stdout=side, stderr=side,
                               env=environment(**env))
    os.close(side)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    return process.wait(timeout=120), seen


def test_no_color_on_a_terminal_drops_colours(files, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"the dog \xff sees a cat .\n")
    code, coloured = _on_a_terminal(["eval", files["model"], bad], TERM="xterm-256color")
    assert code == 0
    assert COLOUR.search(coloured), "expected colour on a terminal without NO_COLOR"
    code, plain = _on_a_terminal(["eval", files["model"], bad], TERM="xterm-256color", NO_COLOR="1")
    assert code == 0 and b"warning" in plain
    assert not COLOUR.search(plain), plain


class _CreatesFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _error_cases(files, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"the dog \xff sees a cat .\n")
    fake = tmp_path / "fake.pt"
    fake.write_text("hello\n", encoding="utf-8")
    return {
        "missing model": (["eval", tmp_path / "missing.pt", files["test"]], 66),
        "not a model": (["eval", fake, files["test"]], 65),
        "strict UTF-8": (["eval", files["model"], bad, "--strict"], 65),
        "bad flag value": (["train", files["train"], "--hidden", "abc"], 2),
        "unknown command": (["bogus"], 2),
        "bad option range": (["generate", files["model"], "--top-p", "2"], 2),
    }


@pytest.mark.parametrize("case", ["missing model", "not a model", "strict UTF-8", "bad flag value",
                                  "unknown command", "bad option range"])
def test_errors_are_one_line_on_stderr(files, tmp_path, case):
    args, code = _error_cases(files, tmp_path)[case]
    result = console(*args)
    assert result.returncode == code
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnlm: error: "), result.stderr
    assert result.stdout == b""


def test_plain_pickle_is_refused_in_one_line(files, tmp_path):
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"x": _CreatesFile(tmp_path / "pwned.txt")}, handle)
    result = console("eval", evil, files["test"])
    assert result.returncode == 65
    assert not (tmp_path / "pwned.txt").exists()
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "refused" in lines[0], result.stderr
