"""Input that fights back: every command gives a clear message, its exit code, and loses nothing.

Each test drives the real command line (Typer's runner in this process; a subprocess where
a real pipe, a real exit status or the memory of the process is the point) and checks the
exit code, that an error is exactly one line on stderr, and that no output or partial file
is left behind.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time

import pytest

from rnnlm_cli.text import reading as textio
from rnnlm_cli.text.tokenfile import open_token_file

from conftest import cli, console, one_error_line

RNNLM = [sys.executable, "-m", "rnnlm_cli"]
TINY_TRAIN = ["--hidden", "8", "--emb", "8", "--layers", "1", "--epochs", "1", "--batch-size", "2", "--bptt", "4"]
COMMANDS = ("tokenize", "train", "eval")
LINES = ["the dog runs .", "the dogs run .", "a cat sees the dog .", "the cats see a dog ."]


run, rnnlm = cli, console


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("rnnlm: warning: ")]


def leftovers(folder) -> list[str]:
    """Files in an output folder, a lock file aside (none stays after a run)."""
    return sorted(name for name in os.listdir(folder) if not name.endswith(".lock"))


def corpus_bytes(lines=LINES, repeat: int = 1, end: bytes = b"\n") -> bytes:
    return b"".join(line.encode("utf-8") + end for line in lines * repeat)


def invoke(command: str, text, model, out_dir, *extra, input=None):
    """Run one of tokenize, train or eval on ``text``, writing any output into ``out_dir``."""
    if command == "tokenize":
        return run("tokenize", text, "--out", out_dir / "c.tok", *extra, input=input)
    if command == "train":
        return run("train", text, "--out", out_dir / "model.pt", *TINY_TRAIN, *extra, input=input)
    return run("eval", model, text, "--json", *extra, input=input)


@pytest.fixture
def model(saved_model):
    return saved_model[0]


@pytest.fixture
def out_dir(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# ---------------------------------------------------------------- invalid UTF-8


@pytest.mark.parametrize("command", COMMANDS)
def test_invalid_utf8_is_replaced_and_warned_or_refused_with_strict(command, tmp_path, out_dir, model):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(corpus_bytes(repeat=25).replace(b"cat sees", b"cat \xff sees", 1))
    strict = invoke(command, bad, model, out_dir, "--strict")
    assert strict.exit_code == 65
    assert "bad.txt:3: invalid UTF-8 at byte 6" in one_error_line(strict.stderr)
    assert strict.stdout == ""
    assert leftovers(out_dir) == []

    lenient = invoke(command, bad, model, out_dir)
    assert lenient.exit_code == 0, lenient.stderr
    if command == "tokenize":
        assert "100 lines, 501 words" in lenient.stdout  # 500 words and the replaced byte
        assert warnings(lenient.stderr) == [
            f"rnnlm: warning: {bad}: 1 line(s) with invalid UTF-8, 1 character(s) replaced (use --strict to refuse)"]
    if command == "eval":
        assert json.loads(lenient.stdout)["invalid_lines"] == 1
        assert len(warnings(lenient.stderr)) == 1 and "invalid UTF-8" in lenient.stderr


# ---------------------------------------------------------------- NUL bytes


@pytest.mark.parametrize("command", COMMANDS)
def test_nul_byte_is_binary_data_and_refused(command, tmp_path, out_dir, model):
    binary = tmp_path / "binary.txt"
    binary.write_bytes(corpus_bytes(repeat=25) + b"a \x00 b\n" + corpus_bytes())
    result = invoke(command, binary, model, out_dir)
    assert result.exit_code == 65
    assert one_error_line(result.stderr) == f"rnnlm: error: {binary}:101: NUL byte: binary data, not text"
    assert leftovers(out_dir) == []
    # UTF-16 text is full of NUL bytes: refused the same way, on its first line.
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes(corpus_bytes().decode().encode("utf-16"))
    result = invoke(command, utf16, model, out_dir)
    assert result.exit_code == 65
    assert one_error_line(result.stderr).endswith("utf16.txt:1: NUL byte: binary data, not text")
    assert leftovers(out_dir) == []


# ---------------------------------------------------------------- control characters


def test_control_characters_are_kept_counted_and_warned(tmp_path, out_dir, model):
    text = tmp_path / "ctl.txt"
    # \x01 and DEL sit inside words; \x1f is whitespace to str.split(); TAB is not counted.
    lines = ["the\x01dog runs .", "the dogs\x1frun\t.\x7f"]
    text.write_bytes(corpus_bytes(lines))
    chars = run("tokenize", text, "--kind", "char", "--out", out_dir / "c.tok")
    assert chars.exit_code == 0, chars.stderr
    assert warnings(chars.stderr) == [
        f"rnnlm: warning: {text}: 3 control character(s) (C0 other than tab, or DEL) kept as text"]
    token_file = open_token_file(out_dir / "c.tok")
    assert token_file.tokenizer.decode(token_file.tokens.tolist()) == "".join(line + "\n" for line in lines)
    assert {"\x01", "\x1f", "\x7f", "\t"} <= set(token_file.tokenizer.pieces)

    words = run("tokenize", text, "--kind", "word", "--print", "pieces")
    assert words.exit_code == 0, words.stderr
    assert words.stdout.splitlines() == ["the\x01dog runs .", "the dogs run .\x7f"]
    assert len(warnings(words.stderr)) == 1

    scored = run("eval", model, text, "--json")
    assert scored.exit_code == 0, scored.stderr
    totals = json.loads(scored.stdout)
    assert (totals["words"], totals["control_chars"]) == (7, 3)
    assert warnings(scored.stderr) == [
        f"rnnlm: warning: {text}: 3 control character(s) (C0 other than tab, or DEL) kept as text"]


# ---------------------------------------------------------------- BOM and CRLF


@pytest.mark.parametrize("variant", ["bom", "crlf", "bom+crlf"])
def test_bom_and_crlf_give_the_same_tokens_as_plain_lf(variant, tmp_path, model):
    plain = tmp_path / "plain.txt"
    plain.write_bytes(corpus_bytes())
    other = tmp_path / "other.txt"
    data = corpus_bytes(end=b"\r\n") if "crlf" in variant else corpus_bytes()
    other.write_bytes((b"\xef\xbb\xbf" if "bom" in variant else b"") + data)
    for kind in ("word", "char", "byte"):
        for path, name in ((plain, "plain.tok"), (other, "other.tok")):
            result = run("tokenize", path, "--kind", kind, "--out", tmp_path / name)
            assert result.exit_code == 0 and result.stderr == "", result.stderr
        a, b = open_token_file(tmp_path / "plain.tok"), open_token_file(tmp_path / "other.tok")
        assert a.tokens.tolist() == b.tokens.tolist()
        assert a.tokenizer.to_dict() == b.tokenizer.to_dict()
    scores = [run("eval", model, path, "--per-sentence") for path in (plain, other)]
    assert scores[0].exit_code == scores[1].exit_code == 0
    assert scores[0].stdout == scores[1].stdout and len(scores[0].stdout.splitlines()) == len(LINES)


# ---------------------------------------------------------------- empty input


@pytest.mark.parametrize("command", COMMANDS)
def test_empty_file_and_empty_stdin_are_refused(command, tmp_path, out_dir, model):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    for source, name in ((empty, str(empty)), ("-", "stdin")):
        result = invoke(command, source, model, out_dir, input=b"")
        assert result.exit_code == 65, result.stderr
        line = one_error_line(result.stderr)
        assert line.startswith(f"rnnlm: error: {name}: ") and "empty" in line
        assert result.stdout == ""
        assert leftovers(out_dir) == []


def test_empty_stdin_through_a_real_pipe(tmp_path):
    tokenizer = tmp_path / "byte.json"
    assert run("tokenize", "-", "--kind", "byte", "--save-tokenizer", tokenizer).exit_code == 0
    out = tmp_path / "out"
    out.mkdir()
    encoded = rnnlm("tokenize", "-", "--out", out / "c.tok")
    assert (encoded.returncode, encoded.stdout) == (65, b"")
    assert one_error_line(encoded.stderr.decode()) == "rnnlm: error: stdin: empty corpus"
    for action in ("--print", "--decode"):
        result = rnnlm("tokenize", "-", "--tokenizer", tokenizer, *(["--print", "ids"] if action == "--print" else [action]))
        assert (result.returncode, result.stdout) == (65, b"")
        assert one_error_line(result.stderr.decode()) == "rnnlm: error: stdin: empty input"
    assert os.listdir(out) == []


# ---------------------------------------------------------------- one very long line


def _peak_rss_anon_kb(args) -> tuple[int, str]:
    """Run rnnlm; return the peak of its anonymous resident memory (sampled) and its stdout."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    child = subprocess.Popen([*RNNLM, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    peak = 0
    while child.poll() is None:
        try:
            with open(f"/proc/{child.pid}/status") as status:
                for field in status:
                    if field.startswith("RssAnon:"):
                        peak = max(peak, int(field.split()[1]))
        except OSError:
            pass
        time.sleep(0.002)
    out, err = child.communicate()
    assert child.returncode == 0, err.decode()
    return peak, out.decode()


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_50_mb_line_is_read_in_bounded_memory(tmp_path):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]
    block = " ".join(words[(i * 7) % len(words)] for i in range(100_000)).encode("ascii")
    big = tmp_path / "big.txt"
    blocks = 0
    with open(big, "wb") as handle:  # one line, no newline at all (like text8)
        while blocks * len(block) < 50_000_000:
            handle.write(b" " + block if blocks else block)
            blocks += 1
    assert big.stat().st_size >= 50_000_000
    spaces = blocks * block.count(b" ") + blocks - 1
    small = tmp_path / "small.txt"
    small.write_bytes(b"alpha beta")

    baseline, _ = _peak_rss_anon_kb(["tokenize", small, "--out", tmp_path / "small.tok"])
    peak, out = _peak_rss_anon_kb(["tokenize", big, "--out", tmp_path / "big.tok"])
    assert peak < baseline + 40_000, (baseline, peak)  # kB: the line alone is 50 MB
    count = spaces + 1
    assert f"1 lines, {count:,} words, {count + 1:,} tokens" in out
    tokens = open_token_file(tmp_path / "big.tok")
    assert len(tokens.tokens) == count + 1 and int(tokens.tokens[-1]) == 0
    assert (tokens.tokens[:-1] != 0).all()  # one <eos>, at the end


@pytest.mark.parametrize("kind", ["word", "char", "byte"])
def test_long_lines_in_pieces_give_the_same_tokens_and_prints(kind, tmp_path, monkeypatch):
    line = "the dog runs é 𝄞 and the  cats\tsee a dog ." * 3
    lines = [line, "short one", "", line]
    if kind != "word":
        # A run without whitespace longer than a piece is cut between characters; a word
        # tokenizer would read its parts as two words.
        lines.insert(2, "é𝄞x" * 20)
    text = tmp_path / "long.txt"
    text.write_text("\n".join(lines), encoding="utf-8")  # the last line without a line end
    if kind == "word":  # words come back with one space between them
        lines = [" ".join(part.split()) for part in lines]
    found = []
    for limit in (textio.MAX_LINE_BYTES, 16):
        monkeypatch.setattr(textio, "MAX_LINE_BYTES", limit)
        result = run("tokenize", text, "--kind", kind, "--out", tmp_path / "c.tok", "--print", "ids")
        assert result.exit_code == 0, result.stderr
        assert len(result.stdout.splitlines()) == len(lines)
        decoded = run("tokenize", "-", "--tokenizer", tmp_path / "c.tok", "--decode", input=result.stdout)
        assert decoded.exit_code == 0, decoded.stderr
        assert decoded.stdout == "".join(part + "\n" for part in lines)
        tokens = open_token_file(tmp_path / "c.tok")
        found.append((tokens.tokens.tolist(), tokens.metadata["lines"], result.stdout))
        if kind == "word":
            assert tokens.metadata["words"] == sum(len(part.split()) for part in lines)
    assert found[0] == found[1]
    assert found[1][1] == len(lines)


@pytest.mark.parametrize("context", ["stream", "sentence"])
def test_long_lines_in_pieces_score_like_whole_lines(context, tmp_path, model, monkeypatch):
    text = tmp_path / "long.txt"
    text.write_text("\n".join([" ".join(LINES * 4), "the dog runs .", " ".join(LINES * 2), "zebra <eos>"]) + "\n")
    results = []
    for limit in (textio.MAX_LINE_BYTES, 16):
        monkeypatch.setattr(textio, "MAX_LINE_BYTES", limit)
        scored = run("eval", model, text, "--context", context, "--per-sentence")
        totals = run("eval", model, text, "--context", context, "--json")
        assert scored.exit_code == totals.exit_code == 0, scored.stderr
        results.append(([float(v) for v in scored.stdout.split()], json.loads(totals.stdout)))
    (whole, whole_totals), (pieces, pieces_totals) = results
    assert len(whole) == 4 and pieces == pytest.approx(whole, abs=1e-4)
    assert {k: v for k, v in pieces_totals.items() if not isinstance(v, float)} == \
        {k: v for k, v in whole_totals.items() if not isinstance(v, float)}
    assert pieces_totals["logprob"] == pytest.approx(whole_totals["logprob"], abs=1e-3)


# ---------------------------------------------------------------- gzip


def test_gzip_gives_the_same_tokens_as_plain_text(tmp_path, model):
    plain = tmp_path / "plain.txt"
    plain.write_bytes(corpus_bytes(repeat=5))
    packed = tmp_path / "packed.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path, name in ((plain, "plain.tok"), (packed, "packed.tok")):
        assert run("tokenize", path, "--out", tmp_path / name).exit_code == 0
    a, b = open_token_file(tmp_path / "plain.tok"), open_token_file(tmp_path / "packed.tok")
    assert a.tokens.tolist() == b.tokens.tolist() and len(a.tokens) == 5 * (20 + 4)  # words and line ends
    scores = [run("eval", model, path, "--per-sentence").stdout for path in (plain, packed)]
    assert scores[0] == scores[1] != ""


@pytest.mark.parametrize("command", COMMANDS)
def test_truncated_gzip_is_refused_and_leaves_nothing(command, tmp_path, out_dir, model):
    whole = gzip.compress(corpus_bytes(repeat=200))
    truncated = tmp_path / "corpus.txt.gz"
    truncated.write_bytes(whole[: len(whole) // 2])
    result = invoke(command, truncated, model, out_dir)
    assert result.exit_code == 65
    assert "corpus.txt.gz: damaged or truncated gzip data" in one_error_line(result.stderr)
    assert result.stdout == ""
    assert leftovers(out_dir) == []


# ---------------------------------------------------------------- missing input


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", ["missing", "directory"])
def test_missing_file_or_directory_is_66(command, case, tmp_path, out_dir, model):
    target = tmp_path / "nope.txt" if case == "missing" else tmp_path
    result = invoke(command, target, model, out_dir)
    assert result.exit_code == 66
    line = one_error_line(result.stderr)
    assert str(target) in line and ("no such file" if case == "missing" else "is a directory") in line
    assert leftovers(out_dir) == []


# ---------------------------------------------------------------- special symbols


def test_special_symbols_in_raw_text_are_read_as_unk_and_only_eos_is_warned(tmp_path, out_dir, model):
    text = tmp_path / "specials.txt"
    text.write_text("the dog <eos> runs .\nthe <unk> dogs run .\n")
    result = run("tokenize", text, "--out", out_dir / "c.tok")
    assert result.exit_code == 0, result.stderr
    # Only the literal <eos> changes meaning (it is not a line end); a literal <unk> means <unk>.
    warned = f"rnnlm: warning: {text}: 1 word(s) spelled <eos> read as <unk> (only a real line end is <eos>)"
    assert warnings(result.stderr) == [warned]
    tokens = open_token_file(out_dir / "c.tok")
    ids = tokens.tokens.tolist()
    assert ids.count(0) == 2 and ids[5] == ids[-1] == 0  # <eos> only at the two real line ends
    assert ids[2] == ids[7] == 1  # both literal words are <unk>
    # A literal <unk> is a known word, a literal <eos> is out of the vocabulary.
    assert tokens.metadata["oov_tokens"] == 1 and tokens.metadata["literal_specials"] == 1

    scored = run("eval", model, text, "--json")
    assert scored.exit_code == 0, scored.stderr
    totals = json.loads(scored.stdout)
    assert (totals["sentences"], totals["words"], totals["oovs"], totals["literal_specials"]) == (2, 10, 1, 1)
    assert totals["tokens"] == 10 - 1 + 2
    assert warnings(scored.stderr) == [warned]


def test_a_corpus_that_spells_its_rare_words_unk_is_read_quietly(tmp_path, out_dir, model):
    """Penn Treebank and WikiText write rare words as <unk> on purpose: nothing to warn about."""
    text = tmp_path / "ptb.txt"
    text.write_text(" the <unk> runs .\n <unk> <unk> dogs run .\n")
    for args in (("tokenize", text, "--out", out_dir / "p.tok"), ("eval", model, text, "--json")):
        result = run(*args)
        assert result.exit_code == 0, result.stderr
        assert warnings(result.stderr) == []
    assert open_token_file(out_dir / "p.tok").metadata["literal_specials"] == 0
